//! CPU cost of the protocol's parts and of one whole exchange, without I/O:
//! `cargo bench -p wormhole-sync-core --bench core`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wormhole_sync_core::bench_internals::{code_for, pake_start};
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig};
use wormhole_sync_core::wire::{Request, Route};
use wormhole_sync_core::{ChannelId, Code, Config, Exchange, Progress, Role, Timestamp};

const APPID: &str = "bench.example/core";

fn codes(c: &mut Criterion) {
    let channel = ChannelId::new(7).unwrap();
    c.bench_function("code/generate", |b| b.iter(|| code_for(black_box([7; 32]), channel, 2)));
    c.bench_function("code/parse", |b| b.iter(|| black_box(" 7 - Guitarist  revenge ").parse::<Code>().unwrap()));
}

fn spake2(c: &mut Criterion) {
    let code: Code = "7-guitarist-revenge".parse().unwrap();
    let (receiver_message, _) = pake_start([2; 32], APPID, Role::Receiver, &code);
    c.bench_function("spake2/start", |b| b.iter(|| pake_start(black_box([1; 32]), APPID, Role::Initiator, &code)));
    c.bench_function("spake2/start+finish", |b| {
        b.iter(|| {
            let (_, state) = pake_start(black_box([1; 32]), APPID, Role::Initiator, &code);
            state.finish(&receiver_message).unwrap()
        })
    });
}

fn sealing(c: &mut Criterion) {
    let code: Code = "7-guitarist-revenge".parse().unwrap();
    let (initiator_message, initiator) = pake_start([1; 32], APPID, Role::Initiator, &code);
    let (receiver_message, receiver) = pake_start([2; 32], APPID, Role::Receiver, &code);
    let (sender, opener) = (initiator.finish(&receiver_message).unwrap(), receiver.finish(&initiator_message).unwrap());
    let channel = code.channel();
    let mut group = c.benchmark_group("seal");
    for size in [1024usize, 64 * 1024] {
        let data = vec![0x5a; size];
        let sealed = sender.seal(APPID, channel, &data);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &data, |b, data| {
            b.iter(|| sender.seal(APPID, channel, data))
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, sealed| {
            b.iter(|| opener.open(APPID, channel, sealed).unwrap())
        });
    }
    group.finish();
}

/// Runs one exchange to completion against `server`, every request and
/// answer going through JSON as it would over HTTP. This server answers at
/// once (it holds no long-poll), so virtual time jumps to the next wake-up
/// whenever neither side has anything to send.
fn whole_exchange(server: &mut Rendezvous, seed: u8, start: Timestamp) {
    let config = Config::new(APPID).unwrap();
    let mut now = start;
    let mut initiator = Exchange::initiator(config.clone(), b"initiator's data".to_vec(), [seed; 32]).unwrap();
    initiator.start(now);
    pump(server, &mut initiator, now);
    let mut seen = Progress::default();
    seen.drain(&mut initiator);
    let code = seen.code().unwrap().clone();
    let mut receiver = Exchange::receiver(config, code, b"receiver's data".to_vec(), [seed ^ 0xff; 32]).unwrap();
    receiver.start(now);
    while !(initiator.is_finished() && receiver.is_finished()) {
        pump(server, &mut receiver, now);
        pump(server, &mut initiator, now);
        let next = [initiator.poll_timeout(), receiver.poll_timeout()].into_iter().flatten().min();
        now = next.map_or(now, |t| t.max(now));
    }
    seen.drain(&mut initiator);
    assert_eq!(seen.outcome(), Some(Ok(&b"receiver's data"[..])));
}

fn pump(server: &mut Rendezvous, side: &mut Exchange, now: Timestamp) {
    while let Some(t) = side.poll_transmit(now) {
        let request = Request::parse(Route::from_path(t.path()).unwrap(), &t.body()).unwrap();
        let (status, body) = match server.handle(now, &request) {
            Ok(answer) => (200, answer.to_json()),
            Err(e) => (e.http_status(), e.to_json()),
        };
        side.handle_response(now, t.id(), status, &body);
    }
}

fn exchange(c: &mut Criterion) {
    let mut server = Rendezvous::new(RendezvousConfig::default(), [0; 32]);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut seed = 0u8;
    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(1));
    group.bench_function("whole, in memory", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(1);
            whole_exchange(&mut server, seed, now)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = codes, spake2, sealing, exchange
}
criterion_main!(benches);
