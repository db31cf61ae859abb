//! HTTPS: an exchange against the server serving a certificate from a test
//! CA that the client is told to trust; a client that does not trust it
//! fails at once with the TLS error, instead of retrying until its timeout.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_server::{BackgroundServer, ServerConfig, Storage, TlsFiles};
use wormhole_sync_ureq::transcribe::{Initiator, Receiver};
use wormhole_sync_ureq::ureq::tls::{Certificate, RootCerts, TlsConfig};
use wormhole_sync_ureq::{ureq, Error};

const APP: &str = "example.com/tls";

/// A CA (its DER) and a server certificate for 127.0.0.1 it signed, written as PEM files.
fn certificates(dir: &std::path::Path) -> (Vec<u8>, TlsFiles) {
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
    (ca.der().to_vec(), files)
}

fn https_server(files: TlsFiles) -> BackgroundServer {
    let config = ServerConfig { tls: Some(files), ..ServerConfig::default().without_rate_limits() };
    let saved = RendezvousSnapshot::new(Vec::new());
    BackgroundServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), saved).unwrap()
}

fn trusting(ca: &[u8]) -> ureq::Agent {
    let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(ca).to_owned()]));
    let tls = TlsConfig::builder().root_certs(roots).build();
    ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into()
}

#[test]
fn an_exchange_over_https_with_a_trusted_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificates(dir.path());
    let server = https_server(files);
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let agent = trusting(&ca);
    let mut i = Initiator::builder(APP, b"over TLS".to_vec())
        .rendezvous(&server.url())
        .http_client(agent.clone())
        .build()
        .unwrap();
    let code = i.get_code().unwrap().to_string();
    let mut r = Receiver::builder(APP, &code, b"also over TLS".to_vec())
        .rendezvous(&server.url())
        .http_client(agent)
        .build()
        .unwrap();
    let receiving = thread::spawn(move || r.get_data());
    assert_eq!(i.get_data().unwrap(), b"also over TLS");
    assert_eq!(receiving.join().unwrap().unwrap(), b"over TLS");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_at_once_with_the_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, files) = certificates(dir.path());
    let server = https_server(files);
    let started = Instant::now();
    let mut i = Initiator::builder(APP, b"x".to_vec())
        .rendezvous(&server.url())
        .timeout(Duration::from_secs(3 * 24 * 3600))
        .build()
        .unwrap();
    let Err(error @ Error::ServerUnreachable { .. }) = i.get_code() else { panic!("reached an untrusted server") };
    assert!(started.elapsed() < Duration::from_secs(10), "retried for {:?}", started.elapsed());
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("certificate") || cause.contains("rustls"), "{cause}");
}

#[test]
fn a_magic_wormhole_exchange_over_wss_with_a_trusted_test_ca_and_a_refusal_without_it() {
    use wormhole_sync_ureq::magic_wormhole;
    use wormhole_sync_ureq::rustls;
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificates(dir.path());
    let server = https_server(files);
    let url = format!("wss://{}/v1", server.addr());
    let config = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(ca)).unwrap();
        Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    };
    let mut i = magic_wormhole::Initiator::builder(APP, b"over wss".to_vec())
        .rendezvous(&url)
        .http_client(config.clone())
        .build()
        .unwrap();
    let code = i.get_code().unwrap().to_string();
    let receiver = {
        let (url, config) = (url.clone(), config.clone());
        thread::spawn(move || {
            magic_wormhole::Receiver::builder(APP, &code, b"also over wss".to_vec())
                .rendezvous(&url)
                .http_client(config)
                .build()
                .unwrap()
                .get_data()
        })
    };
    assert_eq!(i.get_data().unwrap(), b"also over wss");
    assert_eq!(receiver.join().unwrap().unwrap(), b"over wss");
    // Without the test CA (webpki roots only), it fails at once, not at its timeout.
    let started = Instant::now();
    let mut untrusting = magic_wormhole::Initiator::builder(APP, vec![])
        .rendezvous(&url)
        .timeout(Duration::from_secs(3 * 24 * 3600))
        .build()
        .unwrap();
    let code = untrusting.get_code();
    assert!(matches!(code, Err(Error::ServerUnreachable { .. })), "{code:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_answer_hyper_writes_by_itself_is_json_over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, files) = certificates(dir.path());
    let config = ServerConfig { tls: Some(files), max_header_bytes: 8 * 1024, ..ServerConfig::default() };
    let saved = RendezvousSnapshot::new(Vec::new());
    let server = BackgroundServer::start("127.0.0.1:0".parse().unwrap(), config, Storage::memory(), saved).unwrap();
    // Headers past the server's limit: hyper refuses them before any handler
    // runs. They fit one TLS record, so the server has read all of them when it
    // answers and closes, and the client is not reset while still writing.
    let big = "a".repeat(12 * 1024);
    let answer = trusting(&ca).get(&format!("{}/health", server.url())).header("x-big", &big).call();
    let mut answer = answer.expect("an answer");
    assert_eq!(answer.status(), 431);
    let body = answer.body_mut().read_to_string().unwrap();
    assert!(body.contains(r#""error":"headers-too-large""#), "{body:?}");
}
