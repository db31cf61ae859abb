//! A request held for news, sans-IO: a fetch with a wait, or a post with a
//! cursor and a wait. The server's HTTP front end and the simulation both
//! run this very code; the host only runs the requests it names and waits.

use std::time::Duration;

use super::MailboxSnapshot;
use crate::wire::{FetchRequest, Request, Response, WireError};
use crate::Timestamp;

/// A request that asked to be held until its log has news for its side.
///
/// A post runs first (it is stored, and wakes the others, before it
/// waits); then a fetch of the channel after the cursor runs, and again
/// each time the mailbox has news, until its log has news for the side, the
/// wait ends, or the host cannot wait (the mailbox is gone, or the server
/// is stopping).
///
/// ```
/// use std::time::Duration;
/// use wormhole_sync_core::rendezvous::{Held, LongPoll, Rendezvous, RendezvousConfig};
/// use wormhole_sync_core::wire::{FetchRequest, JoinRequest, Request};
/// use wormhole_sync_core::{ChannelId, Timestamp};
///
/// let mut state = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
/// let channel = ChannelId::new(7).unwrap();
/// state.handle(Timestamp::EPOCH, &Request::Join(JoinRequest::new("app", "s1", channel, true)))?;
/// let fetch = Request::Fetch(FetchRequest::new("app", "s1", channel, 0, 5_000));
/// let mut poll = LongPoll::new(fetch, Timestamp::EPOCH, Duration::from_secs(60)).expect("it waits");
/// let answer = state.handle(Timestamp::EPOCH, poll.next());
/// // Nothing from the other side yet: wait for news, at most 5 s.
/// assert_eq!(poll.on_answer(Timestamp::EPOCH, answer, true), Held::Wait { until: Timestamp::from_millis(5_000) });
/// // The wait ended: the read answers whatever there is.
/// let at = Timestamp::from_millis(5_000);
/// let answer = state.handle(at, poll.next());
/// assert!(matches!(poll.on_answer(at, answer, true), Held::Answer(Ok(_))));
/// # Ok::<(), wormhole_sync_core::wire::WireError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LongPoll {
    /// The post still to run, if the request is one.
    post: Option<Request>,
    /// The post's answer, once it ran.
    posted: Option<Response>,
    /// The read it repeats.
    read: Request,
    deadline: Timestamp,
    /// The last seq the last read saw (its cursor if it saw no message),
    /// when that read found this side open (see
    /// [`may_answer_from`](LongPoll::may_answer_from)).
    seen: Option<u64>,
}

/// What to do after a request of a [`LongPoll`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// Answer the client with this.
    Answer(Result<Response, WireError>),
    /// Run [`LongPoll::next`] now (the read, after the post).
    Run,
    /// Wait until the mailbox has news or this time, then run
    /// [`LongPoll::next`] again.
    Wait {
        /// When the wait ends.
        until: Timestamp,
    },
}

impl LongPoll {
    /// Holds `request`, received at `now`, for at most its wait and
    /// `max_wait`; gives it back if it does not ask to wait.
    #[allow(clippy::result_large_err)]
    pub fn new(request: Request, now: Timestamp, max_wait: Duration) -> Result<LongPoll, Request> {
        let wait = Duration::from_millis(request.wait_ms()).min(max_wait);
        let (channel, after) = match (&request, request.channel()) {
            _ if wait.is_zero() => return Err(request),
            (Request::Post(post), Some(channel)) => (channel, post.after.unwrap_or(0)),
            (Request::Fetch(fetch), Some(channel)) => (channel, fetch.after),
            _ => return Err(request),
        };
        let read = Request::Fetch(FetchRequest::new(request.appid(), request.side(), channel, after, 0))
            .with_mailbox(request.mailbox().cloned());
        let post = matches!(request, Request::Post(_)).then_some(request);
        Ok(LongPoll { post, posted: None, read, deadline: now + wait, seen: None })
    }

    /// The request to run now: the post first, then the read.
    pub fn next(&self) -> &Request {
        self.post.as_ref().unwrap_or(&self.read)
    }

