//! TLS to PostgreSQL: with `sslmode=require` every connection an instance
//! keeps is encrypted, and a database whose certificate does not chain to
//! the trusted roots, or does not name the host, is refused.
//!
//! This turns TLS on in the cluster `WORMHOLE_SYNC_TEST_POSTGRES_DIR`
//! names (made by `tools/postgres.sh start DIR`), with a certificate it
//! makes and leaves in `DIR/tls` (the cluster reads it again whenever it
//! starts), so it has its binary to itself. Plain connections keep working
//! beside TLS ones.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::postgres::Database;
use support::TestServer;
use wormhole_sync_server::{Chain, ServerConfig, Storage};

fn cluster_dir() -> Option<PathBuf> {
    match std::env::var("WORMHOLE_SYNC_TEST_POSTGRES_DIR") {
        Ok(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must run the PostgreSQL TLS test: set WORMHOLE_SYNC_TEST_POSTGRES_DIR (tools/postgres.sh)")
        }
        _ => {
            eprintln!(
                "SKIPPED: no PostgreSQL cluster directory (WORMHOLE_SYNC_TEST_POSTGRES_DIR; see tools/postgres.sh)"
            );
            None
        }
    }
}

/// A certificate authority, as PEM, and the certificate it signed for
/// 127.0.0.1 (only that address) with its key.
struct Authority {
    ca: String,
    leaf: String,
    leaf_key: String,
}

fn authority() -> Authority {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    Authority { ca: ca.pem(), leaf: leaf.pem(), leaf_key: leaf_key.serialize_pem() }
}

/// Writes `contents` where the cluster's owner may read it and no one else.
fn write_private(path: &Path, contents: &str, owner: &std::fs::Metadata) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

/// Turns TLS on in the cluster with a fresh certificate, and returns the
/// authority that signed it once the cluster serves it.
fn tls_on(dir: &Path, database: &Database) -> Authority {
    let owner = std::fs::metadata(dir.join("data")).expect("the cluster's data directory");
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    std::os::unix::fs::chown(&tls_dir, Some(std::os::unix::fs::MetadataExt::uid(&owner)), None).unwrap();
    let authority = authority();
    write_private(&tls_dir.join("server.crt"), &authority.leaf, &owner);
    write_private(&tls_dir.join("server.key"), &authority.leaf_key, &owner);
    for setting in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", tls_dir.join("server.crt").display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", tls_dir.join("server.key").display()),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        database.execute(&setting);
    }
    // The reload is a signal: wait until the new certificate is served.
    let ca_file = tls_dir.join("test-ca.pem");
    std::fs::write(&ca_file, &authority.ca).unwrap();
    let url = with_tls(&database.url, &ca_file);
    let started = Instant::now();
    while connect(&url).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "the cluster never served the new certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    authority
}

fn with_tls(url: &str, ca_file: &Path) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=verify-full&sslrootcert={}", ca_file.display())
}

/// Opens the storage as an instance would at start, then lets it go.
fn connect(url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { Storage::postgres(url).await.map(drop).map_err(|e| Chain(&e).to_string()) })
}

#[test]
fn sslmode_require_encrypts_every_connection_and_refuses_an_unverified_database() {
    let Some(dir) = cluster_dir() else { return };
    let Some(database) = Database::create() else { return };
    let tls_dir = dir.join("tls");
    let _authority = tls_on(&dir, &database);
    let ca_file = tls_dir.join("test-ca.pem");

    // An instance on TLS serves exchanges; every connection it keeps (the
    // pool's, the listener's, the notifier's) is encrypted.
    let url = with_tls(&database.url, &ca_file);
    let a = TestServer::postgres(ServerConfig::default().without_rate_limits(), &url);
    let b = TestServer::postgres(ServerConfig::default().without_rate_limits(), &url);
    support::an_exchange(a.addr, b.addr);
    let of_this_database = "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                            WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()";
    let encrypted: u32 = database.query_text(&format!("SELECT count(*) {of_this_database} AND s.ssl")).parse().unwrap();
    let plain = database.query_text(&format!("SELECT count(*) {of_this_database} AND NOT s.ssl"));
    assert!(encrypted >= 3, "two instances' pools and listeners: {encrypted} encrypted connections");
    assert_eq!(plain, "0", "every connection of the instances is encrypted");
    drop((a, b));

    // Refused: a database whose certificate another authority signed, one
    // the built-in roots do not know, and a host name the certificate
    // does not name. Each says why, and never the password.
    let stranger = tls_dir.join("stranger-ca.pem");
    std::fs::write(&stranger, authority().ca).unwrap();
    let with_password = database.url.replacen("postgres://wormhole@", "postgres://wormhole:hunter2@", 1);
    assert_ne!(with_password, database.url, "the test cluster's URL names its user as tools/postgres.sh does");
    let refused = [
        with_tls(&with_password, &stranger),
        format!("{with_password}?sslmode=require"),
        with_tls(&with_password.replacen("127.0.0.1", "localhost", 1), &ca_file),
    ];
    for url in refused {
        let error = connect(&url).expect_err(&url);
        assert!(error.to_lowercase().contains("certificate"), "{url}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
