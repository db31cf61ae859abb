//! Real exchanges between both real clients (the async one on one side, the
//! blocking one on the other) and the real server, through the fault proxy
//! on 127.0.0.1: each completes with the right data within a bound derived
//! from the schedule and the faults injected, or ends with the documented
//! error when the faults outlast the timeout.

use std::time::{Duration, Instant};

use wormhole_sync_core::builder::{Builder, Client};
use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_fault_proxy::{Fault, FaultProxy, Stats};
use wormhole_sync_server::{RunningServer, ServerConfig, Storage};
use wormhole_sync_tokio::{transcribe as asynchronous, Schedule};
use wormhole_sync_ureq::transcribe as blocking;

const APP: &str = "example.com/faults";
/// The clients' timings: a lost request costs at most the long-poll wait
/// and the request timeout (the client gives up on it), then the interval
/// (it retries).
const INTERVAL: Duration = Duration::from_millis(100);
const LONG_POLL: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// What a fault-free exchange may take on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

fn cost_of_a_lost_request() -> Duration {
    LONG_POLL + REQUEST_TIMEOUT + INTERVAL
}

/// How long exchanges through a proxy that injected `stats` may take: the
/// slack, a lost request's cost per broken connection, and every delay the
/// proxy added (summed over connections, so an upper bound).
fn bound(stats: &Stats) -> Duration {
    SLACK + cost_of_a_lost_request() * u32::try_from(stats.broken).unwrap_or(u32::MAX) + stats.added_delay
}

async fn server() -> RunningServer {
    let config = ServerConfig::default().without_rate_limits();
    RunningServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), RendezvousSnapshot::new(vec![]))
        .await
        .unwrap()
}

/// The clients' builder with the timings above and `timeout`, built.
fn tuned<C: Client>(builder: Builder<C>, url: &str, timeout: Duration) -> C {
    let schedule = Schedule::every(INTERVAL).unwrap();
    let builder = builder.rendezvous(url).schedule(schedule).long_poll(LONG_POLL).request_timeout(REQUEST_TIMEOUT);
    builder.timeout(timeout).build().unwrap()
}

type Outcome = Result<Vec<u8>, String>;

/// One exchange through `url`: the async client initiates and the blocking
/// one receives, or the other way round. Returns both outcomes.
async fn exchange(url: &str, async_initiates: bool, timeout: Duration, data: (&[u8], &[u8])) -> (Outcome, Outcome) {
    let (url, i_data, r_data) = (url.to_string(), data.0.to_vec(), data.1.to_vec());
    if async_initiates {
        let i = tuned(asynchronous::Initiator::builder(APP, i_data), &url, timeout).start();
        let code = match i.when_code().await {
            Ok(code) => code.to_string(),
            Err(e) => return (Err(format!("{e:?}")), Err("never started".into())),
        };
        let receiving = tokio::task::spawn_blocking(move || {
            let mut r = tuned(blocking::Receiver::builder(APP, &code, r_data), &url, timeout);
            r.get_data().map_err(|e| format!("{e:?}"))
        });
        let mine = i.when_data().await.map_err(|e| format!("{e:?}"));
        (mine, receiving.await.unwrap())
    } else {
        let (codes, code) = tokio::sync::oneshot::channel();
        let initiating = tokio::task::spawn_blocking(move || {
            let mut i = tuned(blocking::Initiator::builder(APP, i_data), &url, timeout);
            match i.get_code() {
                Ok(code) => {
                    let _ = codes.send((code.to_string(), url));
                    i.get_data().map_err(|e| format!("{e:?}"))
                }
                Err(e) => Err(format!("{e:?}")),
            }
        });
        let Ok((code, url)) = code.await else {
            return (initiating.await.unwrap(), Err("never started".into()));
        };
        let r = tuned(asynchronous::Receiver::builder(APP, &code, r_data), &url, timeout).start();
        let theirs = r.when_data().await.map_err(|e| format!("{e:?}"));
        (initiating.await.unwrap(), theirs)
    }
}

