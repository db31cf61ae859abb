-- The usage counters of migration 3, kept per statement instead of per row:
-- a server writes a batch of operations' mailboxes and messages with one
-- statement each, and the triggers below add one statement's rows to the
-- counters with one upsert, where the row triggers ran three or four upserts
-- for every message. What is counted, and where, is as in migration 3.
--
-- The shard a transaction's changes are counted on is its own choice: the
-- setting `wormhole_sync.shard` (0 to 15) when it is set, as a server sets
-- it for each transaction, else the mailbox's shard as before. One shard per
-- transaction means concurrent transactions meet on a counter row only when
-- they chose the same shard, and then queue at its server row (taken first)
-- instead of deadlocking; one that writes many mailboxes no longer locks
-- every shard. A key's increments and decrements may then land on different
-- shards: its rows return to zero in sum rather than one by one, which is
-- what the sweep checks before deleting them.
DROP TRIGGER wormhole_sync_count_mailbox ON mailboxes;
DROP TRIGGER wormhole_sync_count_mailbox_change ON mailboxes;
DROP TRIGGER wormhole_sync_count_message ON mailbox_messages;
DROP FUNCTION wormhole_sync_count_mailbox();
DROP FUNCTION wormhole_sync_count_message();
DROP FUNCTION wormhole_sync_count(TEXT, TEXT, SMALLINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT);

-- The shard a change to a mailbox is counted on (see above).
CREATE FUNCTION wormhole_sync_counted_shard(mailbox TEXT) RETURNS SMALLINT LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('wormhole_sync.shard', true), '')::SMALLINT & 15,
                    wormhole_sync_shard(mailbox))
$$;

-- PL/pgSQL rather than SQL functions: a session plans their statement once
-- and keeps the plan, where an SQL function's is made again on every call.

