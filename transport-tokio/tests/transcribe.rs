//! The async API against the real server on 127.0.0.1.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_core::{Mood, MAX_DATA_LEN};
use wormhole_sync_server::{RunningServer, ServerConfig, Storage};
use wormhole_sync_tokio::transcribe::{Initiator, Receiver};
use wormhole_sync_tokio::{Builder, Error, Handle, Schedule};

const APP: &str = "example.com/app1";

fn config() -> ServerConfig {
    ServerConfig::default().without_rate_limits()
}

async fn memory_server() -> RunningServer {
    RunningServer::start("127.0.0.1:0".parse().unwrap(), config(), Storage::memory(), RendezvousSnapshot::new(vec![]))
        .await
        .unwrap()
}

async fn sqlite_server(db: &Path, addr: &str) -> RunningServer {
    let (storage, saved) = Storage::sqlite(db).unwrap();
    RunningServer::start(addr.parse().unwrap(), config(), storage, saved).await.unwrap()
}

fn initiator(server: &RunningServer, data: &[u8]) -> Builder<Initiator> {
    Initiator::builder(APP, data.to_vec()).rendezvous(&server.url())
}

fn receiver(server: &RunningServer, code: &str, data: &[u8]) -> Builder<Receiver> {
    Receiver::builder(APP, code, data.to_vec()).rendezvous(&server.url())
}

async fn metric(server: &RunningServer, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok()).unwrap_or(0.0)
}

#[test]
fn handles_and_futures_are_send_sync_static() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send_static<F: Future + Send + 'static>(_: F) {}
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let handle: Handle = Initiator::builder(APP, vec![]).rendezvous("http://127.0.0.1:9").build().unwrap().start();
        send_sync(&handle);
        send_static(handle.when_code());
        send_static(handle.when_verifier());
        send_static(handle.when_data());
        send_static(handle.stop());
        send_static(handle.when_finished());
        handle.stop().await;
    });
}

async fn exchange_both_ways() {
    let server = memory_server().await;
    let i = initiator(&server, b"initiator's data").build().unwrap().start();
    let code = i.when_code().await.unwrap();
    assert_eq!(i.when_code().await.unwrap(), code, "awaited again");
    let r = receiver(&server, &code.to_string(), b"receiver's data").build().unwrap().start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!(mine.unwrap(), b"receiver's data");
    assert_eq!(theirs.unwrap(), b"initiator's data");
    assert_eq!(i.when_data().await.unwrap(), b"receiver's data", "awaited after it is known");
    server.stop().await;
}

#[test]
fn works_on_a_current_thread_runtime() {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(exchange_both_ways());
}

#[test]
fn works_on_a_multi_thread_runtime() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(exchange_both_ways());
}

#[tokio::test]
async fn many_waiters_on_one_handle_all_get_the_code_and_the_data() {
    let server = memory_server().await;
    let i = initiator(&server, b"initiator's data").build().unwrap().start();
    // Waiters registered before anything is known, from other tasks, through clones.
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let h = i.clone();
            tokio::spawn(async move { (h.when_code().await.unwrap(), h.when_data().await.unwrap()) })
        })
        .collect();
    let code = i.when_code().await.unwrap();
    let r = receiver(&server, &code.to_string(), b"receiver's data").build().unwrap().start();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), (code.clone(), b"receiver's data".to_vec()));
    }
    assert_eq!(r.when_data().await.unwrap(), b"initiator's data");
}

#[tokio::test]
async fn wrong_code_fails_both_sides_and_burns_the_code() {
    let server = memory_server().await;
    let i = initiator(&server, b"secret").build().unwrap().start();
    let code = i.when_code().await.unwrap();
    // A guess: its words need not come from the lists.
    let guess = format!("{}-wrong-words", code.channel());
    let r = receiver(&server, &guess, b"guess").check_words(false).build().unwrap().start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!((mine, theirs), (Err(Error::WrongCode), Err(Error::WrongCode)));
    let late = receiver(&server, &code.to_string(), b"late").build().unwrap().start().when_data().await.unwrap_err();
    assert!(matches!(late, Error::UnknownChannel | Error::ChannelBurned), "{late:?}");
}