    /// Whether [`next`](Self::next) is the read, which a host that waits
    /// for wake-ups registers for first (so news landing in between is not
    /// missed).
    pub fn reads(&self) -> bool {
        self.post.is_none()
    }

    /// When the wait ends.
    pub fn deadline(&self) -> Timestamp {
        self.deadline
    }

    /// Whether the read may run on `snapshot`, the state a commit left its
    /// mailbox in and announced with its wake-up, instead of on the state
    /// stored now. A host that keeps the mailbox's state elsewhere (a
    /// database shared by several servers) spares itself a read that way.
    ///
    /// It may when the snapshot holds a message the last read did not see
    /// (a seq beyond it), and that read found this side open. Then the
    /// commit came after that read: a log loses messages only when it is
    /// dropped, and it is dropped only once every side has closed, after
    /// which no message is added. So the snapshot is the mailbox's state at
    /// a moment within this request, and answering it is as if the read
    /// had run then. The host must also check that the snapshot is of the
    /// mailbox the read saw (the same one, not one made anew under its id).
    ///
    /// ```
    /// use std::time::Duration;
    /// use wormhole_sync_core::rendezvous::{Held, LongPoll, Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::wire::{FetchRequest, JoinRequest, PostRequest, Request};
    /// use wormhole_sync_core::{ChannelId, Timestamp};
    ///
    /// let mut state = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let channel = ChannelId::new(7).unwrap();
    /// let now = Timestamp::EPOCH;
    /// state.handle(now, &Request::Join(JoinRequest::new("app", "s1", channel, true)))?;
    /// state.handle(now, &Request::Join(JoinRequest::new("app", "s2", channel, false)))?;
    /// let fetch = Request::Fetch(FetchRequest::new("app", "s1", channel, 0, 5_000));
    /// let mut poll = LongPoll::new(fetch, now, Duration::from_secs(60)).expect("it waits");
    /// let before = state.mailbox_snapshot("app", &state.mailbox_of("app", channel).unwrap()).unwrap();
    /// let answer = state.handle(now, poll.next());
    /// assert!(matches!(poll.on_answer(now, answer, true), Held::Wait { .. }));
    /// // What the read saw already is no news.
    /// assert!(!poll.may_answer_from(&before));
    /// state.handle(now, &Request::Post(PostRequest::new("app", "s2", channel, "pake", "AAAA")))?;
    /// let after = state.mailbox_snapshot("app", &before.mailbox).unwrap();
    /// assert!(poll.may_answer_from(&after));
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn may_answer_from(&self, snapshot: &MailboxSnapshot) -> bool {
        self.post.is_none() && self.seen.is_some_and(|seen| snapshot.messages.iter().any(|m| m.seq > seen))
    }

    /// Takes the answer to [`next`](Self::next), at `now`. `can_wait`:
    /// the host can be woken by news of the mailbox (it exists and the
    /// server is not stopping).
    pub fn on_answer(&mut self, now: Timestamp, answer: Result<Response, WireError>, can_wait: bool) -> Held {
        let side = self.read.side();
        if self.post.take().is_some() {
            return match answer {
                Ok(posted) if posted.waits_for_news(side) => {
                    self.posted = Some(posted);
                    Held::Run
                }
                answered => Held::Answer(answered),
            };
        }
        let log = match answer {
            Ok(Response::Fetched(log)) => log,
            answered => return Held::Answer(answered),
        };
        if !log.has_news_for(side) && can_wait && now < self.deadline {
            let after = match &self.read {
                Request::Fetch(fetch) => fetch.after,
                _ => 0,
            };
            let open = !log.closed.iter().any(|closed| closed.side == side);
            self.seen = open.then(|| log.messages.iter().map(|m| m.seq).fold(after, u64::max));
            return Held::Wait { until: self.deadline };
        }
        Held::Answer(Ok(match self.posted.take() {
            Some(Response::Posted(mut posted)) => {
                posted.log = Some(log);
                Response::Posted(posted)
            }
            _ => Response::Fetched(log),
        }))
    }
}
