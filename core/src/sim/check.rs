//! How a run ended, and the one outcome each party's plot allows.
//!
//! Each plot names one outcome per party. The network, a crash or a lost
//! close can prevent it; then the party's outcome must be exactly the one
//! that follows from what the server told it before it ended (its first
//! refusal, the peer's close it saw, whether it was answered at all), and
//! the run must show the fault that prevented the plot's outcome.

use std::time::Duration;

use super::scenario::{Plot, Scenario};
use super::{parse_mood, GUESSER, INITIATOR, PARTIES, RECEIVER};
use crate::{Error, Mood};

/// How a run ended.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The initiator's outcome (`None`: it never finished).
    pub initiator: Option<Result<Vec<u8>, Error>>,
    /// The receiver's outcome (`None`: never created or never finished).
    pub receiver: Option<Result<Vec<u8>, Error>>,
    /// The guesser's outcome, in the plots that have one.
    pub guesser: Option<Result<Vec<u8>, Error>>,
    /// Invariant breaks seen during the run (an event contradicting an
    /// earlier one, a stall).
    pub violations: Vec<String>,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// When each party (initiator, receiver, guesser) started, after the
    /// initiator's start.
    pub started: [Option<Duration>; PARTIES],
    /// When each party learned its outcome, after the initiator's start.
    pub done: [Option<Duration>; PARTIES],
    /// Requests the server handled.
    pub requests: u64,
    /// Client restarts.
    pub restarts: u32,
    /// Client clock jumps (restarts' clock steps not counted).
    pub clock_jumps: u32,
    /// How far each party's clock was moved forwards in all, by jumps and
    /// restarts: time it believes passed that did not.
    pub clock_forward_ms: [u64; PARTIES],
    /// Server crashes.
    pub server_crashes: u32,
    /// Channels left at the end (those kept, emptied, for the retention included).
    pub channels_left: usize,
    /// When a close from each party was first committed by the server, after
    /// the initiator's start (all of a party's attempts can be lost).
    pub close_delivered: [Option<Duration>; PARTIES],
    /// Packets to or from each party that the network lost.
    pub dropped: [u32; PARTIES],
    /// What each party was told before its outcome.
    pub told: [Told; PARTIES],
}

/// What the server told one party before it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// Some answer arrived (not only broken connections).
    pub answered: bool,
    /// An allocate or join succeeded.
    pub joined: bool,
    /// The first refusal's error code, with whether it came after a join.
    pub refusal: Option<(String, bool)>,
    /// The first close of another side that a log showed.
    pub peer_close: Option<Mood>,
    /// A log showed another side's PAKE message.
    pub peer_pake: bool,
    /// A log showed another side's data.
    pub peer_data: bool,
}

impl Told {
    /// How a party that saw no refusal and no close ends at its timeout:
    /// a peer that sent its PAKE message but never its data may have been
    /// an interceptor (`PeerVanished`); otherwise nobody came (`Timeout`).
    fn timeout(&self) -> Error {
        if self.peer_pake && !self.peer_data {
            Error::PeerVanished
        } else {
            Error::Timeout
        }
    }
}

impl Report {
    /// Notes what an answer to `who` (whose side id is `side`) tells it.
    pub(super) fn record_answer(&mut self, who: usize, side: Option<&str>, answer: Option<(u16, &[u8])>) {
        let told = &mut self.told[who];
        let Some((status, body)) = answer else { return };
        told.answered = true;
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        if status >= 400 {
            if let (None, Some(code)) = (&told.refusal, json.get("error").and_then(|e| e.as_str())) {
                told.refusal = Some((code.to_string(), told.joined));
            }
            return;
        }
        if json.get("sides").is_some() || json.get("channel").is_some() {
            told.joined = true;
        }
        let log = json.get("log").unwrap_or(&json);
        let messages = log.get("messages").and_then(|m| m.as_array()).into_iter().flatten();
        for message in messages {
            let other = message.get("side").and_then(|s| s.as_str()).is_some_and(|s| Some(s) != side);
            match message.get("phase").and_then(|p| p.as_str()) {
                Some("pake") if other => told.peer_pake = true,
                Some("data") if other => told.peer_data = true,
                _ => {}
            }
        }
        let closed = log.get("closed").and_then(|c| c.as_array()).into_iter().flatten();
        for close in closed {
            let other = close.get("side").and_then(|s| s.as_str()).is_some_and(|s| Some(s) != side);
            let mood = close.get("mood").and_then(|m| m.as_str()).and_then(parse_mood);
            if let (true, Some(mood), None) = (other, mood, told.peer_close) {
                told.peer_close = Some(mood);
            }
        }
    }
}

