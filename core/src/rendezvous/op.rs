//! Operations as values: what each front end asks of the state, what an
//! engine needs to know before running one (the rows it reaches, the rate
//! limits and caps that apply) and [`Rendezvous::apply`], which runs it.

use crate::code::ChannelId;
use crate::wire::{MailboxId, Mood, Request, Response, Route, WireError};
use crate::Timestamp;

use super::Rendezvous;

/// One operation on the rendezvous state: an HTTP API request, or one of
/// the mailbox protocol's operations (see [`MailboxSession`](super::MailboxSession)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// An HTTP API request.
    Request(Request),
    /// `list`: the nameplates `appid` has in use.
    List {
        /// The application id.
        appid: String,
    },
    /// `allocate`: a nameplate for `side`.
    Allocate {
        /// The application id.
        appid: String,
        /// The side allocating.
        side: String,
    },
    /// `claim`: `side` claims a nameplate, making it if unused.
    Claim {
        /// The application id.
        appid: String,
        /// The nameplate.
        nameplate: ChannelId,
        /// The side claiming.
        side: String,
    },
    /// `release`: `side` lets go of a nameplate.
    Release {
        /// The application id.
        appid: String,
        /// The nameplate.
        nameplate: ChannelId,
        /// The side releasing.
        side: String,
    },
    /// `open`: `side` enters a mailbox, making it if unknown.
    Open {
        /// The application id.
        appid: String,
        /// The mailbox.
        mailbox: MailboxId,
        /// The side opening.
        side: String,
    },
    /// `add`: `side` adds a message to the mailbox it opened.
    Add {
        /// The application id.
        appid: String,
        /// The mailbox.
        mailbox: MailboxId,
        /// The side adding.
        side: String,
        /// The message's phase.
        phase: String,
        /// The message's body (hex, as the client sent it).
        body: String,
        /// The frame's `id`, echoed to the readers.
        client_id: Option<String>,
    },
    /// `close`: `side` leaves the mailbox with `mood`.
    Close {
        /// The application id.
        appid: String,
        /// The mailbox.
        mailbox: MailboxId,
        /// The side closing.
        side: String,
        /// Its mood (`scary` burns the mailbox).
        mood: Mood,
        /// The connection did not open the mailbox (a client that
        /// reconnected to repeat its close): it is opened first, as the
        /// reference server does.
        reopen: bool,
    },
    /// A connection that opened the mailbox is still there: it counts as
    /// activity, so the mailbox does not expire under it.
    Touch {
        /// The application id.
        appid: String,
        /// The mailbox.
        mailbox: MailboxId,
    },
}

/// What an operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// An HTTP API request's answer.
    Response(Response),
    /// `list`'s nameplates, in order.
    Nameplates(Vec<ChannelId>),
    /// `allocate`'s nameplate.
    Allocated(ChannelId),
    /// `claim`'s mailbox.
    Claimed(MailboxId),
    /// Done, with nothing to say (`release`, `open`, `add`, `close`, a touch).
    Done,
}

/// An operation's outcome, as the host ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its answer.
    pub answer: Answer,
    /// The instance of the mailbox it reached, if that exists afterwards
    /// (see [`Rendezvous::mailbox_instance`](super::Rendezvous::mailbox_instance)).
    pub instance: Option<u64>,
}

/// The rows an operation reaches, so an engine that loads state per
/// operation (a shared database) knows what to lock and load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// The mailbox of this id.
    Mailbox(&'a MailboxId),
    /// The mailbox this nameplate leads to.
    Nameplate(ChannelId),
    /// The mailbox whose nameplate this side allocated (a repeated
    /// allocation gets it again).
    Allocator(&'a str),
    /// No mailbox: a read over the application id (`list`).
    App,
}

/// An operation's reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    /// Its application id.
    pub appid: &'a str,
    /// The mailbox it reaches.
    pub target: Target<'a>,
    /// It needs every number its app id has in use (an allocation, or a
    /// burn that may take its number back).
    pub nameplates: bool,
    /// It usually changes nothing but an activity stamp (a fetch), so an
    /// engine may run it without locks first.
    pub reads: bool,
}

impl<'a> Scope<'a> {
    /// The mailbox it reaches by id, if it names one.
    pub fn mailbox(&self) -> Option<&'a MailboxId> {
        match self.target {
            Target::Mailbox(mailbox) => Some(mailbox),
            _ => None,
        }
    }
}

