//! A blocking receiver:
//! `cargo run -p wormhole-sync-ureq --example receiver -- CODE [RENDEZVOUS_URL]`

use wormhole_sync_ureq::transcribe::Receiver;
use wormhole_sync_ureq::DEFAULT_RENDEZVOUS_URL;

fn main() -> Result<(), wormhole_sync_ureq::Error> {
    let mut args = std::env::args().skip(1);
    let Some(code) = args.next() else {
        eprintln!("usage: receiver CODE [RENDEZVOUS_URL]");
        std::process::exit(2);
    };
    let rendezvous = args.next().unwrap_or_else(|| DEFAULT_RENDEZVOUS_URL.to_string());
    let data = b"receiver's data".to_vec();
    let mut r = Receiver::builder("example.com/app1", &code, data).rendezvous(&rendezvous).build()?;
    let theirdata = r.get_data()?;
    println!("Their data: {}", String::from_utf8_lossy(&theirdata));
    Ok(())
}
