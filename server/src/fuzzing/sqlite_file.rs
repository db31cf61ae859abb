//! The SQLite loader on damaged databases: a real database with channels
//! and messages, with fuzzer-chosen bytes overwritten and its tail cut,
//! is opened and loaded as at start-up. Checked:
//!
//! - opening and loading never panic: the result is the state or a clear
//!   error;
//! - what loads and restores into the rendezvous (as start-up does) holds
//!   as many channels and messages as were written: a damaged file is
//!   refused, by the loader or the restore, never served in part.

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use wormhole_sync_core::rendezvous::{Rendezvous, RendezvousConfig, RendezvousSnapshot};
use wormhole_sync_core::wire::{AllocateRequest, CloseRequest, JoinRequest, Mood, PostRequest, Request};
use wormhole_sync_core::{ChannelId, Timestamp};

use crate::change::Change;
use crate::sqlite;

#[derive(Arbitrary, Debug)]
struct Damage {
    /// (offset, byte) pairs written over the file.
    writes: Vec<(u16, u8)>,
    /// Cut the file to this many bytes.
    truncate: Option<u16>,
}

struct Template {
    bytes: Vec<u8>,
    channels: usize,
    messages: usize,
}

/// A scratch path for this process.
fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("wormhole-sync-fuzz-{}.sqlite3", std::process::id()))
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// A database written by the server's own code: channels of two apps, one
/// burned, with messages, checkpointed into one file.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let mut state = Rendezvous::new(RendezvousConfig::default(), [5; 32]);
        let now = Timestamp::from_millis(1_700_000_000_000);
        for (appid, sides) in [("app-one", 4), ("example.com/app-two", 3)] {
            for n in 0..sides {
                let (a, b) = (format!("a{n}"), format!("b{n}"));
                let channel = ChannelId::new(20 + n).expect("a valid id");
                let requests = [
                    Request::Allocate(AllocateRequest::new(appid, a.as_str())),
                    Request::Join(JoinRequest::new(appid, b.as_str(), channel, true)),
                    Request::Post(PostRequest::new(appid, b.as_str(), channel, "pake", "a".repeat(40 + n as usize))),
                    Request::Post(PostRequest::new(appid, b.as_str(), channel, "data", "b".repeat(90))),
                ];
                for request in &requests {
                    state.handle(now, request).expect("the template's requests succeed");
                }
            }
        }
        let burned =
            Request::Close(CloseRequest::new("app-one", "b0", ChannelId::new(20).expect("valid"), Mood::Scary));
        state.handle(now, &burned).expect("a close succeeds");
        let snapshot = state.snapshot();
        let path = scratch();
        remove(&path);
        let mut connection = sqlite::open(&path).expect("a new database opens");
        let changes: Vec<Change> = snapshot.mailboxes.iter().cloned().map(Change::Mailbox).collect();
        sqlite::apply(&mut connection, sqlite::Durability::Synced, changes.iter()).expect("the template stores");
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;").expect("one file");
        drop(connection);
        let bytes = std::fs::read(&path).expect("the template reads back");
        remove(&path);
        let messages = snapshot.mailboxes.iter().map(|c| c.messages.len()).sum();
        Template { bytes, channels: snapshot.mailboxes.len(), messages }
    })
}

/// Loads one damaged copy of the template; panics if a rule breaks.
pub fn run(data: &[u8]) {
    let Ok(damage) = Damage::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let template = template();
    let mut bytes = template.bytes.clone();
    for &(offset, value) in damage.writes.iter().take(64) {
        let at = usize::from(offset) % bytes.len();
        bytes[at] = value;
    }
    if let Some(len) = damage.truncate {
        bytes.truncate(usize::from(len));
    }
    let path = scratch();
    remove(&path);
    std::fs::write(&path, &bytes).expect("the scratch file writes");
    let loaded = sqlite::open(&path).and_then(|connection| sqlite::load(&connection));
    remove(&path);
    // Start-up goes on to restore what loaded, which checks it again.
    let Ok(snapshot) = loaded else { return };
    if Rendezvous::restore(RendezvousConfig::default(), snapshot.clone(), [0; 32]).is_err() {
        return;
    }
    if !bytes.is_empty() {
        // (An empty file is a new database: SQLite starts over, rightly.)
        check_whole(template, &snapshot);
    }
}

fn check_whole(template: &Template, snapshot: &RendezvousSnapshot) {
    let messages: usize = snapshot.mailboxes.iter().map(|c| c.messages.len()).sum();
    assert_eq!(
        (snapshot.mailboxes.len(), messages),
        (template.channels, template.messages),
        "a damaged database loaded in part"
    );
}
