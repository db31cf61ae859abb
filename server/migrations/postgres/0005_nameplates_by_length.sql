-- How many nameplate numbers each app id has in use, by length in digits,
-- kept with the other usage counters: an allocation reads nine counter
-- keys per app id and then checks a few numbers it drew, where it read
-- every number the app id had in use (300 a second of exchanges keep 90,000
-- for the retention).
--
-- scope     key                   counts
-- length    digits ':' app id     nameplates: the app's numbers of that many digits in use
--
-- Counted as migration 4 counts (on the transaction's shard, in the same
-- upsert, so the locking order is unchanged), from the same deltas of
-- `holds_nameplate`; a mailbox's number never changes.

DROP FUNCTION wormhole_sync_add_mailboxes(TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[]);

CREATE FUNCTION wormhole_sync_add_mailboxes(
    p_appids TEXT[], p_mailboxes TEXT[], p_makers TEXT[], p_mailbox_deltas BIGINT[], p_tombstone_deltas BIGINT[],
    p_nameplate_deltas BIGINT[], p_nameplates INT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (
        SELECT appid, maker, wormhole_sync_counted_shard(mailbox) AS shard, dm, dt, dn, nameplate
        FROM unnest(p_appids, p_mailboxes, p_makers, p_mailbox_deltas, p_tombstone_deltas, p_nameplate_deltas,
                    p_nameplates)
            AS t(appid, mailbox, maker, dm, dt, dn, nameplate)
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
        UNION ALL
        SELECT 'length', length(nameplate::TEXT) || ':' || appid, shard, 0, 0, sum(dn), 0
        FROM d WHERE nameplate IS NOT NULL AND dn <> 0 GROUP BY appid, length(nameplate::TEXT), shard
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

CREATE OR REPLACE FUNCTION wormhole_sync_count_mailboxes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign BIGINT := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM wormhole_sync_add_mailboxes(array_agg(appid), array_agg(mailbox), array_agg(maker), array_agg(sign),
        array_agg(sign * tombstone::INT), array_agg(sign * holds_nameplate::INT), array_agg(nameplate))
    FROM counted_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION wormhole_sync_count_changed_mailboxes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wormhole_sync_add_mailboxes(array_agg(n.appid), array_agg(n.mailbox), array_agg(n.maker),
        array_agg(0::BIGINT), array_agg(n.tombstone::INT::BIGINT - o.tombstone::INT),
        array_agg(n.holds_nameplate::INT::BIGINT - o.holds_nameplate::INT), array_agg(n.nameplate))
    FROM old_rows o JOIN new_rows n ON n.appid = o.appid AND n.mailbox = o.mailbox
    WHERE n.tombstone <> o.tombstone OR n.holds_nameplate <> o.holds_nameplate
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- What is there already, counted while writers wait (as in migration 3).
LOCK TABLE mailboxes IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO wormhole_sync_usage (scope, key, shard, nameplates)
SELECT 'length', length(nameplate::TEXT) || ':' || appid, 0, count(*)
FROM mailboxes WHERE holds_nameplate AND nameplate IS NOT NULL
GROUP BY appid, length(nameplate::TEXT);
