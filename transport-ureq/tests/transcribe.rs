//! The blocking API against the real server on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_core::MAX_DATA_LEN;
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};
use wormhole_sync_ureq::transcribe::{Initiator, Receiver};
use wormhole_sync_ureq::{ApiMisuse, Builder, Error, ErrorCode, Schedule};

const APP: &str = "example.com/app1";

/// The real server on 127.0.0.1, on its own runtime.
struct Server {
    inner: BackgroundServer,
    addr: SocketAddr,
}

impl Server {
    fn start(config: ServerConfig, storage: Storage, saved: RendezvousSnapshot, addr: &str) -> Server {
        let inner = BackgroundServer::start(addr.parse().unwrap(), config, storage, saved).unwrap();
        let addr = inner.addr();
        Server { inner, addr }
    }

    fn memory() -> Server {
        Server::start(config(), Storage::memory(), RendezvousSnapshot::new(Vec::new()), "127.0.0.1:0")
    }

    fn sqlite(db: &Path, addr: &str) -> Server {
        let (storage, saved) = Storage::sqlite(db).unwrap();
        Server::start(config(), storage, saved, addr)
    }

    fn url(&self) -> String {
        self.inner.url()
    }

    /// A metric's value, as the server counts it (zero if not counted yet).
    fn metric(&self, line_prefix: &str) -> f64 {
        self.metric_line(line_prefix).unwrap_or(0.0)
    }

    /// A metric's value, if the server shows it.
    fn metric_line(&self, line_prefix: &str) -> Option<f64> {
        let text = ureq::get(format!("{}/metrics", self.url())).call().unwrap().body_mut().read_to_string().unwrap();
        text.lines().find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
    }

    fn stop(self) {
        self.inner.stop();
    }
}

fn config() -> ServerConfig {
    ServerConfig::default().without_rate_limits()
}

fn initiator(server: &Server, data: &[u8]) -> Builder<Initiator> {
    Initiator::builder(APP, data.to_vec()).rendezvous(&server.url())
}

fn receiver(server: &Server, code: &str, data: &[u8]) -> Builder<Receiver> {
    Receiver::builder(APP, code, data.to_vec()).rendezvous(&server.url())
}

#[test]
fn initiator_and_receiver_are_send() {
    fn send<T: Send>() {}
    send::<Initiator>();
    send::<Receiver>();
}

#[test]
fn data_goes_both_ways() {
    let server = Server::memory();
    let mut i = initiator(&server, b"initiator's data").build().unwrap();
    let code = i.get_code().unwrap();
    assert_eq!(i.get_code().unwrap(), code, "get_code can be called again");
    let mut r = receiver(&server, &code.to_string(), b"receiver's data").build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    assert_eq!(i.get_data().unwrap(), b"receiver's data");
    assert_eq!(receiving.join().unwrap().unwrap(), b"initiator's data");
    assert_eq!(i.get_data().unwrap(), b"receiver's data", "get_data can be called again");
}

#[test]
fn wrong_code_fails_both_sides_and_burns_the_code() {
    let server = Server::memory();
    let mut i = initiator(&server, b"secret").build().unwrap();
    let code = i.get_code().unwrap();
    let wrong = format!("{}-wrong-words", code.channel());
    // A guess: its words need not come from the lists.
    let mut r = receiver(&server, &wrong, b"guess").check_words(false).build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    assert_eq!(i.get_data(), Err(Error::WrongCode));
    assert_eq!(receiving.join().unwrap(), Err(Error::WrongCode));
    let mut late = receiver(&server, &code.to_string(), b"late").build().unwrap();
    let late = late.get_data().unwrap_err();
    assert!(matches!(late, Error::UnknownChannel | Error::ChannelBurned), "{late:?}");
}

