//! One side of a magic-wormhole exchange of bytes on magic-wormhole.rs, with
//! the same command line as `transport-ureq/examples/magic_wormhole_peer.rs`:
//!
//! ```text
//! magic-wormhole-rs-peer send    URL APPID DATA_HEX          prints "code: CODE", then "received: HEX"
//! magic-wormhole-rs-peer receive URL APPID DATA_HEX CODE     prints "received: HEX"
//! magic-wormhole-rs-peer bench   URL APPID SEQUENTIAL IN_FLIGHT SECONDS
//! ```
//!
//! `bench` times whole exchanges in this one process, for
//! `tools/compare_magic_wormhole.py`: both sides of each, from creating the
//! sender's mailbox until both hold the other's message (the same span the
//! script times for Python magic-wormhole), first SEQUENTIAL one after the
//! other, then IN_FLIGHT at a time for SECONDS. It prints
//! `sequential: N exchanges, p50 A ms / p99 B ms / max C ms`, then
//! `throughput: start` when the loaded part begins (the script samples the
//! server's CPU there) and `throughput, C in flight: R exchanges/s, N
//! exchanges, process CPU ticks T` at its end.
//!
//! The receiver connects as magic-wormhole.rs receivers do (and GNOME's
//! Warp): it asks the server's `list` whether the code's nameplate exists
//! before it claims it.

use std::io::Write;
use std::time::{Duration, Instant};

use magic_wormhole::{AppConfig, AppID, Code, MailboxConnection, Wormhole};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex data")).collect()
}

type Error = Box<dyn std::error::Error>;

/// One exchange, both sides in this process; returns how long it took until
/// both sides held the other's message (closing is not timed).
async fn one_exchange(config: &AppConfig<()>) -> Result<Duration, Error> {
    let started = Instant::now();
    let sender = MailboxConnection::create(config.clone(), 2).await?;
    let code = sender.code().clone();
    let (mut sender, mut receiver) = futures::try_join!(Wormhole::connect(sender), async {
        Wormhole::connect(MailboxConnection::connect(config.clone(), code, false).await?).await
    })?;
    let (to_sender, to_receiver) = (b"receiver's data".to_vec(), b"sender's data".to_vec());
    futures::try_join!(sender.send(to_receiver.clone()), receiver.send(to_sender.clone()))?;
    let (got_sender, got_receiver) = futures::try_join!(sender.receive(), receiver.receive())?;
    let took = started.elapsed();
    if (got_sender, got_receiver) != (to_sender, to_receiver) {
        return Err("an exchange delivered the wrong message".into());
    }
    futures::try_join!(sender.close(), receiver.close())?;
    Ok(took)
}

/// This process's CPU time so far, in clock ticks (fields 14 and 15 of
/// `/proc/self/stat`); the caller knows the tick rate.
fn cpu_ticks() -> Result<u64, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat.rsplit_once(')').ok_or("unreadable /proc/self/stat")?.1.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn bench(config: AppConfig<()>, sequential: usize, in_flight: usize, seconds: u64) -> Result<(), Error> {
    futures::executor::block_on(async {
        if sequential > 0 {
            for _ in 0..5 {
                one_exchange(&config).await?;
            }
            let mut times = Vec::with_capacity(sequential);
            for _ in 0..sequential {
                times.push(one_exchange(&config).await?.as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
            println!(
                "sequential: {} exchanges, p50 {:.2} ms / p99 {:.2} ms / max {:.2} ms",
                times.len(),
                at(0.5),
                at(0.99),
                times[times.len() - 1]
            );
        }
        if in_flight > 0 {
            println!("throughput: start");
            std::io::stdout().flush()?;
            let (started, ticks) = (Instant::now(), cpu_ticks()?);
            let stop_at = started + Duration::from_secs(seconds);
            let worker = || async {
                let mut done = 0u64;
                while Instant::now() < stop_at {
                    one_exchange(&config).await?;
                    done += 1;
                }
                Ok::<u64, Error>(done)
            };
            let done: u64 = futures::future::try_join_all((0..in_flight).map(|_| worker())).await?.into_iter().sum();
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "throughput, {in_flight} in flight: {:.1} exchanges/s, {done} exchanges, process CPU ticks {}",
                done as f64 / elapsed,
                cpu_ticks()? - ticks
            );
        }
        Ok(())
    })
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [role, url, appid, sequential, in_flight, seconds] = &args[..] {
        if role == "bench" {
            let config =
                AppConfig { id: AppID::new(appid.clone()), rendezvous_url: url.clone().into(), app_version: () };
            return bench(config, sequential.parse()?, in_flight.parse()?, seconds.parse()?);
        }
    }
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
