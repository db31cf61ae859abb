//! An event-loop receiver on tokio:
//! `cargo run -p wormhole-sync-tokio --example async_receiver -- CODE [RENDEZVOUS_URL]`

use std::process::ExitCode;

use wormhole_sync_tokio::transcribe::Receiver;
use wormhole_sync_tokio::{Error, DEFAULT_RENDEZVOUS_URL};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(code) = args.next() else {
        eprintln!("usage: receiver CODE [RENDEZVOUS_URL]");
        return ExitCode::from(2);
    };
    let rendezvous = args.next().unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    match receive(&code, &rendezvous).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `Display` says what happened and what to do; `Debug` is for developers.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn receive(code: &str, rendezvous: &str) -> Result<(), Error> {
    let data = b"receiver's data".to_vec();
    // A mistyped word is refused here, before anything is sent.
    let tr = Receiver::builder("example.com/app1", code, data).rendezvous(rendezvous).build()?.start();
    let theirdata = tr.when_data().await?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