#[test]
fn a_third_party_finds_the_code_used() {
    let server = Server::memory();
    let mut i = initiator(&server, b"i").confirm_verifier(true).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = receiver(&server, &code, b"r").build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    i.get_verifier().unwrap(); // the receiver has joined
    let mut third = receiver(&server, &code, b"t").build().unwrap();
    // Two sides used the code: a third is told someone else may have used it.
    assert_eq!(third.get_data(), Err(Error::Crowded));
    i.accept_verifier().unwrap();
    assert_eq!(i.get_data().unwrap(), b"r");
    assert_eq!(receiving.join().unwrap().unwrap(), b"i");
}

#[test]
fn the_timeout_is_honoured_within_one_interval() {
    let server = Server::memory();
    let timeout = Duration::from_secs(2);
    let interval = Duration::from_millis(500);
    let mut i = initiator(&server, b"i").timeout(timeout).build().unwrap();
    let started = Instant::now();
    i.get_code().unwrap();
    assert_eq!(i.get_data(), Err(Error::Timeout));
    let took = started.elapsed();
    assert!(took >= timeout && took <= timeout + interval + Duration::from_millis(500), "{took:?}");
}

#[test]
fn an_unreachable_server_is_reported() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // freed at once
    let mut i = Initiator::builder(APP, b"i".to_vec())
        .rendezvous(&format!("http://{closed}"))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let Err(error @ Error::ServerUnreachable { .. }) = i.get_code() else { panic!("reached a closed port") };
    // The transport's own error is kept as the cause, for people and for programs.
    let cause = std::error::Error::source(&error).expect("a cause");
    assert!(cause.to_string().to_lowercase().contains("connect"), "{cause}");
}

/// While a blocking call retries, another thread reads why through the
/// observer; the connect timeout ends a run that never reached the server.
#[test]
fn an_observer_says_why_while_a_call_retries_and_the_connect_timeout_ends_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // freed at once
    let mut i = Initiator::builder(APP, b"i".to_vec())
        .rendezvous(&format!("http://{closed}"))
        .timeout(Duration::from_secs(3600))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let observer = i.observer();
    assert_eq!(observer.server_trouble(), None, "nothing failed yet");
    let watching = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(trouble) = observer.server_trouble() {
                return Some(trouble);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    });
    let started = Instant::now();
    assert!(matches!(i.get_code(), Err(Error::ServerUnreachable { .. })));
    assert!(started.elapsed() < Duration::from_secs(30), "the connect timeout, not the hour");
    let trouble = watching.join().unwrap().expect("trouble seen while retrying");
    assert!(!trouble.server_reached);
    assert!(trouble.cause.to_string().to_lowercase().contains("connect"), "{}", trouble.cause);
    assert!(!i.server_reached());
}

#[test]
fn bad_codes_and_oversized_data_are_refused_at_once() {
    assert!(matches!(Receiver::new(APP, "guitarist-revenge", vec![]), Err(Error::BadCode(_))));
    assert!(matches!(Receiver::new(APP, "", vec![]), Err(Error::BadCode(_))));
    let over = Initiator::new(APP, vec![0; MAX_DATA_LEN + 1]).unwrap_err();
    assert_eq!(over, Error::DataTooLarge { len: MAX_DATA_LEN + 1, max: MAX_DATA_LEN });
}

#[test]
fn data_at_the_size_limit_passes() {
    let server = Server::memory();
    let big: Vec<u8> = (0..MAX_DATA_LEN).map(|i| (i * 7) as u8).collect();
    let mut i = initiator(&server, &big).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = receiver(&server, &code, &big[..100]).build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    assert_eq!(i.get_data().unwrap(), &big[..100]);
    assert_eq!(receiving.join().unwrap().unwrap(), big);
}

#[test]
fn a_server_with_a_smaller_message_limit_refuses_clearly() {
    let mut small = config();
    small.rendezvous.max_message_bytes = 1_000;
    let server = Server::start(small, Storage::memory(), RendezvousSnapshot::new(Vec::new()), "127.0.0.1:0");
    let mut i = initiator(&server, &[1u8; 2_000]).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = receiver(&server, &code, b"small").build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    let refused = i.get_data().unwrap_err();
    assert!(
        matches!(&refused, Error::ServerRejected { code, .. } if *code == ErrorCode::MessageTooLarge),
        "{refused:?}"
    );
    assert!(receiving.join().unwrap().is_err());
}

