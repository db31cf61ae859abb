//! One side of a magic-wormhole exchange of bytes on magic-wormhole.rs, with
//! the same command line as `transport-ureq/examples/magic_wormhole_peer.rs`:
//!
//! ```text
//! magic-wormhole-rs-peer send    URL APPID DATA_HEX          prints "code: CODE", then "received: HEX"
//! magic-wormhole-rs-peer receive URL APPID DATA_HEX CODE     prints "received: HEX"
//! ```
//!
//! The receiver connects as magic-wormhole.rs receivers do (and GNOME's
//! Warp): it asks the server's `list` whether the code's nameplate exists
//! before it claims it.

use std::io::Write;

use magic_wormhole::{AppConfig, AppID, Code, MailboxConnection, Wormhole};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex data")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, url, appid, data, rest @ ..] = &args[..] else {
        return Err("usage: magic-wormhole-rs-peer send|receive URL APPID DATA_HEX [CODE]".into());
    };
    let config = AppConfig { id: AppID::new(appid.clone()), rendezvous_url: url.clone().into(), app_version: () };
    futures::executor::block_on(async {
        let connection = match (role.as_str(), rest) {
            ("send", []) => {
                let connection = MailboxConnection::create(config, 2).await?;
                println!("code: {}", connection.code());
                std::io::stdout().flush()?;
                connection
            }
            ("receive", [code]) => MailboxConnection::connect(config, code.parse::<Code>()?, false).await?,
            _ => return Err("usage: magic-wormhole-rs-peer send|receive URL APPID DATA_HEX [CODE]".into()),
        };
        let mut wormhole = Wormhole::connect(connection).await?;
        wormhole.send(unhex(data)).await?;
        let received = wormhole.receive().await?;
        println!("received: {}", hex(&received));
        wormhole.close().await?;
        Ok(())
    })
}