/// The error a party must end with, given what it was told: the first
/// refusal, else the peer's close, else a timeout (or, never answered, an
/// unreachable server).
fn error_from(told: &Told) -> Option<Error> {
    if let Some((code, after_join)) = &told.refusal {
        return Some(match (code.as_str(), after_join) {
            ("crowded", _) => Error::Crowded,
            ("unknown-channel", false) => Error::UnknownChannel,
            ("unknown-channel", true) => Error::ChannelExpired,
            ("burned", false) => Error::ChannelBurned,
            ("burned", true) => Error::WrongCode,
            ("abandoned", _) => Error::PeerClosed { mood: Mood::Lonely },
            _ => return None, // Anything else is a refusal no plot provokes.
        });
    }
    Some(match told.peer_close {
        Some(Mood::Scary) => Error::WrongCode,
        Some(Mood::Declined) => Error::PeerDeclined,
        Some(mood @ (Mood::Lonely | Mood::Errory)) => Error::PeerClosed { mood },
        Some(Mood::Happy) | None if told.answered => told.timeout(),
        Some(Mood::Happy) | None => return None, // ServerUnreachable, compared by kind below.
    })
}

/// An outcome for messages: data shows as its length only.
fn show(outcome: &Result<Vec<u8>, Error>) -> String {
    match outcome {
        Ok(data) => format!("Ok(<{} bytes>)", data.len()),
        Err(e) => format!("Err({e:?})"),
    }
}

fn same_outcome(actual: &Result<Vec<u8>, Error>, expected: &Result<Vec<u8>, Error>) -> bool {
    match (actual, expected) {
        (Err(Error::ServerUnreachable { .. }), Err(Error::ServerUnreachable { .. })) => true,
        _ => actual == expected,
    }
}

fn unreachable() -> Error {
    Error::ServerUnreachable { cause: crate::TransportError::from_message("never answered") }
}