/// A rate limit an operation counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Operations that may make a channel: allocations, joins, claims, opens.
    Channels,
    /// Everything else a client sends: posts, fetches, closes, and every
    /// mailbox-protocol frame after `bind`.
    Messages,
}

impl Limit {
    /// The limit an HTTP API route counts against, known before its body
    /// is read (so a limited client's body is never read).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::Limit;
    /// use wormhole_sync_core::wire::Route;
    ///
    /// assert_eq!(Limit::of_route(Route::Join), Limit::Channels);
    /// assert_eq!(Limit::of_route(Route::Close), Limit::Messages);
    /// ```
    pub fn of_route(route: Route) -> Limit {
        match route {
            Route::Allocate | Route::Join => Limit::Channels,
            // Closes too: they were once an unlimited probe of which ids are in use.
            Route::Post | Route::Fetch | Route::Close => Limit::Messages,
        }
    }
}

/// What an operation would add to the state, for caps and budgets checked
/// before it runs (see [`Rendezvous::demands`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demands {
    /// It would make a channel.
    pub new_channel: bool,
    /// It would make the application id's first channel.
    pub new_app: bool,
    /// Bytes of a new message it would store (0 for none, or a repeat).
    pub stored_bytes: u64,
}

impl Op {
    /// Its application id.
    pub fn appid(&self) -> &str {
        match self {
            Op::Request(request) => request.appid(),
            Op::List { appid }
            | Op::Allocate { appid, .. }
            | Op::Claim { appid, .. }
            | Op::Release { appid, .. }
            | Op::Open { appid, .. }
            | Op::Add { appid, .. }
            | Op::Close { appid, .. }
            | Op::Touch { appid, .. } => appid,
        }
    }

    /// What it reaches.
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Op, Target};
    /// use wormhole_sync_core::wire::{MailboxId, Mood};
    ///
    /// let mailbox = MailboxId::new("abc").unwrap();
    /// let close = Op::Close {
    ///     appid: "app".into(),
    ///     mailbox: mailbox.clone(),
    ///     side: "s1".into(),
    ///     mood: Mood::Scary,
    ///     reopen: false,
    /// };
    /// let scope = close.scope();
    /// assert_eq!(scope.target, Target::Mailbox(&mailbox));
    /// assert!(scope.nameplates, "a burn may take its number back");
    /// ```
    pub fn scope(&self) -> Scope<'_> {
        let appid = self.appid();
        let (target, nameplates, reads) = match self {
            Op::Request(request) => {
                let target = match (request.mailbox(), request.channel()) {
                    (Some(mailbox), _) => Target::Mailbox(mailbox),
                    (None, Some(channel)) => Target::Nameplate(channel),
                    (None, None) => Target::Allocator(request.side()),
                };
                let burns = matches!(request, Request::Close(close) if close.mood == Mood::Scary);
                let allocates = matches!(request, Request::Allocate(_));
                (target, burns || allocates, matches!(request, Request::Fetch(_)))
            }
            Op::List { .. } => (Target::App, false, true),
            Op::Allocate { side, .. } => (Target::Allocator(side), true, false),
            Op::Claim { nameplate, .. } | Op::Release { nameplate, .. } => {
                (Target::Nameplate(*nameplate), false, false)
            }
            Op::Open { mailbox, .. } | Op::Add { mailbox, .. } | Op::Touch { mailbox, .. } => {
                (Target::Mailbox(mailbox), false, false)
            }
            Op::Close { mailbox, mood, .. } => (Target::Mailbox(mailbox), *mood == Mood::Scary, false),
        };
        Scope { appid, target, nameplates, reads }
    }

    /// The rate limits it counts against (an HTTP request's is known from
    /// its route alone: [`Limit::of_route`]).
    pub fn limits(&self) -> &'static [Limit] {
        match self {
            Op::Request(request) => match Limit::of_route(request.route()) {
                Limit::Channels => &[Limit::Channels],
                Limit::Messages => &[Limit::Messages],
            },
            Op::Allocate { .. } | Op::Claim { .. } | Op::Open { .. } => &[Limit::Messages, Limit::Channels],
            Op::List { .. } | Op::Release { .. } | Op::Add { .. } | Op::Close { .. } => &[Limit::Messages],
            Op::Touch { .. } => &[],
        }
    }
}

