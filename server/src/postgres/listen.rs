//! Wake-ups across instances: after every commit with news, the instance
//! notifies the channel with each mailbox's `[appid, mailbox, instance,
//! state]` (the state the commit left it in, which a woken long-poll may
//! answer from without reading it again), or `[appid, mailbox]` when that
//! state is not known or would not fit; each instance listens on a
//! connection of its own and wakes its waiters on that mailbox
//! ([`listen`]). A batch sends its notifications in the
//! pipeline of its writes, right behind its `COMMIT` (`writes::Plan::execute`);
//! a transaction that commits on its own (an operation run alone) hands
//! them to the [`Notifier`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use wormhole_sync_core::rendezvous::MailboxSnapshot;
use wormhole_sync_core::wire::MailboxId;

use super::connect::Connector;
use super::CHANNEL;
use crate::change::{Committed, MailboxNews};
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
    pub(super) fn notify<'a>(&self, news: impl IntoIterator<Item = &'a MailboxNews>) {
        for news in news {
            // Fails only once the task has stopped, at shutdown.
            let _ = self.queue.send(payload(&news.appid, &news.mailbox, news.committed.as_deref()));
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

/// The longest payload that carries a mailbox's state: PostgreSQL refuses
/// one of 8,000 bytes or more, and a longer state goes without it.
pub(crate) const MAX_PAYLOAD: usize = 7_000;

/// A notification's payload: news of a mailbox, with the state a commit
/// left it in when known and short enough.
pub(crate) fn payload(appid: &str, mailbox: &MailboxId, committed: Option<&Committed>) -> String {
    // Bodies alone too long: not worth writing out to find so.
    let fits = |c: &&Committed| c.snapshot.messages.iter().map(|m| m.body.len()).sum::<usize>() <= MAX_PAYLOAD;
    let announced = committed
        .filter(fits)
        .and_then(|c| serde_json::to_string(&(appid, mailbox, c.instance, &c.snapshot)).ok())
        .filter(|payload| payload.len() <= MAX_PAYLOAD);
    announced.unwrap_or_else(|| serde_json::json!([appid, mailbox.as_str()]).to_string())
}

/// A payload as [`payload`] writes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Announced(String, MailboxId, u64, MailboxSnapshot),
    Named(String, MailboxId),
}

/// The mailbox a notification names, and the state it announces if it
/// announces one of that mailbox. `None` for a payload this server did not
/// write.
pub(crate) fn parse(payload: &str) -> Option<MailboxNews> {
    match serde_json::from_str(payload).ok()? {
        Payload::Named(appid, mailbox) => Some(MailboxNews::of(appid, mailbox)),
        Payload::Announced(appid, mailbox, instance, snapshot) => {
            let of_it = snapshot.appid == appid && snapshot.mailbox == mailbox;
            let committed = of_it.then(|| Arc::new(Committed { instance, snapshot }));
            Some(MailboxNews { appid, mailbox, committed })
        }
    }
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
                                if let Some(news) = parse(note.payload()) {
                                    waiters.wake(&news.appid, &news.mailbox, news.committed.as_ref());
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

    /// A mailbox of `appid` with two sides and a message of `body`.
    fn committed(appid: &str, body: &str) -> Committed {
        Committed::with_messages(appid, 7, &[body])
    }

    #[test]
    fn payloads_round_trip_whatever_the_app_id_holds() {
        let appid = r#"example.com/app "quoted", [bracketed]"#;
        let mailbox = MailboxId::new("abc123").unwrap();
        let named = parse(&payload(appid, &mailbox, None)).unwrap();
        assert_eq!((named.appid.as_str(), &named.mailbox), (appid, &mailbox));
        assert!(named.committed.is_none());

        let state = committed(appid, "AAAA");
        let announced = parse(&payload(appid, &state.snapshot.mailbox, Some(&state))).unwrap();
        let got = announced.committed.expect("the state comes along");
        assert_eq!((got.instance, &got.snapshot), (7, &state.snapshot));
        assert_eq!(parse("not json").map(|news| news.appid), None);
    }

    #[test]
    fn a_state_too_long_for_a_notification_or_of_another_mailbox_is_left_out() {
        let long = committed("app", &"A".repeat(MAX_PAYLOAD));
        let sent = payload("app", &long.snapshot.mailbox, Some(&long));
        assert!(sent.len() < 100, "{} bytes", sent.len());
        assert!(parse(&sent).unwrap().committed.is_none());

        let state = committed("app", "AAAA");
        let other = MailboxId::new("other").unwrap();
        let forged = serde_json::to_string(&("app", &other, 7, &state.snapshot)).unwrap();
        let news = parse(&forged).unwrap();
        assert_eq!(news.mailbox, other);
        assert!(news.committed.is_none(), "a state is only taken for the mailbox it is of");
    }
}
