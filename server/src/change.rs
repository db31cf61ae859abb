//! One change to persist: what the journal records and SQLite applies.

use wormhole_sync_core::rendezvous::{MailboxSnapshot, MemberSnapshot};
use wormhole_sync_core::wire::{MailboxId, Message};
use wormhole_sync_core::Timestamp;

/// One change to persist.
#[derive(Debug)]
pub(crate) enum Change {
    /// A mailbox's row (nameplate, members, burned flag, activity) and any
    /// messages not stored yet.
    Mailbox(MailboxSnapshot),
    /// A side let go of the nameplate by naming the mailbox: its sides and
    /// whether it still holds the nameplate. A crash may lose it (the
    /// side's next request does it again), so nobody waits for it.
    Released { appid: String, mailbox: MailboxId, holds_nameplate: bool, members: Vec<MemberSnapshot>, at: Timestamp },
    /// One new message, and the mailbox's activity time.
    Message { appid: String, mailbox: MailboxId, message: Message, at: Timestamp },
    /// Activity without other change (fetches); not waited for.
    Touch { appid: String, mailbox: MailboxId, at: Timestamp },
    /// The mailbox is gone (with its nameplate).
    Delete { appid: String, mailbox: MailboxId },
}
