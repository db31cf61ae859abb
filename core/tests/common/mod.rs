//! An in-memory network for exchange tests: requests go straight to a
//! [`Rendezvous`], answers straight back, and time only moves when asked.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
use wormhole_sync_core::wire::{Request, Response, Route};
use wormhole_sync_core::{Code, Config, Error, Event, Exchange, Progress, Timestamp, Transmit, Verifier};

pub const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

pub fn config() -> Config {
    Config::new("example.com/app1").unwrap()
}

pub struct Net {
    pub server: Rendezvous,
    pub now: Timestamp,
    pub requests: Vec<Request>,
    /// Answer joins and posts without their `log`, as a server that
    /// predates it does.
    pub without_logs: bool,
}

impl Net {
    pub fn new() -> Net {
        Net {
            server: Rendezvous::new(RendezvousConfig::default(), [0; 32]),
            now: START,
            requests: Vec::new(),
            without_logs: false,
        }
    }

    /// Answers one transmitted request from the in-memory server.
    pub fn answer(&mut self, side: &mut Exchange, t: &Transmit) {
        let request = Request::parse(Route::from_path(t.path()).unwrap(), &t.body()).unwrap();
        self.requests.push(request.clone());
        match self.server.handle(self.now, &request) {
            Ok(mut answer) => {
                if self.without_logs {
                    match &mut answer {
                        Response::Joined(joined) => joined.log = None,
                        Response::Posted(posted) => posted.log = None,
                        _ => {}
                    }
                }
                side.handle_response(self.now, t.id(), 200, &answer.to_json())
            }
            Err(error) => side.handle_response(self.now, t.id(), error.http_status(), &error.to_json()),
        }
    }

    /// Sends and answers everything `side` has due now.
    pub fn pump(&mut self, side: &mut Exchange) {
        while let Some(t) = side.poll_transmit(self.now) {
            self.answer(side, &t);
        }
    }

    /// Runs the sides until all are finished or `limit` of virtual time has passed.
    pub fn run(&mut self, sides: &mut [&mut Side], limit: Duration) {
        let end = self.now + limit;
        while self.now <= end && !sides.iter().all(|s| s.is_finished()) {
            for side in sides.iter_mut() {
                self.pump(side);
            }
            let next = sides.iter().filter_map(|s| s.poll_timeout()).min();
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => {}
                None => break,
            }
            for side in sides.iter_mut() {
                side.handle_timeout(self.now);
            }
        }
    }
}

/// The events `side` has pending (also kept in its news).
pub fn events(side: &mut Side) -> Vec<Event> {
    let events: Vec<Event> = std::iter::from_fn(|| side.exchange.poll_event()).collect();
    for event in &events {
        side.news.record(event.clone());
    }
    events
}

/// An exchange and the news it has announced, kept as a driver keeps them.
/// It derefs to the exchange; `code`, `verifier` and `outcome` read the news.
pub struct Side {
    pub exchange: Exchange,
    pub news: Progress,
}

impl From<Exchange> for Side {
    fn from(exchange: Exchange) -> Side {
        Side { exchange, news: Progress::default() }
    }
}

impl Deref for Side {
    type Target = Exchange;
    fn deref(&self) -> &Exchange {
        &self.exchange
    }
}

impl DerefMut for Side {
    fn deref_mut(&mut self) -> &mut Exchange {
        &mut self.exchange
    }
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?}", self.exchange, self.news)
    }
}

impl Side {
    /// The invitation code, once announced.
    pub fn code(&mut self) -> Option<&Code> {
        self.news.drain(&mut self.exchange);
        self.news.code()
    }

    /// The verifier, once announced.
    pub fn verifier(&mut self) -> Option<&Verifier> {
        self.news.drain(&mut self.exchange);
        self.news.verifier()
    }

    /// The outcome, once announced.
    pub fn outcome(&mut self) -> Option<Result<&[u8], &Error>> {
        self.news.drain(&mut self.exchange);
        self.news.outcome()
    }
}

/// Starts an initiator and returns it with its code.
pub fn started_initiator(net: &mut Net, data: &[u8], seed: u8) -> (Side, Code) {
    let mut initiator = Side::from(Exchange::initiator(config(), data.to_vec(), [seed; 32]).unwrap());
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().expect("allocated").clone();
    (initiator, code)
}

/// A copy of `side` that went through serialize and from_serialized.
pub fn restored(side: &Exchange) -> Side {
    Side::from(Exchange::from_serialized(&side.serialize()).unwrap())
}
