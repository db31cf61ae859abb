-- The client address (IPv6: its /64) that made each mailbox, for the cap on
-- the channels one client holds (--max-channels-per-address), counted over
-- every instance. Mailboxes made before this migration have none.
ALTER TABLE mailboxes ADD COLUMN maker TEXT;
CREATE INDEX mailboxes_maker ON mailboxes (maker) WHERE maker IS NOT NULL;
-- `tombstone` now also marks a mailbox two sides used whose sides all closed:
-- kept, emptied, for the retention, so its nameplate is not handed out again.
