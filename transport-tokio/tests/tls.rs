//! HTTPS with the async client: an exchange against a certificate from a
//! test CA the client trusts; a client that does not trust it fails at once
//! with the TLS error instead of retrying until its timeout.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{RunningServer, ServerConfig, Storage, TlsFiles};
use wormhole_sync_tokio::transcribe::{Initiator, Receiver};
use wormhole_sync_tokio::{reqwest, Error};

const APP: &str = "example.com/tls";

/// A CA (as PEM) and a server certificate for 127.0.0.1 it signed, written as PEM files.
fn certificates(dir: &std::path::Path) -> (String, TlsFiles) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, leaf.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (ca.pem(), files)
}

async fn https_server(files: TlsFiles) -> RunningServer {
    let config = ServerConfig { tls: Some(files), ..ServerConfig::default().without_rate_limits() };
    let saved = RendezvousSnapshot::new(Vec::new());
    RunningServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), saved).await.unwrap()
}

#[tokio::test]
async fn an_exchange_over_https_with_a_trusted_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificates(dir.path());
    let server = https_server(files).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let i = Initiator::builder(APP, b"over TLS".to_vec())
        .rendezvous(&server.url())
        .http_client(client.clone())
        .build()
        .unwrap()
        .start();
    let code = i.when_code().await.unwrap().to_string();
    let r = Receiver::builder(APP, &code, b"also over TLS".to_vec())
        .rendezvous(&server.url())
        .http_client(client)
        .build()
        .unwrap()
        .start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!(mine.unwrap(), b"also over TLS");
    assert_eq!(theirs.unwrap(), b"over TLS");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_at_once_with_the_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, files) = certificates(dir.path());
    let server = https_server(files).await;
    let started = Instant::now();
    let i = Initiator::builder(APP, b"x".to_vec())
        .rendezvous(&server.url())
        .timeout(Duration::from_secs(3 * 24 * 3600))
        .build()
        .unwrap()
        .start();
    let code = tokio::time::timeout(Duration::from_secs(20), i.when_code()).await.expect("failed at once, not later");
    let Err(error @ Error::ServerUnreachable { .. }) = code else { panic!("reached an untrusted server: {code:?}") };
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut chain = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain += &format!("{cause}: ");
        source = cause.source();
    }
    assert!(chain.contains("certificate") || chain.contains("UnknownIssuer"), "{chain}");
}

/// A rustls configuration trusting only the test CA.
fn tls_config(ca_pem: &str) -> wormhole_sync_tokio::magic_wormhole::TlsConfig {
    use wormhole_sync_tokio::rustls::pki_types::pem::PemObject;
    use wormhole_sync_tokio::rustls::pki_types::CertificateDer;
    let mut roots = wormhole_sync_tokio::rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    std::sync::Arc::new(
        wormhole_sync_tokio::rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
    )
}

#[tokio::test]
async fn a_magic_wormhole_exchange_over_wss_with_a_trusted_test_ca_and_a_refusal_without_it() {
    use wormhole_sync_tokio::magic_wormhole;
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificates(dir.path());
    let server = https_server(files).await;
    let url = format!("wss://{}/v1", server.addr());
    let i = magic_wormhole::Initiator::builder(APP, b"over wss".to_vec())
        .rendezvous(&url)
        .http_client(tls_config(&ca))
        .build()
        .unwrap()
        .start();
    let code = i.when_code().await.unwrap().to_string();
    let r = magic_wormhole::Receiver::builder(APP, &code, b"also over wss".to_vec())
        .rendezvous(&url)
        .http_client(tls_config(&ca))
        .build()
        .unwrap()
        .start();
    let (mine, theirs) = tokio::join!(i.when_data(), r.when_data());
    assert_eq!(mine.unwrap(), b"also over wss");
    assert_eq!(theirs.unwrap(), b"over wss");
    // Without the test CA (webpki roots only), it fails at once, not at its timeout.
    let started = Instant::now();
    let untrusting = magic_wormhole::Initiator::builder(APP, vec![])
        .rendezvous(&url)
        .timeout(Duration::from_secs(3 * 24 * 3600))
        .build()
        .unwrap()
        .start();
    let code = tokio::time::timeout(Duration::from_secs(20), untrusting.when_code()).await.expect("failed at once");
    assert!(matches!(code, Err(Error::ServerUnreachable { .. })), "{code:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
