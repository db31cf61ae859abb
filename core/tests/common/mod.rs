//! An in-memory network for exchange tests: requests go straight to a
//! [`Rendezvous`], answers straight back, and time only moves when asked.

#![allow(dead_code)]

use std::time::Duration;

use wormhole_sync_core::rendezvous::Rendezvous;
use wormhole_sync_core::wire::{Request, Response, Route};
use wormhole_sync_core::{Config, Event, Exchange, Timestamp, Transmit};

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
        Net { server: Rendezvous::default(), now: START, requests: Vec::new(), without_logs: false }
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
    pub fn run(&mut self, sides: &mut [&mut Exchange], limit: Duration) {
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

pub fn events(side: &mut Exchange) -> Vec<Event> {
    std::iter::from_fn(|| side.poll_event()).collect()
}

/// Starts an initiator and returns it with its code.
pub fn started_initiator(net: &mut Net, data: &[u8], seed: u8) -> (Exchange, wormhole_sync_core::Code) {
    let mut initiator = Exchange::initiator(config(), data.to_vec(), [seed; 32]).unwrap();
    initiator.start(net.now);
    net.pump(&mut initiator);
    let code = initiator.code().expect("allocated").clone();
    (initiator, code)
}

/// A copy of `side` that went through serialize and from_serialized.
pub fn restored(side: &Exchange) -> Exchange {
    Exchange::from_serialized(&side.serialize()).unwrap()
}
