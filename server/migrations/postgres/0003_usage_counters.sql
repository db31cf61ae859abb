-- What the database holds, kept in counters that triggers update in the same
-- transaction as the rows they count, so caps, budgets and metrics read a few
-- rows instead of summing every stored message.
--
-- scope     key       shard            counts
-- server    ''        of the mailbox   mailboxes, tombstones, nameplates, messages, bytes; app ids and
--                                      addresses added (the apps and posters columns)
-- gone      ''        0                app ids and addresses the sweep removed (negative apps and posters)
-- app       app id    of the mailbox   the app's mailboxes, tombstones, messages and bytes (its cap and budget)
-- poster    address   of the mailbox   the messages and bytes charged to a client address
-- maker     address   of the mailbox   the mailboxes a client address made, and how many are tombstones
--
-- Every row a mailbox's changes touch is on that mailbox's shard, one of
-- sixteen: concurrent writers spread over them, so neither a busy app id nor
-- many clients behind one address queue on one row. A mailbox's increments
-- and decrements land on the same rows, so every app, poster and maker row
-- returns to zero, and the sweep deletes zero rows. Each trigger takes the
-- server row of its shard first, so transactions on mailboxes of one shard
-- queue there rather than deadlock over the others.
CREATE TABLE wormhole_sync_usage (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    mailboxes BIGINT NOT NULL DEFAULT 0,
    tombstones BIGINT NOT NULL DEFAULT 0,
    nameplates BIGINT NOT NULL DEFAULT 0,
    messages BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    apps BIGINT NOT NULL DEFAULT 0,
    posters BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, shard)
);

