-- Mailboxes, each holding the nameplate (short id) it was made for until its
-- sides release it, and their messages. Times are milliseconds since 1970.
CREATE TABLE mailboxes (
    appid TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    -- Tells this mailbox from an earlier one deleted under the same id.
    instance BIGINT GENERATED ALWAYS AS IDENTITY,
    nameplate INTEGER,
    holds_nameplate BOOLEAN NOT NULL,
    -- The side that allocated the nameplate, while it may ask again for it.
    allocator TEXT,
    -- The sides, as JSON (the SQLite store's encoding).
    members TEXT NOT NULL,
    burned BOOLEAN NOT NULL,
    -- Burned and every side closed: kept, emptied, for the burned retention.
    tombstone BOOLEAN NOT NULL,
    last_activity BIGINT NOT NULL,
    PRIMARY KEY (appid, mailbox)
);
-- One mailbox per nameplate number and app id: an allocation (or a claim) that
-- raced another instance's to the same number fails here and runs again.
CREATE UNIQUE INDEX mailboxes_nameplate ON mailboxes (appid, nameplate) WHERE holds_nameplate;
-- One live allocation per side, so a retried allocate racing the first gets its answer.
CREATE UNIQUE INDEX mailboxes_allocator ON mailboxes (appid, allocator) WHERE allocator IS NOT NULL;
-- No index on last_activity: updating an indexed column rules out heap-only
-- updates, and stamps change often; the sweep scans the table once a minute.

CREATE TABLE mailbox_messages (
    appid TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    seq BIGINT NOT NULL,
    side TEXT NOT NULL,
    phase TEXT NOT NULL,
    body TEXT NOT NULL,
    server_rx BIGINT,
    client_id TEXT,
    -- The client address (IPv6: its /64) charged for the body's bytes.
    poster TEXT,
    PRIMARY KEY (appid, mailbox, seq),
    FOREIGN KEY (appid, mailbox) REFERENCES mailboxes ON DELETE CASCADE
);
CREATE INDEX mailbox_messages_poster ON mailbox_messages (poster) WHERE poster IS NOT NULL;