#[test]
fn idle_polling_follows_a_custom_schedule() {
    let server = Server::memory();
    let fetches = r#"wormhole_requests_total{route="fetch",code="ok"}"#;
    // Without long-polls, every 200 ms for 3 s: about 15 fetches.
    let mut i = initiator(&server, b"i")
        .schedule(Schedule::from_secs(&[(0.0, 0.2)]).unwrap())
        .long_poll(Duration::ZERO)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(i.get_data(), Err(Error::Timeout));
    let first = server.metric(fetches);
    assert!((12.0..=17.0).contains(&first), "{first} fetches");
    // Every 100 ms for 1 s, then every 1 s until 3 s: about 10 + 2.
    let mut i = initiator(&server, b"i")
        .schedule(Schedule::from_secs(&[(0.0, 0.1), (1.0, 1.0)]).unwrap())
        .long_poll(Duration::ZERO)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(i.get_data(), Err(Error::Timeout));
    let second = server.metric(fetches) - first;
    assert!((9.0..=15.0).contains(&second), "{second} fetches");
    // With long-polls (the default), the server holds one fetch for the whole wait.
    let mut i = initiator(&server, b"i")
        .schedule(Schedule::from_secs(&[(0.0, 0.1)]).unwrap())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(i.get_data(), Err(Error::Timeout));
    let held = server.metric(fetches) - first - second;
    assert!(held <= 3.0, "{held} fetches");
}

#[test]
fn serialize_drop_restore_at_every_stage() {
    let server = Server::memory();
    let url = server.url();
    // Stage 0: not started yet.
    let i = initiator(&server, b"initiator's data").confirm_verifier(true).build().unwrap();
    let mut i = Initiator::from_serialized(&i.serialize()).unwrap();
    // Stage 1: code known.
    let code = i.get_code().unwrap();
    let mut i = Initiator::from_serialized(&i.serialize()).unwrap();
    assert_eq!(i.get_code().unwrap(), code);
    let r = Receiver::builder(APP, &code, b"receiver's data".to_vec()).rendezvous(&url).build().unwrap();
    let r = Receiver::from_serialized(&r.serialize()).unwrap();
    let receiving = thread::spawn(move || {
        let mut r = r;
        let verifier = r.get_verifier().unwrap();
        // Stage 2 (receiver): keys agreed; JSON is printable.
        let saved = r.serialize();
        assert!(saved.iter().all(|b| b.is_ascii_graphic() || *b == b' '));
        drop(r);
        let mut r = Receiver::from_serialized(&saved).unwrap();
        assert_eq!(r.get_verifier().unwrap(), verifier);
        r.get_data()
    });
    // Stage 2 (initiator): verifier shown, not yet confirmed.
    let verifier = i.get_verifier().unwrap();
    assert_eq!(i.get_data(), Err(Error::ApiMisuse(ApiMisuse::VerifierUnconfirmed)));
    let mut i = Initiator::from_serialized(&i.serialize()).unwrap();
    assert_eq!(i.get_verifier().unwrap(), verifier);
    i.accept_verifier().unwrap();
    // Stage 3: confirmed, data not yet exchanged.
    let mut i = Initiator::from_serialized(&i.serialize()).unwrap();
    assert_eq!(i.get_data().unwrap(), b"receiver's data");
    assert_eq!(receiving.join().unwrap().unwrap(), b"initiator's data");
    // Stage 4: done; a restored object still knows the result.
    let mut i = Initiator::from_serialized(&i.serialize()).unwrap();
    assert_eq!(i.get_data().unwrap(), b"receiver's data");
    assert!(Receiver::from_serialized(&i.serialize()).is_err(), "roles are checked");
    assert!(Initiator::from_serialized(b"{}").is_err());
}

