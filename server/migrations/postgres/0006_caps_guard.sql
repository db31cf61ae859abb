-- A guard over the caps and budgets a batch's writes may pass: it raises
-- (SQLSTATE WSCAP) when they did, so the COMMIT a server sends in the same
-- pipeline as the writes and the guard finds the transaction failed and
-- rolls it back. The server then runs the batch's operations one at a time,
-- refusing only those past a cap. Without it, the commit waited for the
-- server to read the counters and judge them: a round trip more per batch.
CREATE FUNCTION wormhole_sync_within_caps(within BOOLEAN) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    IF NOT within THEN
        RAISE EXCEPTION 'a batch went past a cap or budget' USING ERRCODE = 'WSCAP';
    END IF;
    RETURN true;
END $$;