impl Rendezvous {
    /// What `op` would add if it ran now: a channel (and with it an
    /// application id), or a message's bytes. A server with caps and
    /// budgets held outside the state checks them with this, in the same
    /// critical section as [`apply`](Self::apply).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Op, Rendezvous, RendezvousConfig};
    ///
    /// let server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let allocate = Op::Allocate { appid: "app".into(), side: "s1".into() };
    /// let demands = server.demands(&allocate);
    /// assert!(demands.new_channel && demands.new_app);
    /// ```
    pub fn demands(&self, op: &Op) -> Demands {
        let new_channel = match op {
            Op::Request(request) => self.creates_channel(request),
            Op::Allocate { .. } => true,
            Op::Claim { appid, nameplate, .. } => !self.contains(appid, *nameplate),
            Op::Open { appid, mailbox, .. } => !self.contains_mailbox(appid, mailbox),
            _ => false,
        };
        let stored_bytes = match op {
            Op::Request(request @ Request::Post(post)) => {
                let posted = self.mailbox_for(request);
                let posted = posted.is_some_and(|m| self.has_posted(&post.appid, &m, &post.side, &post.phase));
                if posted {
                    0
                } else {
                    post.body.len() as u64
                }
            }
            Op::Add { appid, mailbox, side, phase, body, .. } if !self.has_posted(appid, mailbox, side, phase) => {
                body.len() as u64
            }
            _ => 0,
        };
        Demands { new_channel, new_app: new_channel && !self.has_app(op.appid()), stored_bytes }
    }

    /// Runs `op` at `now`: its answer, and which instance of the mailbox
    /// it names exists afterwards. Its changes are then in
    /// [`effects`](Self::effects).
    ///
    /// ```
    /// use wormhole_sync_core::rendezvous::{Answer, Op, Rendezvous, RendezvousConfig};
    /// use wormhole_sync_core::Timestamp;
    ///
    /// let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    /// let allocate = Op::Allocate { appid: "app".into(), side: "s1".into() };
    /// let Answer::Allocated(nameplate) = server.apply(Timestamp::EPOCH, &allocate)?.answer else { panic!() };
    /// let list = Op::List { appid: "app".into() };
    /// assert_eq!(server.apply(Timestamp::EPOCH, &list)?.answer, Answer::Nameplates(vec![nameplate]));
    /// # Ok::<(), wormhole_sync_core::wire::WireError>(())
    /// ```
    pub fn apply(&mut self, now: Timestamp, op: &Op) -> Result<Outcome, WireError> {
        let answer = self.answer(now, op)?;
        let instance = op.scope().mailbox().and_then(|mailbox| self.mailbox_instance(op.appid(), mailbox));
        Ok(Outcome { answer, instance })
    }

    fn answer(&mut self, now: Timestamp, op: &Op) -> Result<Answer, WireError> {
        match op {
            Op::Request(request) => self.handle(now, request).map(Answer::Response),
            Op::List { appid } => {
                self.clear_effects();
                Ok(Answer::Nameplates(self.nameplates(appid)))
            }
            Op::Allocate { appid, side } => self.allocate_nameplate(now, appid, side).map(Answer::Allocated),
            Op::Claim { appid, nameplate, side } => self.claim(now, appid, *nameplate, side).map(Answer::Claimed),
            Op::Release { appid, nameplate, side } => self.release(now, appid, *nameplate, side).map(|()| Answer::Done),
            Op::Open { appid, mailbox, side } => self.open(now, appid, mailbox, side).map(|_| Answer::Done),
            Op::Add { appid, mailbox, side, phase, body, client_id } => {
                self.add(now, appid, mailbox, side, phase, body, client_id.clone()).map(|_| Answer::Done)
            }
            Op::Close { appid, mailbox, side, mood, reopen } => {
                if *reopen && self.contains_mailbox(appid, mailbox) {
                    self.open(now, appid, mailbox, side)?;
                }
                self.close(now, appid, mailbox, side, *mood).map(|()| Answer::Done)
            }
            Op::Touch { appid, mailbox } => {
                self.touch(now, appid, mailbox);
                Ok(Answer::Done)
            }
        }
    }
}