#[test]
fn an_exchange_survives_a_server_restart_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rendezvous.sqlite3");
    let server = Server::sqlite(&db, "127.0.0.1:0");
    let addr = server.addr.to_string();
    let mut i = initiator(&server, b"initiator's data").confirm_verifier(true).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = receiver(&server, &code, b"receiver's data").build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    i.get_verifier().unwrap();
    server.stop();
    thread::sleep(Duration::from_millis(700)); // the receiver's requests fail meanwhile
    let restarted = Server::sqlite(&db, &addr);
    i.accept_verifier().unwrap();
    assert_eq!(i.get_data().unwrap(), b"receiver's data");
    assert_eq!(receiving.join().unwrap().unwrap(), b"initiator's data");
    drop(restarted);
}

#[test]
fn declining_the_verifier_fails_both_sides() {
    let server = Server::memory();
    let mut i = initiator(&server, b"i").confirm_verifier(true).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = receiver(&server, &code, b"r").build().unwrap();
    let receiving = thread::spawn(move || r.get_data());
    i.get_verifier().unwrap();
    i.reject_verifier().unwrap();
    assert_eq!(i.get_data(), Err(Error::Declined));
    assert_eq!(receiving.join().unwrap(), Err(Error::PeerDeclined));
}

#[test]
fn an_agent_of_the_applications_own_still_gets_protocol_errors() {
    let server = Server::memory();
    // ureq's default turns 4xx into transport errors; the exchange must still see the answer.
    let agent: wormhole_sync_ureq::ureq::Agent = wormhole_sync_ureq::ureq::Agent::config_builder().build().into();
    let started = Instant::now();
    let result = receiver(&server, "987654-guitarist-revenge", b"r")
        .http_client(agent)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get_data();
    assert_eq!(result, Err(Error::UnknownChannel));
    assert!(started.elapsed() < Duration::from_secs(5), "answered, not retried until the timeout");
    server.stop();
}

#[test]
fn dropping_an_unfinished_exchange_closes_its_channel_for_the_peer() {
    let server = Server::memory();
    for explicit in [false, true] {
        let mut i = initiator(&server, b"i").confirm_verifier(true).build().unwrap();
        let code = i.get_code().unwrap().to_string();
        let mut r = receiver(&server, &code, b"r").timeout(Duration::from_secs(60)).build().unwrap();
        let receiving = thread::spawn(move || (r.get_data(), Instant::now()));
        i.get_verifier().unwrap(); // Both sides are in the channel.
        let closed_at = Instant::now();
        if explicit {
            i.close();
        } else {
            drop(i);
        }
        let (result, failed_at) = receiving.join().unwrap();
        assert_eq!(result, Err(Error::PeerClosed { mood: wormhole_sync_ureq::Mood::Lonely }), "close(): {explicit}");
        // The receiver's long-poll is woken by the close, not by its 60 s timeout.
        let took = failed_at - closed_at;
        assert!(took < Duration::from_secs(3), "the peer learned after {took:?} (close(): {explicit})");
    }
    server.stop();
}

#[test]
fn a_canceller_stops_a_blocked_call_from_another_thread() {
    let server = Server::memory();
    let mut i = initiator(&server, b"i").timeout(Duration::from_secs(120)).build().unwrap();
    i.get_code().unwrap();
    let canceller = i.canceller();
    let cancelled_at = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500)); // get_data is blocked in a held long-poll by now.
        canceller.cancel();
        Instant::now()
    });
    let result = i.get_data();
    let took = cancelled_at.join().unwrap().elapsed();
    assert_eq!(result, Err(Error::Cancelled));
    assert!(took < Duration::from_secs(2), "get_data returned {took:?} after the cancel");
    assert_eq!(i.get_data(), Err(Error::Cancelled), "the outcome stays");
    // The channel was closed on the way out: its id is free again (and the metric exists).
    assert!(server.metric_line("wormhole_channels_open ").is_some());
    assert_eq!(server.metric("wormhole_channels_open "), 0.0);
    server.stop();
}