#[tokio::test]
async fn a_third_party_finds_the_code_used() {
    let server = memory_server().await;
    let i = initiator(&server, b"i").confirm_verifier(true).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = receiver(&server, &code, b"r").build().unwrap().start();
    i.when_verifier().await.unwrap();
    // Two sides used the code: a third is told someone else may have used it.
    let third = receiver(&server, &code, b"t").build().unwrap().start().when_data().await;
    assert_eq!(third, Err(Error::Crowded));
    i.accept_verifier().unwrap();
    assert_eq!(i.when_data().await.unwrap(), b"r");
    assert_eq!(r.when_data().await.unwrap(), b"i");
}

#[tokio::test]
async fn the_timeout_errors_every_waiter() {
    let server = memory_server().await;
    let timeout = Duration::from_secs(2);
    let i = initiator(&server, b"i").timeout(timeout).build().unwrap().start();
    let started = Instant::now();
    let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(i.when_data())).collect();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Err(Error::Timeout));
    }
    let took = started.elapsed();
    assert!(took >= timeout && took <= timeout + Duration::from_millis(1_000), "{took:?}");
}

#[tokio::test]
async fn stop_mid_exchange_ends_both_sides_clearly() {
    let server = memory_server().await;
    let i = initiator(&server, b"i").confirm_verifier(true).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = receiver(&server, &code, b"r").build().unwrap().start();
    i.when_verifier().await.unwrap();
    let waiting = tokio::spawn(i.when_data());
    i.stop().await;
    assert_eq!(waiting.await.unwrap(), Err(Error::Cancelled));
    assert_eq!(r.when_data().await, Err(Error::PeerClosed { mood: Mood::Lonely }));
    r.stop().await;
    assert_eq!(metric(&server, "wormhole_channels_open").await, 0.0, "both sides closed the channel");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_exchange() {
    let server = memory_server().await;
    let i = initiator(&server, b"i").build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = receiver(&server, &code, b"r").confirm_verifier(true).build().unwrap().start();
    r.when_verifier().await.unwrap();
    let extra = i.clone();
    drop(i);
    // A clone keeps it running: still waiting for the receiver's data.
    assert!(tokio::time::timeout(Duration::from_millis(300), extra.when_data()).await.is_err());
    drop(extra);
    assert_eq!(r.when_data().await, Err(Error::PeerClosed { mood: Mood::Lonely }));
}

#[tokio::test]
async fn cancel_closes_the_channel_unless_the_state_was_serialized() {
    let server = memory_server().await;
    let i = initiator(&server, b"i").build().unwrap().start();
    i.when_code().await.unwrap();
    let saved = i.serialize();
    let waiting = tokio::spawn(i.when_data());
    i.cancel();
    assert_eq!(waiting.await.unwrap(), Err(Error::Cancelled));
    i.when_finished().await;
    assert_eq!(metric(&server, "wormhole_channels_open").await, 1.0, "left open for the saved copy");

    let restored = Initiator::from_serialized(&saved).unwrap().start();
    restored.when_code().await.unwrap();
    restored.cancel();
    assert_eq!(restored.when_data().await, Err(Error::Cancelled));
    restored.when_finished().await;
    assert_eq!(metric(&server, "wormhole_channels_open").await, 0.0, "not serialized since the restore: closed");
    server.stop().await;
}

#[tokio::test]
async fn a_future_keeps_its_exchange_running_without_any_handle() {
    let server = memory_server().await;
    // The handle is a temporary here: only the futures hold the exchange.
    let code = initiator(&server, b"i").build().unwrap().start().when_code();
    let code = tokio::time::timeout(Duration::from_secs(10), code).await.unwrap().unwrap();
    let i = initiator(&server, b"initiator's data").build().unwrap().start();
    let code2 = i.when_code().await.unwrap().to_string();
    let data = receiver(&server, &code2, b"receiver's data").build().unwrap().start().when_data();
    tokio::time::sleep(Duration::from_millis(200)).await; // Long after the temporary handle is gone.
    assert_eq!(i.when_data().await.unwrap(), b"receiver's data");
    assert_eq!(data.await.unwrap(), b"initiator's data");
    assert!(code.channel().get() > 0);
}

#[test]
fn waiters_get_an_error_when_the_runtime_shuts_down() {
    let first = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A closed port: nothing would ever answer, so only the shutdown can end it.
    let (handle, data) = first.block_on(async {
        let handle = Initiator::builder(APP, vec![]).rendezvous("http://127.0.0.1:9").build().unwrap().start();
        let data = handle.when_data();
        (handle, data)
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = second.block_on(async { tokio::time::timeout(Duration::from_secs(10), data).await });
    let result = result.expect("the waiter must not hang");
    assert!(matches!(&result, Err(Error::DriverStopped { detail }) if detail.contains("runtime")), "{result:?}");
    assert!(!handle.serialize().is_empty(), "the handle stays usable");
}

#[tokio::test]
async fn custom_schedule_is_followed_at_the_server() {
    let server = memory_server().await;
    let fetches = r#"wormhole_requests_total{route="fetch",code="ok"}"#;
    // Without long-polls, the schedule sets the pace: every 200 ms for 3 s.
    let i = initiator(&server, b"i")
        .schedule(Schedule::from_secs(&[(0.0, 0.2)]).unwrap())
        .long_poll(Duration::ZERO)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .start();
    assert_eq!(i.when_data().await, Err(Error::Timeout));
    let count = metric(&server, fetches).await;
    assert!((12.0..=17.0).contains(&count), "{count} fetches");
    // With long-polls (the default), the server holds one fetch for the whole wait.
    let i = initiator(&server, b"i")
        .schedule(Schedule::from_secs(&[(0.0, 0.2)]).unwrap())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .start();
    assert_eq!(i.when_data().await, Err(Error::Timeout));
    let held = metric(&server, fetches).await - count;
    assert!(held <= 3.0, "{held} fetches");
}

#[tokio::test]
async fn data_at_the_limit_passes_and_more_is_refused() {
    assert_eq!(
        Initiator::new(APP, vec![0; MAX_DATA_LEN + 1]).unwrap_err(),
        Error::DataTooLarge { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN }
    );
    assert!(matches!(Receiver::new(APP, "no-number", vec![]), Err(Error::BadCode(_))));
    let server = memory_server().await;
    let big: Vec<u8> = (0..MAX_DATA_LEN).map(|i| (i * 13) as u8).collect();
    let i = initiator(&server, &big).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = receiver(&server, &code, &big).build().unwrap().start();
    assert_eq!(r.when_data().await.unwrap(), big);
    assert_eq!(i.when_data().await.unwrap(), big);
}

/// Runs one stage of a client's life on a runtime of its own, then drops
/// the runtime with the driver task in it: a process that dies without
/// closing anything. Returns what the stage returned.
fn in_a_process<T>(stage: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(stage)
}

#[test]
fn serialize_and_resume_at_every_stage() {
    let server_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = server_runtime.block_on(memory_server());
    let url = server.url();
    let app = |data: &[u8]| Initiator::builder(APP, data.to_vec()).rendezvous(&url);

    // Not started, then code known.
    let unstarted = app(b"initiator's data").confirm_verifier(true).build().unwrap().serialize();
    let (code, saved) = in_a_process(async {
        let i = Initiator::from_serialized(&unstarted).unwrap().start();
        let code = i.when_code().await.unwrap();
        let saved = i.serialize();
        std::mem::forget(i); // the process dies: no close
        (code, saved)
    });
    // The receiver runs (and is itself restored once) meanwhile.
    let receiver_saved = in_a_process(async {
        let r = Receiver::builder(APP, &code, b"receiver's data".to_vec()).rendezvous(&url).build().unwrap().start();
        r.when_code().await.unwrap();
        let saved = r.serialize();
        std::mem::forget(r);
        saved
    });
    let receiving = server_runtime.spawn(async move {
        let r = Receiver::from_serialized(&receiver_saved).unwrap().start();
        r.when_data().await
    });
    // Verifier known, not yet confirmed.
    let (verifier, saved) = in_a_process(async {
        let i = Initiator::from_serialized(&saved).unwrap().start();
        assert_eq!(i.when_code().await.unwrap(), code);
        let verifier = i.when_verifier().await.unwrap();
        let saved = i.serialize();
        std::mem::forget(i);
        (verifier, saved)
    });
    // Confirmed, data perhaps not yet sent.
    let saved = in_a_process(async {
        let i = Initiator::from_serialized(&saved).unwrap().start();
        assert_eq!(i.when_verifier().await.unwrap(), verifier);
        i.accept_verifier().unwrap();
        let saved = i.serialize();
        std::mem::forget(i);
        saved
    });
    // Completed.
    let saved = in_a_process(async {
        let i = Initiator::from_serialized(&saved).unwrap().start();
        assert_eq!(i.when_data().await.unwrap(), b"receiver's data");
        let saved = i.serialize();
        i.stop().await;
        saved
    });
    assert_eq!(server_runtime.block_on(receiving).unwrap().unwrap(), b"initiator's data");
    // A restored finished exchange still knows its result.
    in_a_process(async {
        let i = Initiator::from_serialized(&saved).unwrap().start();
        assert_eq!(i.when_data().await.unwrap(), b"receiver's data");
    });
    assert!(Receiver::from_serialized(&saved).is_err(), "roles are checked");
    server_runtime.block_on(server.stop());
}

#[tokio::test]
async fn an_exchange_survives_a_server_restart_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = sqlite_server(&db, "127.0.0.1:0").await;
    let addr = server.addr().to_string();
    let i = initiator(&server, b"initiator's data").confirm_verifier(true).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = receiver(&server, &code, b"receiver's data").build().unwrap().start();
    i.when_verifier().await.unwrap();
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(700)).await; // requests fail meanwhile and are retried
    let restarted = sqlite_server(&db, &addr).await;
    i.accept_verifier().unwrap();
    assert_eq!(i.when_data().await.unwrap(), b"receiver's data");
    assert_eq!(r.when_data().await.unwrap(), b"initiator's data");
    restarted.stop().await;
}

#[test]
fn a_thousand_concurrent_exchanges_complete_with_every_byte_correct() {
    const EXCHANGES: usize = 1_000;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let threads_before = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    runtime.block_on(async {
        let server = memory_server().await;
        let data =
            |side: u8, n: usize| -> Vec<u8> { (0..64 + n % 200).map(|k| (k as u8) ^ side ^ (n as u8)).collect() };
        let initiators: Vec<Handle> =
            (0..EXCHANGES).map(|n| initiator(&server, &data(1, n)).build().unwrap().start()).collect();
        let mut receivers = Vec::with_capacity(EXCHANGES);
        for (n, i) in initiators.iter().enumerate() {
            let code = i.when_code().await.unwrap().to_string();
            receivers.push(receiver(&server, &code, &data(2, n)).build().unwrap().start());
        }
        for (n, (i, r)) in initiators.iter().zip(&receivers).enumerate() {
            assert_eq!(i.when_data().await.unwrap(), data(2, n), "initiator {n}");
            assert_eq!(r.when_data().await.unwrap(), data(1, n), "receiver {n}");
        }
        let threads_now = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
        assert!(threads_now < threads_before + 64, "{threads_before} threads before, {threads_now} during");
        server.stop().await;
    });
}

/// While the exchange retries, any task reads why from its handle; the
/// connect timeout ends a run that never reached the server.
#[tokio::test]
async fn a_handle_says_why_while_the_exchange_retries_and_the_connect_timeout_ends_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // freed at once
    let i = Initiator::builder(APP, b"i".to_vec())
        .rendezvous(&format!("http://{closed}"))
        .timeout(Duration::from_secs(3600))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .start();
    let code = i.when_code();
    let deadline = Instant::now() + Duration::from_secs(10);
    let trouble = loop {
        if let Some(trouble) = i.server_trouble() {
            break trouble;
        }
        assert!(Instant::now() < deadline, "no trouble reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!trouble.server_reached);
    let started = Instant::now();
    assert!(matches!(code.await, Err(Error::ServerUnreachable { .. })));
    assert!(started.elapsed() < Duration::from_secs(30), "the connect timeout, not the hour");
    assert_eq!(i.server_trouble(), None, "none once there is an outcome");
}
