//! The magic-wormhole flavour on tokio against this project's mailbox
//! server on 127.0.0.1 (its `/v1` WebSocket front end).

use std::path::Path;
use std::time::Duration;

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{RunningServer, ServerConfig, Storage};
use wormhole_sync_tokio::magic_wormhole::{text, Initiator, Receiver};
use wormhole_sync_tokio::{Builder, Error, Schedule};

const APP: &str = "example.com/magic";

async fn memory_server() -> RunningServer {
    let config = ServerConfig::default().without_rate_limits();
    RunningServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), RendezvousSnapshot::new(vec![]))
        .await
        .unwrap()
}

async fn sqlite_server(db: &Path, addr: &str) -> RunningServer {
    let (storage, saved) = Storage::sqlite(db).unwrap();
    let config = ServerConfig::default().without_rate_limits();
    RunningServer::start(addr.parse().unwrap(), config, storage, saved).await.unwrap()
}

async fn metric(server: &RunningServer, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

fn ws_url(server: &RunningServer) -> String {
    format!("ws://{}/v1", server.addr())
}

fn fast<C: wormhole_sync_tokio::Client>(builder: Builder<C>) -> Builder<C> {
    builder.schedule(Schedule::every(Duration::from_millis(100)).unwrap()).timeout(Duration::from_secs(30))
}

#[tokio::test]
async fn data_goes_both_ways_and_the_verifiers_agree() {
    let server = memory_server().await;
    let i =
        Initiator::builder(APP, b"from the initiator".to_vec()).rendezvous(&ws_url(&server)).build().unwrap().start();
    let code = i.when_code().await.unwrap();
    assert_eq!(code.words().len(), 2);
    let r = Receiver::builder(APP, &code, b"from the receiver".to_vec())
        .rendezvous(&ws_url(&server))
        .build()
        .unwrap()
        .start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!(mine.unwrap(), b"from the receiver");
    assert_eq!(theirs.unwrap(), b"from the initiator");
    assert_eq!(i.when_verifier().await.unwrap(), r.when_verifier().await.unwrap());
    // Both closed: the mailbox is gone from the server.
    tokio::time::timeout(Duration::from_secs(5), async {
        while metric(&server, "wormhole_channels_open").await > 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the mailbox is deleted once both sides closed");
}

#[tokio::test]
async fn text_follows_the_wormhole_commands_convention() {
    let server = memory_server().await;
    let i = Initiator::text_builder("meet at 6").rendezvous(&ws_url(&server)).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    let r = Receiver::text_builder(&code).rendezvous(&ws_url(&server)).build().unwrap().start();
    let offer = text::read_offer(&r.when_data().await.unwrap()).unwrap();
    assert_eq!(offer, text::Offer::Text("meet at 6".into()));
    assert!(text::is_ack(&i.when_data().await.unwrap()));
}

#[tokio::test]
async fn a_wrong_code_fails_loudly_on_both_sides() {
    let server = memory_server().await;
    let i = Initiator::builder(APP, b"secret".to_vec()).rendezvous(&ws_url(&server)).build().unwrap().start();
    let code = i.when_code().await.unwrap();
    let wrong = format!("{}-{}-wrong", code.channel(), code.words()[0]);
    // A guess: its words need not come from the lists.
    let r = Receiver::builder(APP, &wrong, b"guess".to_vec())
        .rendezvous(&ws_url(&server))
        .check_words(false)
        .build()
        .unwrap()
        .start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    for outcome in [&mine, &theirs] {
        assert!(matches!(outcome, Err(Error::WrongCode | Error::ChannelBurned)), "{outcome:?}");
    }
    assert!([&mine, &theirs].iter().any(|o| matches!(o, Err(Error::WrongCode))));
}

#[tokio::test]
async fn an_exchange_survives_a_server_restart_and_a_client_restored_from_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailbox.db");
    let server = sqlite_server(&db, "127.0.0.1:0").await;
    let addr = server.addr().to_string();
    let url = ws_url(&server);
    let i = fast(Initiator::builder(APP, b"kept across restarts".to_vec()).rendezvous(&url)).build().unwrap().start();
    let code = i.when_code().await.unwrap().to_string();
    // The initiator is saved and stopped; the server restarts.
    let saved = i.serialize();
    i.stop().await;
    server.stop().await;
    let server = sqlite_server(&db, &addr).await;
    let i = Initiator::from_serialized(&saved).unwrap().start();
    let r = fast(Receiver::builder(APP, &code, b"the reply".to_vec()).rendezvous(&url)).build().unwrap().start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!(mine.unwrap(), b"the reply");
    assert_eq!(theirs.unwrap(), b"kept across restarts");
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_is_not_there_times_out_as_unreachable() {
    let i = fast(Initiator::builder(APP, vec![]).rendezvous("ws://127.0.0.1:9/v1"))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .start();
    let outcome = i.when_data().await;
    assert!(matches!(outcome, Err(Error::ServerUnreachable { .. })), "{outcome:?}");
}

#[tokio::test]
async fn a_wrong_path_fails_at_once_instead_of_retrying() {
    let server = memory_server().await;
    let url = format!("ws://{}/not-a-mailbox", server.addr());
    let started = std::time::Instant::now();
    let i = fast(Initiator::builder(APP, vec![]).rendezvous(&url)).build().unwrap().start();
    let outcome = i.when_data().await;
    assert!(matches!(outcome, Err(Error::ServerUnreachable { .. })), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