-- Adds changes of mailboxes (one element each) to the counters: made or
-- deleted (mailbox deltas 1 and -1), and changes of whether it is a tombstone or holds
-- its nameplate. An app id's first mailbox adds it to the app ids.
CREATE FUNCTION wormhole_sync_add_mailboxes(
    p_appids TEXT[], p_mailboxes TEXT[], p_makers TEXT[], p_mailbox_deltas BIGINT[], p_tombstone_deltas BIGINT[],
    p_nameplate_deltas BIGINT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (
        SELECT appid, maker, wormhole_sync_counted_shard(mailbox) AS shard, dm, dt, dn
        FROM unnest(p_appids, p_mailboxes, p_makers, p_mailbox_deltas, p_tombstone_deltas, p_nameplate_deltas)
            AS t(appid, mailbox, maker, dm, dt, dn)
    ),
    added AS (
        INSERT INTO wormhole_sync_apps (appid) SELECT DISTINCT appid FROM d WHERE dm > 0
        ON CONFLICT DO NOTHING RETURNING appid
    ),
    deltas AS (
        SELECT 'server' AS scope, '' AS key, shard, sum(dm) AS m, sum(dt) AS t, sum(dn) AS n, 0 AS apps
        FROM d GROUP BY shard
        UNION ALL
        SELECT 'server', '', (SELECT min(shard) FROM d WHERE d.appid = added.appid), 0, 0, 0, 1 FROM added
        UNION ALL
        SELECT 'app', appid, shard, sum(dm), sum(dt), 0, 0 FROM d GROUP BY appid, shard
        HAVING sum(dm) <> 0 OR sum(dt) <> 0
        UNION ALL
        SELECT 'maker', maker, shard, sum(dm), sum(dt), 0, 0 FROM d WHERE maker IS NOT NULL GROUP BY maker, shard
        HAVING sum(dm) <> 0 OR sum(dt) <> 0
    )
    INSERT INTO wormhole_sync_usage AS u (scope, key, shard, mailboxes, tombstones, nameplates, apps)
    SELECT scope, key, shard, sum(m)::BIGINT, sum(t)::BIGINT, sum(n)::BIGINT, sum(apps)::BIGINT
    FROM deltas GROUP BY scope, key, shard
    ORDER BY shard, scope <> 'server', scope, key
    ON CONFLICT (scope, key, shard) DO UPDATE SET
        mailboxes = u.mailboxes + EXCLUDED.mailboxes,
        tombstones = u.tombstones + EXCLUDED.tombstones,
        nameplates = u.nameplates + EXCLUDED.nameplates,
        apps = u.apps + EXCLUDED.apps;
END
$$;

-- Adds messages stored (message delta 1) or deleted (-1) and their bytes to the
-- counters. A client address's first message adds it to the addresses.
CREATE FUNCTION wormhole_sync_add_messages(
    p_appids TEXT[], p_mailboxes TEXT[], p_posters TEXT[], p_message_deltas BIGINT[], p_byte_deltas BIGINT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (
        SELECT appid, poster, wormhole_sync_counted_shard(mailbox) AS shard, dm, db
        FROM unnest(p_appids, p_mailboxes, p_posters, p_message_deltas, p_byte_deltas)
            AS t(appid, mailbox, poster, dm, db)
    ),
    added AS (
        INSERT INTO wormhole_sync_posters (poster) SELECT DISTINCT poster FROM d WHERE poster IS NOT NULL AND dm > 0
        ON CONFLICT DO NOTHING RETURNING poster
    ),
    deltas AS (
        SELECT 'server' AS scope, '' AS key, shard, sum(dm) AS m, sum(db) AS b, 0 AS posters FROM d GROUP BY shard
        UNION ALL
        SELECT 'server', '', (SELECT min(shard) FROM d WHERE d.poster = added.poster), 0, 0, 1 FROM added
        UNION ALL
        SELECT 'app', appid, shard, sum(dm), sum(db), 0 FROM d GROUP BY appid, shard
        UNION ALL
        SELECT 'poster', poster, shard, sum(dm), sum(db), 0 FROM d WHERE poster IS NOT NULL GROUP BY poster, shard
    )
    INSERT INTO wormhole_sync_usage AS u (scope, key, shard, messages, bytes, posters)
    SELECT scope, key, shard, sum(m)::BIGINT, sum(b)::BIGINT, sum(posters)::BIGINT
    FROM deltas GROUP BY scope, key, shard
    ORDER BY shard, scope <> 'server', scope, key
    ON CONFLICT (scope, key, shard) DO UPDATE SET
        messages = u.messages + EXCLUDED.messages,
        bytes = u.bytes + EXCLUDED.bytes,
        posters = u.posters + EXCLUDED.posters;
END
$$;

-- Mailboxes made (the INSERT trigger) or deleted (DELETE); `counted_rows`
-- is the statement's.
CREATE FUNCTION wormhole_sync_count_mailboxes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign BIGINT := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM wormhole_sync_add_mailboxes(array_agg(appid), array_agg(mailbox), array_agg(maker), array_agg(sign),
        array_agg(sign * tombstone::INT), array_agg(sign * holds_nameplate::INT))
    FROM counted_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Activity stamps and members change often and count for nothing: only rows
-- whose tombstone or nameplate changed are added.
CREATE FUNCTION wormhole_sync_count_changed_mailboxes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wormhole_sync_add_mailboxes(array_agg(n.appid), array_agg(n.mailbox), array_agg(n.maker),
        array_agg(0::BIGINT), array_agg(n.tombstone::INT::BIGINT - o.tombstone::INT),
        array_agg(n.holds_nameplate::INT::BIGINT - o.holds_nameplate::INT))
    FROM old_rows o JOIN new_rows n ON n.appid = o.appid AND n.mailbox = o.mailbox
    WHERE n.tombstone <> o.tombstone OR n.holds_nameplate <> o.holds_nameplate
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Messages stored (the INSERT trigger) or deleted (DELETE).
CREATE FUNCTION wormhole_sync_count_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign BIGINT := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM wormhole_sync_add_messages(array_agg(appid), array_agg(mailbox), array_agg(poster), array_agg(sign),
        array_agg(sign * octet_length(body)))
    FROM counted_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER wormhole_sync_count_new_mailboxes AFTER INSERT ON mailboxes
    REFERENCING NEW TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION wormhole_sync_count_mailboxes();
CREATE TRIGGER wormhole_sync_count_old_mailboxes AFTER DELETE ON mailboxes
    REFERENCING OLD TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION wormhole_sync_count_mailboxes();
CREATE TRIGGER wormhole_sync_count_changed_mailboxes AFTER UPDATE ON mailboxes
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wormhole_sync_count_changed_mailboxes();
CREATE TRIGGER wormhole_sync_count_new_messages AFTER INSERT ON mailbox_messages
    REFERENCING NEW TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION wormhole_sync_count_messages();
CREATE TRIGGER wormhole_sync_count_old_messages AFTER DELETE ON mailbox_messages
    REFERENCING OLD TABLE AS counted_rows FOR EACH STATEMENT EXECUTE FUNCTION wormhole_sync_count_messages();
