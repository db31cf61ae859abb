//! An event-loop receiver on tokio:
//! `cargo run -p wormhole-sync-tokio --example async_receiver -- CODE [RENDEZVOUS_URL]`

use wormhole_sync_tokio::transcribe::Receiver;
use wormhole_sync_tokio::DEFAULT_RENDEZVOUS_URL;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), wormhole_sync_tokio::Error> {
    let mut args = std::env::args().skip(1);
    let Some(code) = args.next() else {
        eprintln!("usage: receiver CODE [RENDEZVOUS_URL]");
        std::process::exit(2);
    };
    let rendezvous = args.next().unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    let data = b"receiver's data".to_vec();
    let tr = Receiver::builder("example.com/app1", &code, data).rendezvous(&rendezvous).build()?.start();
    let theirdata = tr.when_data().await?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
