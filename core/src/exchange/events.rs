//! News for the application: the events an exchange hands out, and
//! [`Progress`], the record a driver keeps of them for its waiters.

use std::fmt;

use super::Exchange;
use crate::code::Code;
use crate::crypto::Verifier;
use crate::Error;

/// Something the application should know, from [`Exchange::poll_event`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The invitation code is known (initiator: allocated; receiver: given).
    Code(Code),
    /// The keys are agreed; show this to the person if the application
    /// confirms verifiers.
    Verifier(Verifier),
    /// The exchange ended: the peer's data exactly as it sent it, or why it
    /// failed. The channel may still be closing.
    Outcome(Result<Vec<u8>, Error>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Code(code) => f.debug_tuple("Code").field(code).finish(),
            Event::Verifier(v) => f.debug_tuple("Verifier").field(v).finish(),
            Event::Outcome(Ok(data)) => write!(f, "Outcome(Ok(<{} bytes>))", data.len()),
            Event::Outcome(Err(e)) => f.debug_tuple("Outcome").field(&Err::<(), _>(e)).finish(),
        }
    }
}

/// Which events have been handed out since this object was created.
#[derive(Default, Debug)]
pub(super) struct Announced {
    code: bool,
    verifier: bool,
    outcome: bool,
}

impl Exchange {
    /// Queues an event for each piece of news not announced yet.
    pub(super) fn announce(&mut self) {
        if !self.announced.code && self.facts.started_at.is_some() {
            if let Some(code) = &self.facts.code {
                self.announced.code = true;
                self.events.push_back(Event::Code(code.clone()));
            }
        }
        if !self.announced.verifier {
            if let Some(keys) = &self.keys {
                self.announced.verifier = true;
                self.events.push_back(Event::Verifier(keys.verifier().clone()));
            }
        }
        if !self.announced.outcome {
            let outcome = match (&self.facts.failure, &self.peer_plain) {
                (Some(error), _) => Some(Err(error.clone())),
                (None, Some(plain)) if self.succeeded => Some(Ok(plain.clone())),
                _ => None,
            };
            if let Some(outcome) = outcome {
                self.announced.outcome = true;
                self.events.push_back(Event::Outcome(outcome));
            }
        }
    }
}

/// What a driver has learned from an exchange's events, for callers that
/// ask later ("what is the code?") or wait ("when is the data here?").
///
/// ```
/// use wormhole_sync_core::{Config, Exchange, Progress, Timestamp};
///
/// let mut exchange = Exchange::receiver(Config::new("app")?, "7-guitarist-revenge".parse()?, b"hi".to_vec(), [1; 32])?;
/// exchange.start(Timestamp::from_millis(1_000));
/// let mut progress = Progress::default();
/// progress.drain(&mut exchange);
/// assert_eq!(progress.code().unwrap().to_string(), "7-guitarist-revenge");
/// assert!(progress.data().is_none()); // Not yet: nothing was sent.
/// # Ok::<(), wormhole_sync_core::Error>(())
/// ```
///
/// `Debug` never shows the code's words or the data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Progress {
    code: Option<Code>,
    verifier: Option<Verifier>,
    outcome: Option<Result<Vec<u8>, Error>>,
}

impl Progress {
    /// Takes in one event.
    pub fn record(&mut self, event: Event) {
        match event {
            Event::Code(code) => self.code = Some(code),
            Event::Verifier(verifier) => self.verifier = Some(verifier),
            Event::Outcome(outcome) => self.outcome = Some(outcome),
        }
    }

    /// Takes in every event `exchange` has pending; true if there was one.
    pub fn drain(&mut self, exchange: &mut Exchange) -> bool {
        let mut any = false;
        while let Some(event) = exchange.poll_event() {
            self.record(event);
            any = true;
        }
        any
    }

    /// The invitation code, once known.
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// The verifier, once the keys are agreed.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The outcome, once known: the peer's data or why the exchange failed.
    pub fn outcome(&self) -> Option<Result<&[u8], &Error>> {
        self.outcome.as_ref().map(|o| o.as_deref())
    }

    /// What a caller waiting for the code gets: the code, or the error that
    /// ended the exchange before it was known. `None`: keep waiting.
    pub fn code_result(&self) -> Option<Result<Code, Error>> {
        match (&self.code, &self.outcome) {
            (Some(code), _) => Some(Ok(code.clone())),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            _ => None,
        }
    }

    /// What a caller waiting for the verifier gets, likewise.
    pub fn verifier_result(&self) -> Option<Result<Verifier, Error>> {
        match (&self.verifier, &self.outcome) {
            (Some(verifier), _) => Some(Ok(verifier.clone())),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            _ => None,
        }
    }

    /// What a caller waiting for the peer's data gets: the outcome.
    pub fn data(&self) -> Option<Result<Vec<u8>, Error>> {
        self.outcome.clone()
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = self.outcome.as_ref().map(|o| o.as_ref().map(|data| format!("<{} bytes>", data.len())));
        f.debug_struct("Progress")
            .field("code", &self.code)
            .field("verifier", &self.verifier)
            .field("outcome", &outcome)
            .finish()
    }
}
