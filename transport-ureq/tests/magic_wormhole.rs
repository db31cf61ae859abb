//! The blocking magic-wormhole flavour against this project's mailbox
//! server on 127.0.0.1 (its `/v1` WebSocket front end).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage};
use wormhole_sync_ureq::magic_wormhole::{text, Initiator, Receiver};
use wormhole_sync_ureq::{Builder, Client, Error, Schedule};

const APP: &str = "example.com/magic";

fn server(storage: Storage, saved: RendezvousSnapshot, addr: &str) -> BackgroundServer {
    let config = ServerConfig::default().without_rate_limits();
    BackgroundServer::start(addr.parse().unwrap(), config, storage, saved).unwrap()
}

fn memory_server() -> BackgroundServer {
    server(Storage::memory(), RendezvousSnapshot::new(Vec::new()), "127.0.0.1:0")
}

fn sqlite_server(db: &Path, addr: &str) -> BackgroundServer {
    let (storage, saved) = Storage::sqlite(db).unwrap();
    server(storage, saved, addr)
}

fn ws_url(server: &BackgroundServer) -> String {
    format!("ws://{}/v1", server.addr())
}

fn fast<C: Client>(builder: Builder<C>) -> Builder<C> {
    builder.schedule(Schedule::every(Duration::from_millis(100)).unwrap()).timeout(Duration::from_secs(30))
}

#[test]
fn data_goes_both_ways_and_the_verifiers_agree() {
    let server = memory_server();
    let mut i =
        fast(Initiator::builder(APP, b"from the initiator".to_vec()).rendezvous(&ws_url(&server))).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let url = ws_url(&server);
    let receiver = thread::spawn(move || {
        let mut r =
            fast(Receiver::builder(APP, &code, b"from the receiver".to_vec()).rendezvous(&url)).build().unwrap();
        (r.get_data(), r.get_verifier())
    });
    assert_eq!(i.get_data().unwrap(), b"from the receiver");
    let (theirs, verifier) = receiver.join().unwrap();
    assert_eq!(theirs.unwrap(), b"from the initiator");
    assert_eq!(i.get_verifier().unwrap(), verifier.unwrap());
}

#[test]
fn text_follows_the_wormhole_commands_convention_and_a_wrong_code_fails_on_both_sides() {
    let server = memory_server();
    let mut i = fast(Initiator::text_builder("meet at 6").rendezvous(&ws_url(&server))).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let url = ws_url(&server);
    let receiver =
        thread::spawn(move || fast(Receiver::text_builder(&code).rendezvous(&url)).build().unwrap().get_data());
    assert!(text::is_ack(&i.get_data().unwrap()));
    let offer = text::read_offer(&receiver.join().unwrap().unwrap()).unwrap();
    assert_eq!(offer, text::Offer::Text("meet at 6".into()));

    let mut i = fast(Initiator::builder(APP, b"secret".to_vec()).rendezvous(&ws_url(&server))).build().unwrap();
    let code = i.get_code().unwrap();
    let wrong = format!("{}-{}-wrong", code.channel(), code.words()[0]);
    let url = ws_url(&server);
    let receiver = thread::spawn(move || {
        // A guess: its words need not come from the lists.
        fast(Receiver::builder(APP, &wrong, vec![]).rendezvous(&url).check_words(false)).build().unwrap().get_data()
    });
    let (mine, theirs) = (i.get_data(), receiver.join().unwrap());
    for outcome in [&mine, &theirs] {
        assert!(matches!(outcome, Err(Error::WrongCode | Error::ChannelBurned)), "{outcome:?}");
    }
}

#[test]
fn an_exchange_survives_a_server_restart_and_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailbox.db");
    let first = sqlite_server(&db, "127.0.0.1:0");
    let addr = first.addr().to_string();
    let url = ws_url(&first);
    let mut i = fast(Initiator::builder(APP, b"kept".to_vec()).rendezvous(&url)).build().unwrap();
    let code = i.get_code().unwrap().to_string();
    let saved = i.serialize();
    drop(i);
    first.stop();
    let second = sqlite_server(&db, &addr);
    let receiver = {
        let url = url.clone();
        thread::spawn(move || {
            fast(Receiver::builder(APP, &code, b"reply".to_vec()).rendezvous(&url)).build().unwrap().get_data()
        })
    };
    let mut i = Initiator::from_serialized(&saved).unwrap();
    assert_eq!(i.get_data().unwrap(), b"reply");
    assert_eq!(receiver.join().unwrap().unwrap(), b"kept");
    second.stop();
}

#[test]
fn a_cancel_from_another_thread_ends_the_wait_at_once() {
    let server = memory_server();
    let mut i = fast(Initiator::builder(APP, vec![]).rendezvous(&ws_url(&server))).build().unwrap();
    i.get_code().unwrap();
    let canceller = i.canceller();
    let started = Instant::now();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        canceller.cancel();
    });
    assert_eq!(i.get_data(), Err(Error::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_server_is_unreachable_and_a_wrong_path_fails_at_once() {
    let mut i = fast(Initiator::builder(APP, vec![]).rendezvous("ws://127.0.0.1:9/v1"))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(matches!(i.get_code(), Err(Error::ServerUnreachable { .. })));
    let server = memory_server();
    let started = Instant::now();
    let url = format!("ws://{}/nothing-here", server.addr());
    let mut i = fast(Initiator::builder(APP, vec![]).rendezvous(&url)).build().unwrap();
    assert!(matches!(i.get_data(), Err(Error::ServerUnreachable { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
}
