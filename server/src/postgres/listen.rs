//! Wake-ups across instances: after every commit with news, the instance
//! notifies the channel with each mailbox's `[appid, mailbox]`; each
//! instance listens on a connection of its own and wakes its waiters on
//! that mailbox ([`listen`]). A batch sends its notifications in the
//! pipeline of its writes, right behind its `COMMIT` (`writes::Plan::execute`);
//! a transaction that commits on its own (an operation run alone) hands
//! them to the [`Notifier`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use wormhole_sync_core::wire::MailboxId;

use super::connect::Connector;
use super::CHANNEL;
use crate::waiters::Waiters;

/// Tells the other instances of news once it is committed (by a
/// transaction that did not announce it in its own pipeline), from a
/// connection of its own, in transactions that do not wait for the log's
/// flush. A `NOTIFY` in the committing transaction would hold PostgreSQL's
/// lock on its notification queue through that commit's flush, so the
/// commits of every instance would queue behind each other's. What an
/// instance that dies between a commit and its notification leaves
/// unannounced, the waiters elsewhere learn at their long-poll's end.
pub(super) struct Notifier {
    queue: mpsc::UnboundedSender<String>,
}

impl Notifier {
    /// Starts the notifying task; it stops once the notifier is dropped.
    pub(super) fn start(connector: Connector) -> Notifier {
        let (queue, payloads) = mpsc::unbounded_channel();
        tokio::spawn(send_notifications(connector, payloads));
        Notifier { queue }
    }

    /// Announces news of these mailboxes.
    pub(super) fn notify<'a>(&self, news: impl IntoIterator<Item = &'a (String, MailboxId)>) {
        for (appid, mailbox) in news {
            // Fails only once the task has stopped, at shutdown.
            let _ = self.queue.send(payload(appid, mailbox.as_str()));
        }
    }
}

/// Sends the queued payloads, those queued together in one statement.
async fn send_notifications(mut connector: Connector, mut payloads: mpsc::UnboundedReceiver<String>) {
    let options = connector.config.get_options().map_or(String::new(), |given| format!("{given} "));
    connector.config.options(format!("{options}-c synchronous_commit=off"));
    // The connection and its statement, prepared once: a notification then
    // costs one round trip.
    let mut client: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    let mut batch = Vec::new();
    while payloads.recv_many(&mut batch, 1024).await > 0 {
        batch.sort_unstable();
        batch.dedup();
        // Once again on a new connection if the one kept was lost.
        for _ in 0..2 {
            let (connected, notify) = match client.take() {
                Some((connected, notify)) if !connected.is_closed() => (connected, notify),
                _ => match connect_to_notify(&connector).await {
                    Ok(connected) => connected,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to tell other instances of news");
                        break;
                    }
                },
            };
            match connected.execute(&notify, &[&CHANNEL, &batch]).await {
                Ok(_) => {
                    client = Some((connected, notify));
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "cannot tell other instances of news"),
            }
        }
        batch.clear();
    }
}

/// A connection for notifications, and its statement.
async fn connect_to_notify(
    connector: &Connector,
) -> Result<(tokio_postgres::Client, tokio_postgres::Statement), tokio_postgres::Error> {
    let (connected, connection) = connector.connect().await?;
    tokio::spawn(connection);
    let notify = connected.prepare("SELECT pg_notify($1, n) FROM unnest($2::TEXT[]) n").await?;
    Ok((connected, notify))
}

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
pub(crate) async fn listen(waiters: Arc<Waiters>, connector: Connector) {
    let mut first = true;
    loop {
        match connector.connect().await {
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