fn data(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

/// Every other connection gets the same kind of fault; one exchange each
/// way per kind, all kinds at once, each through its own proxy.
#[test]
fn exchanges_complete_through_each_kind_of_fault() {
    let kinds = [
        Fault::Latency(Duration::from_millis(40)),
        Fault::Stall { after: 60, pause: Duration::from_millis(1_500) },
        Fault::Stall { after: 300, pause: Duration::from_millis(400) },
        Fault::ResetRequest { after: 30 },
        Fault::ResetRequest { after: 200 },
        Fault::ResetResponse { after: 10 },
        Fault::ResetResponse { after: 150 },
        Fault::Truncate { after: 40 },
        Fault::Truncate { after: 160 },
        Fault::Trickle(Duration::from_millis(1)),
    ];
    runtime().block_on(async {
        let server = server().await;
        let mut runs = Vec::new();
        for (k, kind) in kinds.into_iter().enumerate() {
            for async_initiates in [true, false] {
                let proxy = FaultProxy::start(server.addr(), move |n| if n % 2 == 0 { kind } else { Fault::None })
                    .await
                    .unwrap();
                runs.push(tokio::spawn(async move {
                    let (i_data, r_data) = (data(64 + k, 1), data(80 + k, 2));
                    let started = Instant::now();
                    let (mine, theirs) =
                        exchange(&proxy.url(), async_initiates, Duration::from_secs(120), (&i_data, &r_data)).await;
                    let took = started.elapsed();
                    let stats = proxy.stats();
                    let what = format!("{kind:?}, async initiator {async_initiates}: {stats:?}, took {took:?}");
                    println!("{what}; bound {:?}", bound(&stats));
                    assert_eq!(mine, Ok(r_data), "{what}");
                    assert_eq!(theirs, Ok(i_data), "{what}");
                    assert!(stats.faulted > 0, "no fault was injected: {what}");
                    assert!(took <= bound(&stats), "longer than the bound {:?}: {what}", bound(&stats));
                }));
            }
        }
        for run in runs {
            run.await.unwrap();
        }
        server.stop().await;
    });
}

/// A seeded mix of every kind of fault on most connections, with exchanges
/// running side by side through one proxy.
#[test]
fn exchanges_complete_through_a_mix_of_faults() {
    runtime().block_on(async {
        let server = server().await;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let proxy = FaultProxy::start(server.addr(), move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let after = (state >> 8) as usize % 300;
            match (state >> 40) % 8 {
                0 => Fault::Latency(Duration::from_millis((state >> 16) % 50)),
                1 => Fault::Stall { after, pause: Duration::from_millis((state >> 16) % 1_500) },
                2 => Fault::ResetRequest { after },
                3 | 4 => Fault::ResetResponse { after },
                5 => Fault::Truncate { after },
                6 => Fault::Trickle(Duration::from_millis(1)),
                _ => Fault::None,
            }
        })
        .await
        .unwrap();
        let url = proxy.url();
        let started = Instant::now();
        let runs: Vec<_> = (0..10)
            .map(|n| {
                let url = url.clone();
                tokio::spawn(async move {
                    let (i_data, r_data) = (data(100 + n, 3), data(90 + n, 4));
                    let (mine, theirs) = exchange(&url, n % 2 == 0, Duration::from_secs(120), (&i_data, &r_data)).await;
                    assert_eq!(mine, Ok(r_data), "exchange {n}");
                    assert_eq!(theirs, Ok(i_data), "exchange {n}");
                })
            })
            .collect();
        for run in runs {
            run.await.unwrap();
        }
        let (took, stats) = (started.elapsed(), proxy.stats());
        println!("10 exchanges through a mix: {stats:?}, took {took:?}, bound {:?}", bound(&stats));
        assert!(stats.broken >= 3, "the mix broke too little to prove anything: {stats:?}");
        assert!(took <= bound(&stats), "took {took:?}, bound {:?}: {stats:?}", bound(&stats));
        server.stop().await;
    });
}

/// A blackhole shorter than the timeout, while the initiator waits for the
/// receiver: both sides ride it out.
#[test]
fn a_blackhole_shorter_than_the_timeout_is_ridden_out() {
    runtime().block_on(async {
        let server = server().await;
        let proxy = FaultProxy::start(server.addr(), |_| Fault::None).await.unwrap();
        let url = proxy.url();
        let i =
            tuned(asynchronous::Initiator::builder(APP, b"through the dark".to_vec()), &url, Duration::from_secs(60))
                .start();
        let code = i.when_code().await.unwrap().to_string();
        let blackhole = Duration::from_secs(4);
        proxy.blackhole(blackhole);
        let started = Instant::now();
        let receiving = tokio::task::spawn_blocking(move || {
            let mut r =
                tuned(blocking::Receiver::builder(APP, &code, b"and back".to_vec()), &url, Duration::from_secs(60));
            r.get_data()
        });
        assert_eq!(i.when_data().await.unwrap(), b"and back");
        assert_eq!(receiving.await.unwrap().unwrap(), b"through the dark");
        let took = started.elapsed();
        // Each side loses at most the blackhole and one lost request's cost.
        let most = blackhole + cost_of_a_lost_request() + SLACK;
        assert!(took >= blackhole && took <= most, "took {took:?}, expected {blackhole:?} to {most:?}");
        server.stop().await;
    });
}

/// Faults that outlast the timeout end each side with the documented error:
/// a side that never reached the server reports it unreachable, a side that
/// did reports the timeout; both at their timeout, not later.
#[test]
fn faults_outlasting_the_timeout_end_with_the_documented_errors() {
    runtime().block_on(async {
        let server = server().await;
        let proxy = FaultProxy::start(server.addr(), |_| Fault::None).await.unwrap();
        let url = proxy.url();
        let timeout = Duration::from_secs(3);
        let i = tuned(asynchronous::Initiator::builder(APP, b"unsent".to_vec()), &url, timeout).start();
        let code = i.when_code().await.unwrap().to_string();
        proxy.blackhole(Duration::from_secs(30));
        let started = Instant::now();
        let receiving = tokio::task::spawn_blocking(move || {
            let mut r = tuned(blocking::Receiver::builder(APP, &code, b"unsent".to_vec()), &url, timeout);
            r.get_data()
        });
        assert_eq!(i.when_data().await, Err(wormhole_sync_tokio::Error::Timeout), "it had reached the server");
        let theirs = receiving.await.unwrap();
        assert!(matches!(theirs, Err(wormhole_sync_ureq::Error::ServerUnreachable { .. })), "{theirs:?}");
        let took = started.elapsed();
        assert!(took <= timeout + SLACK, "the errors came {took:?} after the blackhole began");
        server.stop().await;
    });
}
