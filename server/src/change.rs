//! What an operation changed: its outcome with the mailboxes whose waiters
//! have news and the exchanges it finished ([`Ran`]), and one change to
//! persist ([`Change`]: what the journal records and SQLite applies).

use std::sync::Arc;

use wormhole_sync_core::rendezvous::{Finished, MailboxSnapshot, MemberSnapshot, Outcome};
use wormhole_sync_core::wire::{MailboxId, Message, WireError};
use wormhole_sync_core::Timestamp;

/// Mailboxes with news for their waiters (see `EffectKind::is_news`).
pub(crate) type News = Vec<MailboxNews>;

/// A mailbox with news for its waiters.
pub(crate) struct MailboxNews {
    pub(crate) appid: String,
    pub(crate) mailbox: MailboxId,
    /// The state the commit left it in, when it lives in a shared database
    /// (for each instance's long-polls, see `App::long_poll`).
    pub(crate) committed: Option<Arc<Committed>>,
}

impl MailboxNews {
    /// News of a mailbox whose state is not sent along.
    pub(crate) fn of(appid: String, mailbox: MailboxId) -> MailboxNews {
        MailboxNews { appid, mailbox, committed: None }
    }
}

/// A mailbox as a commit to a shared database left it: its row's
/// instance (a mailbox made anew under its id is another) and its state.
/// A long-poll that this commit woke may answer from it instead of reading
/// the mailbox again ([`LongPoll::may_answer_from`]). It holds the
/// mailbox's messages, sealed as the database holds them, and no `Debug`.
///
/// [`LongPoll::may_answer_from`]: wormhole_sync_core::rendezvous::LongPoll::may_answer_from
pub(crate) struct Committed {
    pub(crate) instance: u64,
    pub(crate) snapshot: MailboxSnapshot,
}

#[cfg(test)]
impl Committed {
    /// A mailbox of `appid` with sides `s1` and `s2` and a message from `s1`
    /// per body, as a commit of `instance` would announce it.
    pub(crate) fn with_messages(appid: &str, instance: u64, bodies: &[&str]) -> Committed {
        use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
        use wormhole_sync_core::wire::{JoinRequest, PostRequest, Request};
        use wormhole_sync_core::{ChannelId, Timestamp};
        let mut state = Rendezvous::new(RendezvousConfig::default(), [1; 32]);
        let channel = ChannelId::new(5).expect("a valid channel id");
        for side in ["s1", "s2"] {
            state.handle(Timestamp::EPOCH, &Request::Join(JoinRequest::new(appid, side, channel, true))).unwrap();
        }
        for (i, body) in bodies.iter().enumerate() {
            let post = PostRequest::new(appid, "s1", channel, format!("p{i}"), *body);
            state.handle(Timestamp::EPOCH, &Request::Post(post)).unwrap();
        }
        let mailbox = state.mailbox_of(appid, channel).expect("joined").clone();
        Committed { instance, snapshot: state.mailbox_snapshot(appid, &mailbox).expect("there") }
    }
}

/// What an operation did, once durable.
pub(crate) struct Ran {
    /// Its outcome, or its refusal (a refused operation changed nothing).
    pub(crate) result: Result<Outcome, WireError>,
    /// Mailboxes with news, for this instance's waiters.
    pub(crate) news: News,
    /// Exchanges it finished, for the log.
    pub(crate) finished: Vec<Finished>,
}

impl Ran {
    /// An operation that changed nothing.
    pub(crate) fn answered(outcome: Outcome) -> Ran {
        Ran { result: Ok(outcome), news: News::new(), finished: Vec::new() }
    }
}

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
