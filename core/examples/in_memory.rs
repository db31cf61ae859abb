//! An end-to-end exchange in one process: initiator, receiver and the
//! rendezvous logic all in memory, driven through real wire bytes, with a
//! wall-clock start and virtual time after it.
//!
//! `cargo run -p wormhole-sync-core --example in_memory [--wrong-code]`

use std::time::SystemTime;

use rand_core::{OsRng, RngCore};
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
use wormhole_sync_core::wire::{Request, Route};
use wormhole_sync_core::{Code, Config, Error, Event, Exchange, Progress, Timestamp};

/// Sends every due request of `side` to the server, feeds back the answer,
/// and prints the news (also keeping it in `seen`).
fn pump(name: &str, side: &mut Exchange, seen: &mut Progress, server: &mut Rendezvous, now: Timestamp) {
    while let Some(t) = side.poll_transmit(now) {
        let body = t.body();
        let request = Request::parse(Route::from_path(t.path()).expect("protocol path"), &body).expect("valid request");
        let (status, answer) = match server.handle(now, &request) {
            Ok(answer) => (200, answer.to_json()),
            Err(error) => (error.http_status(), error.to_json()),
        };
        println!("  {name:>9} {} {:<12} -> {status} ({} bytes)", t.method(), t.path(), answer.len());
        side.handle_response(now, t.id(), status, &answer);
    }
    while let Some(event) = side.poll_event() {
        match &event {
            Event::Code(code) => println!("{name}: Invitation Code: {code}"),
            Event::Verifier(v) => println!("{name}: verifier {v}"),
            Event::Outcome(Ok(data)) => println!("{name}: Their data: {}", String::from_utf8_lossy(data)),
            Event::Outcome(Err(error)) => println!("{name}: failed: {error}"),
            _ => {}
        }
        seen.record(event);
    }
}

/// A fresh secret seed from the operating system's generator.
fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

fn main() -> Result<(), Error> {
    let wrong_code = std::env::args().any(|a| a == "--wrong-code");
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let config = Config::new("example.com/app1")?;
    let mut now = Timestamp::from_system_time(SystemTime::now());

    let mut initiator = Exchange::initiator(config.clone(), b"initiator's data".to_vec(), os_seed())?;
    let (mut i_seen, mut r_seen) = (Progress::default(), Progress::default());
    initiator.start(now);
    pump("initiator", &mut initiator, &mut i_seen, &mut server, now);
    let mut code = i_seen.code().expect("allocated in memory").clone();
    if wrong_code {
        code = Code::new(code.channel(), &["wrong", "guess"])?;
        println!("receiver: typing the wrong code {code}");
    }

    let mut receiver = Exchange::receiver(config, code, b"receiver's data".to_vec(), os_seed())?;
    receiver.start(now);
    while !(initiator.is_finished() && receiver.is_finished()) {
        pump("initiator", &mut initiator, &mut i_seen, &mut server, now);
        pump("receiver", &mut receiver, &mut r_seen, &mut server, now);
        now = [initiator.poll_timeout(), receiver.poll_timeout()].into_iter().flatten().min().unwrap_or(now);
    }
    let left = server.stats().channels;
    let why = if left > 0 { " (a burned channel is kept a few minutes, so its id is not given out again)" } else { "" };
    println!("channels left on the server: {left}{why}");
    Ok(())
}
