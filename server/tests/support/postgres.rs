//! A PostgreSQL database of its own for each test, in the cluster that
//! `WORMHOLE_SYNC_TEST_POSTGRES` names (`tools/postgres.sh start DIR`
//! starts a throwaway one and prints the variables).
//!
//! Without it, a test says loudly that it skipped; under CI (`CI` set) it
//! fails instead, so these tests never pass by not running.

use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's URL (a database anyone may connect to), if configured.
pub fn cluster() -> Option<String> {
    match std::env::var("WORMHOLE_SYNC_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must run the PostgreSQL tests: set WORMHOLE_SYNC_TEST_POSTGRES (see tools/postgres.sh)")
        }
        _ => {
            eprintln!(
                "SKIPPED: no PostgreSQL configured (WORMHOLE_SYNC_TEST_POSTGRES). Start a throwaway one with \
                 `eval \"$(tools/postgres.sh start /tmp/wormhole-pg | sed 's/^/export /')\"` to run this test."
            );
            None
        }
    }
}

/// A new, empty database, dropped (with any connection still open to it)
/// when this is dropped.
pub struct Database {
    cluster: String,
    name: String,
    pub url: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn admin(cluster: &str, sql: &str) {
    let (client, connection) =
        tokio_postgres::connect(cluster, tokio_postgres::NoTls).await.expect("cluster reachable");
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    drop(client);
    let _ = driver.await;
}

/// The URL of another database in the same cluster.
fn with_database(cluster: &str, name: &str) -> String {
    let (base, query) = match cluster.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (cluster, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

impl Database {
    /// A fresh database, or `None` (skipped) without a cluster.
    pub fn create() -> Option<Database> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let cluster = cluster()?;
        let name = format!(
            "wst_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        runtime().block_on(admin(&cluster, &format!("CREATE DATABASE {name}")));
        let url = with_database(&cluster, &name);
        Some(Database { cluster, name, url })
    }

    /// Runs SQL in this database (inspection, or a hand-made state).
    pub fn execute(&self, sql: &str) {
        runtime().block_on(admin(&self.url, sql));
    }

    /// Runs `sql` (a lock, say) on a connection of its own that stays
    /// open, holding what it took, until the guard is dropped.
    pub fn hold_lock(url: &str, sql: &str) -> Held {
        let (taken, wait_taken) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (url, sql) = (url.to_string(), sql.to_string());
        let thread = std::thread::spawn(move || {
            runtime().block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                let driver = tokio::spawn(connection);
                client.batch_execute(&sql).await.unwrap();
                taken.send(()).unwrap();
                let _ = released.await;
                drop(client);
                let _ = driver.await;
            })
        });
        wait_taken.recv().expect("the lock is taken");
        Held { release: Some(release), thread: Some(thread) }
    }

    /// The first column of the first row of a query, as text.
    pub fn query_text(&self, sql: &str) -> String {
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
            let driver = tokio::spawn(connection);
            let rows = client.simple_query(sql).await.unwrap();
            drop(client);
            let _ = driver.await;
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("").to_string()),
                    _ => None,
                })
                .unwrap_or_default()
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::panic::catch_unwind(|| runtime().block_on(admin(&self.cluster, &sql)));
    }
}

/// A connection holding a lock; dropping it closes the connection.
pub struct Held {
    release: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