/// Checks a run: no invariant broke, and each party ended with its plot's
/// outcome, or with the one its observations dictate when a fault the run
/// shows prevented the plot's. Returns what went wrong.
pub fn check(scenario: &Scenario, report: &Report) -> Result<(), String> {
    if !report.violations.is_empty() {
        return Err(report.violations.join("; "));
    }
    let outcomes = [&report.initiator, &report.receiver, &report.guesser];
    let data = [&scenario.receiver_data, &scenario.initiator_data];
    for (who, name) in [(INITIATOR, "initiator"), (RECEIVER, "receiver"), (GUESSER, "guesser")] {
        let told = &report.told[who];
        let observed = error_from(told).unwrap_or_else(unreachable);
        let plot: Option<Result<Vec<u8>, Error>> = match who {
            GUESSER => match scenario.plot {
                _ if report.started[GUESSER].is_none() => None,
                Plot::GuesserFirst => Some(Err(Error::WrongCode)),
                // It wakes long after: whatever it then learns, it never gets the data
                // (checked below).
                Plot::RacingGuesser => report.guesser.clone().filter(Result::is_err),
                // In after the receiver: refused, as full or already gone.
                Plot::GuesserLate => Some(Err(observed.clone())),
                _ => None,
            },
            _ => Some(match scenario.plot {
                Plot::Honest | Plot::GuesserLate => Ok(data[who].clone()),
                Plot::WrongCode => Err(Error::WrongCode),
                Plot::GuesserFirst if who == INITIATOR => Err(Error::WrongCode),
                // Someone used the code and went silent: the initiator says so and burns it.
                Plot::RacingGuesser if who == INITIATOR => Err(Error::PeerVanished),
                // The code was used: the receiver is told someone else may have used it.
                Plot::RacingGuesser => Err(Error::Crowded),
                // The guesser holds the channel: refused, as burned or full.
                Plot::GuesserFirst => Err(observed.clone()),
                // Nobody came, or the peer vanished after its PAKE message.
                Plot::InitiatorVanishes | Plot::ReceiverVanishes => Err(told.timeout()),
            }),
        };
        let actual = outcomes[who];
        let Some(plot) = plot else {
            if let Some(outcome) = actual {
                return Err(format!("{name} took part though its plot has no part for it: {}", show(outcome)));
            }
            continue;
        };
        let Some(actual) = actual else {
            if scenario.severe && who == RECEIVER && report.started[RECEIVER].is_none() {
                continue; // The initiator never got a code to show.
            }
            return Err(format!("{name} never finished"));
        };
        if let (Ok(got), Ok(sent)) = (actual, &plot) {
            if got != sent {
                return Err(format!("{name} received wrong data"));
            }
        }
        if same_outcome(actual, &plot) {
            continue;
        }
        if actual.is_ok() {
            return Err(format!("{name} completed where its plot allows {}", show(&plot)));
        }
        // The plot's outcome did not happen: a fault must explain it, and
        // the outcome must be the one that follows from what it was told.
        if !same_outcome(actual, &Err(observed.clone())) {
            return Err(format!(
                "{name} ended with {actual:?}; its plot allows {plot:?}, what it was told {observed:?}"
            ));
        }
        if let Some(why) = unexplained(scenario, report, who) {
            return Err(format!("{name} ended with {} instead of {}, {why}", show(actual), show(&plot)));
        }
    }
    if matches!(scenario.plot, Plot::GuesserFirst | Plot::RacingGuesser) && matches!(report.receiver, Some(Ok(_))) {
        return Err("the receiver got into a channel a guesser held".into());
    }
    if scenario.plot == Plot::RacingGuesser && matches!(report.guesser, Some(Ok(_))) {
        return Err("a racing guesser completed an exchange".into());
    }
    Ok(())
}

/// Why a party's departure from its plot is not explained by the run's
/// faults, or `None` if it is.
fn unexplained(scenario: &Scenario, report: &Report, who: usize) -> Option<String> {
    if scenario.severe {
        return None;
    }
    // Each lost packet (or request lost in a restart) can cost a side up to
    // a whole long-poll, the request timeout and a retry interval; a crash costs as much again plus its
    // downtime, and a clock moved forwards costs what it skipped. A party
    // whose losses add up to the time it had may time out through no fault
    // of the protocol, and its peer may then see it leave `lonely`.
    let config = &scenario.config;
    let worst_loss = config.long_poll() + config.request_timeout() + config.schedule().interval_at(config.timeout());
    let faults = &scenario.faults;
    let crash_cost = worst_loss.as_millis() + u128::from(faults.max_server_downtime_ms);
    let had = config.timeout().saturating_sub(report.started[RECEIVER].unwrap_or_default()).as_millis();
    let lost_the_time = |p: usize| {
        let losses = u128::from(report.dropped[p] + report.restarts) * worst_loss.as_millis()
            + u128::from(report.server_crashes) * crash_cost
            + u128::from(report.clock_forward_ms[p]);
        losses >= had
    };
    let peers: &[usize] = match who {
        INITIATOR => &[RECEIVER, GUESSER],
        _ => &[INITIATOR],
    };
    // A wrong code reaches the party that did not detect it only through
    // the detecting party's `scary` close; if every attempt of it was lost,
    // or it got through too late for this party to learn of it (less than a
    // lost request's cost before it ended), waiting out the timeout is all
    // it can do.
    let ended = report.done[who].unwrap_or(Duration::MAX);
    let close_lost = peers
        .iter()
        .any(|&p| report.started[p].is_some() && report.close_delivered[p].is_none_or(|at| at + worst_loss >= ended));
    if lost_the_time(who) || peers.iter().any(|&p| lost_the_time(p)) || close_lost {
        return None;
    }
    Some(format!(
        "with too few faults to explain it ({} and {} packets lost, {} crashes)",
        report.dropped[who], report.dropped[peers[0]], report.server_crashes
    ))
}
