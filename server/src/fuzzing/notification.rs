//! The payloads of the notifications instances sharing a PostgreSQL
//! database send each other: any text PostgreSQL hands the listener is
//! parsed without a panic, and what parses keeps its promises:
//!
//! - a state is taken only for the mailbox the payload names;
//! - what parses writes back as a payload that parses to the same news,
//!   its state left out only when too long for a notification.

use crate::postgres::{notification_payload, parse_notification, MAX_PAYLOAD};

/// Runs one input: the fuzzer's bytes as a payload (PostgreSQL's are text).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(news) = parse_notification(text) else { return };
    if let Some(committed) = &news.committed {
        assert_eq!(committed.snapshot.appid, news.appid, "a state of another app id was taken");
        assert_eq!(committed.snapshot.mailbox, news.mailbox, "a state of another mailbox was taken");
    }
    let again = notification_payload(&news.appid, &news.mailbox, news.committed.as_deref());
    let parsed = parse_notification(&again).expect("a payload the server wrote parses");
    assert_eq!((&parsed.appid, &parsed.mailbox), (&news.appid, &news.mailbox));
    match (&parsed.committed, &news.committed) {
        (Some(parsed), Some(news)) => {
            assert_eq!((parsed.instance, &parsed.snapshot), (news.instance, &news.snapshot), "the state changed")
        }
        (None, Some(news)) => {
            let whole = serde_json::to_string(&(&parsed.appid, &parsed.mailbox, news.instance, &news.snapshot));
            assert!(whole.unwrap().len() > MAX_PAYLOAD, "a state that fits was left out");
        }
        (Some(_), None) => panic!("a state appeared"),
        (None, None) => {}
    }
}
