//! An event-loop initiator on tokio:
//! `cargo run -p wormhole-sync-tokio --example async_initiator [RENDEZVOUS_URL]`
//! (start `cargo run -p wormhole-sync-server` first).

use std::process::ExitCode;

use wormhole_sync_tokio::transcribe::Initiator;
use wormhole_sync_tokio::{Error, DEFAULT_RENDEZVOUS_URL};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let rendezvous = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    match initiate(&rendezvous).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `Display` says what happened and what to do; `Debug` is for developers.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn initiate(rendezvous: &str) -> Result<(), Error> {
    let data = b"initiator's data".to_vec();
    let ti = Initiator::builder("example.com/app1", data).rendezvous(rendezvous).build()?.start();
    let d1 = ti.when_code();
    let d2 = ti.when_data();
    println!("Invitation Code: {}", d1.await?);
    let theirdata = d2.await?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
