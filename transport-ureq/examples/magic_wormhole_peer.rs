//! One side of a magic-wormhole exchange of bytes, for trying this crate
//! against magic-wormhole's own library (`tools/mailbox_interop.py` does):
//!
//! ```text
//! magic_wormhole_peer send    URL APPID DATA_HEX          prints "code: CODE", then "received: HEX"
//! magic_wormhole_peer receive URL APPID DATA_HEX CODE     prints "received: HEX"
//! ```

use std::io::Write;
use std::time::Duration;

use wormhole_sync_ureq::magic_wormhole::{Initiator, Receiver};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex data")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, url, appid, data, rest @ ..] = &args[..] else {
        return Err("usage: magic_wormhole_peer send|receive URL APPID DATA_HEX [CODE]".into());
    };
    let timeout = Duration::from_secs(60);
    let received = match (role.as_str(), rest) {
        ("send", []) => {
            let mut initiator = Initiator::builder(appid, unhex(data)).rendezvous(url).timeout(timeout).build()?;
            println!("code: {}", initiator.get_code()?);
            std::io::stdout().flush()?;
            initiator.get_data()?
        }
        ("receive", [code]) => {
            Receiver::builder(appid, code, unhex(data)).rendezvous(url).timeout(timeout).build()?.get_data()?
        }
        _ => return Err("usage: magic_wormhole_peer send|receive URL APPID DATA_HEX [CODE]".into()),
    };
    println!("received: {}", hex(&received));
    Ok(())
}
