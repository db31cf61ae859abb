//! Wake-ups across instances: every commit with news notifies the channel
//! with the mailbox's `[appid, mailbox]`; each instance listens on a
//! connection of its own and wakes its waiters on that mailbox.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_postgres::{AsyncMessage, NoTls};
use wormhole_sync_core::wire::MailboxId;

use super::CHANNEL;
use crate::waiters::Waiters;

/// A notification's payload.
pub(super) fn payload(appid: &str, mailbox: &str) -> String {
    serde_json::json!([appid, mailbox]).to_string()
}

fn parse(payload: &str) -> Option<(String, MailboxId)> {
    let (appid, mailbox): (String, String) = serde_json::from_str(payload).ok()?;
    Some((appid, MailboxId::new(mailbox)?))
}

/// Listens for as long as the server runs, connecting again (and waking
/// every waiter, who may have missed news meanwhile) whenever the
/// connection is lost.
pub(crate) async fn listen(waiters: Arc<Waiters>, config: tokio_postgres::Config) {
    let mut first = true;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let subscribed = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    Ok::<_, tokio_postgres::Error>(())
                };
                // The LISTEN is answered through the connection, so drive both.
                let mut subscribed = std::pin::pin!(subscribed);
                let listening = loop {
                    tokio::select! {
                        done = &mut subscribed => break done,
                        message = messages.next() => if message.is_none() { break Ok(()) },
                    }
                };
                if let Err(e) = listening {
                    tracing::warn!(error = %e, "cannot listen for other instances' news");
                } else {
                    if !first {
                        tracing::info!("listening for other instances' news again");
                    }
                    first = false;
                    waiters.wake_all();
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(note)) => {
                                if let Some((appid, mailbox)) = parse(note.payload()) {
                                    waiters.wake(&appid, &mailbox);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the connection that hears other instances' news");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to hear other instances' news"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_whatever_the_app_id_holds() {
        let appid = r#"example.com/app "quoted", [bracketed]"#;
        assert_eq!(parse(&payload(appid, "abc123")), Some((appid.to_string(), MailboxId::new("abc123").unwrap())));
        assert_eq!(parse("not json"), None);
    }
}
