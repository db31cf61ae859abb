//! A blocking receiver:
//! `cargo run -p wormhole-sync-ureq --example receiver -- CODE [RENDEZVOUS_URL]`

use std::process::ExitCode;

use wormhole_sync_ureq::transcribe::Receiver;
use wormhole_sync_ureq::{Error, DEFAULT_RENDEZVOUS_URL};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(code) = args.next() else {
        eprintln!("usage: receiver CODE [RENDEZVOUS_URL]");
        return ExitCode::from(2);
    };
    let rendezvous = args.next().unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    match receive(&code, &rendezvous) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `Display` says what happened and what to do; `Debug` is for developers.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn receive(code: &str, rendezvous: &str) -> Result<(), Error> {
    let data = b"receiver's data".to_vec();
    // A mistyped word is refused here, before anything is sent.
    let mut r = Receiver::builder("example.com/app1", code, data).rendezvous(rendezvous).build()?;
    let theirdata = r.get_data()?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
