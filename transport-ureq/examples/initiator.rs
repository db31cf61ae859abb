//! A blocking initiator:
//! `cargo run -p wormhole-sync-ureq --example initiator [RENDEZVOUS_URL]`
//! (start `cargo run -p wormhole-sync-server` first), then run the receiver
//! example with the code it prints.

use std::process::ExitCode;

use wormhole_sync_ureq::transcribe::Initiator;
use wormhole_sync_ureq::{Error, DEFAULT_RENDEZVOUS_URL};

fn main() -> ExitCode {
    let rendezvous = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    match initiate(&rendezvous) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `Display` says what happened and what to do; `Debug` is for developers.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn initiate(rendezvous: &str) -> Result<(), Error> {
    let data = b"initiator's data".to_vec();
    let mut i = Initiator::builder("example.com/app1", data).rendezvous(rendezvous).build()?;
    let code = i.get_code()?;
    println!("Invitation Code: {code}");
    let theirdata = i.get_data()?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