-- The app ids with a mailbox and the client addresses with a message, one
-- row each, so how many there are is counted without a scan: a row is added
-- with the first mailbox or message (counted on that mailbox's shard), and
-- the sweep removes it once nothing is left (counted in the `gone` row).
-- A mailbox made while the sweep removes its app id's row can leave the app
-- id uncounted until its next mailbox: the count errs low, by few, briefly.
CREATE TABLE wormhole_sync_apps (appid TEXT PRIMARY KEY);
CREATE TABLE wormhole_sync_posters (poster TEXT PRIMARY KEY);

CREATE FUNCTION wormhole_sync_shard(mailbox TEXT) RETURNS SMALLINT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (hashtext(mailbox) & 15)::SMALLINT $$;

-- Adds to one row's counters.
CREATE FUNCTION wormhole_sync_count(
    p_scope TEXT, p_key TEXT, p_shard SMALLINT,
    d_mailboxes BIGINT, d_tombstones BIGINT, d_nameplates BIGINT, d_messages BIGINT, d_bytes BIGINT,
    d_apps BIGINT, d_posters BIGINT
) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wormhole_sync_usage AS u
        (scope, key, shard, mailboxes, tombstones, nameplates, messages, bytes, apps, posters)
    VALUES (p_scope, p_key, p_shard, d_mailboxes, d_tombstones, d_nameplates, d_messages, d_bytes, d_apps, d_posters)
    ON CONFLICT (scope, key, shard) DO UPDATE SET
        mailboxes = u.mailboxes + EXCLUDED.mailboxes,
        tombstones = u.tombstones + EXCLUDED.tombstones,
        nameplates = u.nameplates + EXCLUDED.nameplates,
        messages = u.messages + EXCLUDED.messages,
        bytes = u.bytes + EXCLUDED.bytes,
        apps = u.apps + EXCLUDED.apps,
        posters = u.posters + EXCLUDED.posters;
END $$;

CREATE FUNCTION wormhole_sync_count_mailbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r mailboxes := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    home SMALLINT := wormhole_sync_shard(r.mailbox);
    d_mailboxes BIGINT := 0;
    d_tombstones BIGINT := 0;
    d_nameplates BIGINT := 0;
    d_apps BIGINT := 0;
    added INT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        d_mailboxes := -1;
        d_tombstones := -OLD.tombstone::INT;
        d_nameplates := -OLD.holds_nameplate::INT;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        d_mailboxes := d_mailboxes + 1;
        d_tombstones := d_tombstones + NEW.tombstone::INT;
        d_nameplates := d_nameplates + NEW.holds_nameplate::INT;
    END IF;
    -- The shard's row first (see above); then what this change adds.
    PERFORM wormhole_sync_count('server', '', home, d_mailboxes, d_tombstones, d_nameplates, 0, 0, 0, 0);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO wormhole_sync_apps (appid) VALUES (r.appid) ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS added = ROW_COUNT;
        IF added > 0 THEN
            PERFORM wormhole_sync_count('server', '', home, 0, 0, 0, 0, 0, 1, 0);
        END IF;
    END IF;
    IF d_mailboxes <> 0 OR d_tombstones <> 0 THEN
        PERFORM wormhole_sync_count('app', r.appid, home, d_mailboxes, d_tombstones, 0, 0, 0, 0, 0);
        IF r.maker IS NOT NULL THEN
            PERFORM wormhole_sync_count('maker', r.maker, home, d_mailboxes, d_tombstones, 0, 0, 0, 0, 0);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION wormhole_sync_count_message() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r mailbox_messages := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    home SMALLINT := wormhole_sync_shard(r.mailbox);
    d BIGINT := CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END;
    d_bytes BIGINT := d * octet_length(r.body);
    d_posters BIGINT := 0;
    added INT;
BEGIN
    PERFORM wormhole_sync_count('server', '', home, 0, 0, 0, d, d_bytes, 0, 0);
    PERFORM wormhole_sync_count('app', r.appid, home, 0, 0, 0, d, d_bytes, 0, 0);
    IF r.poster IS NOT NULL THEN
        PERFORM wormhole_sync_count('poster', r.poster, home, 0, 0, 0, d, d_bytes, 0, 0);
        IF d > 0 THEN
            INSERT INTO wormhole_sync_posters (poster) VALUES (r.poster) ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS added = ROW_COUNT;
            IF added > 0 THEN
                PERFORM wormhole_sync_count('server', '', home, 0, 0, 0, 0, 0, 0, 1);
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- Writers of an older version wait until the counters start from what is there.
LOCK TABLE mailboxes, mailbox_messages IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER wormhole_sync_count_mailbox
    AFTER INSERT OR DELETE ON mailboxes
    FOR EACH ROW
    EXECUTE FUNCTION wormhole_sync_count_mailbox();
-- Activity stamps and members change often and count for nothing: no trigger runs for them.
CREATE TRIGGER wormhole_sync_count_mailbox_change
    AFTER UPDATE OF holds_nameplate, tombstone ON mailboxes
    FOR EACH ROW
    WHEN (OLD.holds_nameplate IS DISTINCT FROM NEW.holds_nameplate OR OLD.tombstone IS DISTINCT FROM NEW.tombstone)
    EXECUTE FUNCTION wormhole_sync_count_mailbox();
CREATE TRIGGER wormhole_sync_count_message
    AFTER INSERT OR DELETE ON mailbox_messages
    FOR EACH ROW
    EXECUTE FUNCTION wormhole_sync_count_message();

-- What an older version stored.
INSERT INTO wormhole_sync_apps (appid) SELECT DISTINCT appid FROM mailboxes;
INSERT INTO wormhole_sync_posters (poster) SELECT DISTINCT poster FROM mailbox_messages WHERE poster IS NOT NULL;
INSERT INTO wormhole_sync_usage (scope, key, shard) SELECT 'server', '', s FROM generate_series(0, 15) s;
INSERT INTO wormhole_sync_usage (scope, key, shard) VALUES ('gone', '', 0);
UPDATE wormhole_sync_usage u SET mailboxes = c.mailboxes, tombstones = c.tombstones, nameplates = c.nameplates
FROM (
    SELECT wormhole_sync_shard(mailbox) AS shard, count(*) AS mailboxes,
           count(*) FILTER (WHERE tombstone) AS tombstones, count(*) FILTER (WHERE holds_nameplate) AS nameplates
    FROM mailboxes GROUP BY 1
) c
WHERE u.scope = 'server' AND u.shard = c.shard;
UPDATE wormhole_sync_usage u SET messages = c.messages, bytes = c.bytes
FROM (
    SELECT wormhole_sync_shard(mailbox) AS shard, count(*) AS messages, sum(octet_length(body)) AS bytes
    FROM mailbox_messages GROUP BY 1
) c
WHERE u.scope = 'server' AND u.shard = c.shard;
UPDATE wormhole_sync_usage SET apps = (SELECT count(*) FROM wormhole_sync_apps),
                               posters = (SELECT count(*) FROM wormhole_sync_posters)
WHERE scope = 'server' AND shard = 0;
INSERT INTO wormhole_sync_usage (scope, key, shard, mailboxes, tombstones, messages, bytes)
SELECT 'app', coalesce(b.appid, m.appid), coalesce(b.shard, m.shard), coalesce(b.n, 0), coalesce(b.tombstones, 0),
       coalesce(m.n, 0), coalesce(m.bytes, 0)
FROM (SELECT appid, wormhole_sync_shard(mailbox) AS shard, count(*) AS n,
             count(*) FILTER (WHERE tombstone) AS tombstones
      FROM mailboxes GROUP BY 1, 2) b
FULL JOIN (SELECT appid, wormhole_sync_shard(mailbox) AS shard, count(*) AS n, sum(octet_length(body)) AS bytes
           FROM mailbox_messages GROUP BY 1, 2) m ON m.appid = b.appid AND m.shard = b.shard;
INSERT INTO wormhole_sync_usage (scope, key, shard, messages, bytes)
SELECT 'poster', poster, wormhole_sync_shard(mailbox), count(*), sum(octet_length(body))
FROM mailbox_messages WHERE poster IS NOT NULL GROUP BY 2, 3;
INSERT INTO wormhole_sync_usage (scope, key, shard, mailboxes, tombstones)
SELECT 'maker', maker, wormhole_sync_shard(mailbox), count(*), count(*) FILTER (WHERE tombstone)
FROM mailboxes WHERE maker IS NOT NULL GROUP BY 2, 3;
