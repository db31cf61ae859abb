//! The driver task of a magic-wormhole exchange: one WebSocket to the
//! mailbox server, opened, written and closed as the core asks, its frames
//! fed back, the core's timers kept.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wormhole_sync_core::magic_wormhole::{MailboxExchange, Transmit};
use wormhole_sync_core::mailbox_wire::MAX_FRAME_BYTES;
use wormhole_sync_core::{Progress, TransportError};

use crate::driver::{far_future, now, publish, turn, DriverGuard};

/// How `wss://` connections are made: a `rustls` client configuration
/// (your own roots, a client certificate, ...). Without one, the roots of
/// `webpki-roots` (Mozilla's) are trusted.
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest frame read: the mailbox protocol's limit.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES)).max_frame_size(Some(MAX_FRAME_BYTES))
}

/// A connection error, permanent where retrying cannot help: TLS refused
/// the server, the URL is not a WebSocket URL, or the server answered the
/// upgrade with a client error (a wrong path, say).
fn classify(error: WsError) -> TransportError {
    let permanent = match &error {
        WsError::Tls(_) | WsError::Url(_) => true,
        WsError::Http(response) => response.status().is_client_error(),
        // The TLS handshake's refusal, as the TLS stream reports it.
        WsError::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    };
    if permanent {
        TransportError::permanent(error)
    } else {
        TransportError::new(error)
    }
}

async fn connect(url: String, connector: Option<TlsConfig>, within: Duration) -> Result<Socket, TransportError> {
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(socket_config()),
        true,
        connector.map(tokio_tungstenite::Connector::Rustls),
    );
    match tokio::time::timeout(within, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(error)) => Err(classify(error)),
        Err(_) => Err(TransportError::from_message("the mailbox server did not answer in time")),
    }
}

/// The next frame of the open socket; never completes without one.
async fn next_frame(socket: &mut Option<Socket>) -> Option<Result<Message, WsError>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// The connection being opened; never completes without one.
async fn opened(
    connecting: &mut Option<tokio::task::JoinHandle<Result<Socket, TransportError>>>,
) -> Result<Socket, TransportError> {
    match connecting {
        Some(task) => task.await.unwrap_or_else(|e| Err(TransportError::new(e))),
        None => std::future::pending().await,
    }
}

/// The driver task of a magic-wormhole exchange.
pub(crate) async fn drive(guard: DriverGuard<MailboxExchange>, connector: Option<TlsConfig>) {
    let shared = &guard.0;
    let mut news = Progress::default();
    let mut stopping = false;
    let mut socket: Option<Socket> = None;
    let mut connecting = None;
    loop {
        let polled = turn(shared, &mut news, &mut stopping, |exchange, at| {
            std::iter::from_fn(|| exchange.poll_transmit(at)).collect::<Vec<_>>()
        });
        let Some((due, wake)) = polled else { break };
        for transmit in due {
            match transmit {
                Transmit::Connect { url, timeout } => {
                    connecting = Some(tokio::spawn(connect(url, connector.clone(), timeout)));
                }
                Transmit::Frame(frame) => {
                    let sent = match socket.as_mut() {
                        Some(open) => open.send(Message::text(frame)).await.map_err(classify),
                        None => Err(TransportError::from_message("the connection closed")),
                    };
                    if let Err(cause) = sent {
                        socket = None;
                        shared.exchange().handle_disconnected(now(), cause);
                    }
                }
                Transmit::Disconnect => {
                    if let Some(mut open) = socket.take() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), open.close(None)).await;
                    }
                    let closed = TransportError::from_message("closed by this client");
                    shared.exchange().handle_disconnected(now(), closed);
                }
                _ => {}
            }
        }
        tokio::select! {
            result = opened(&mut connecting) => {
                connecting = None;
                match result {
                    Ok(open) => {
                        socket = Some(open);
                        shared.exchange().handle_connected(now());
                    }
                    Err(cause) => shared.exchange().handle_disconnected(now(), cause),
                }
            }
            frame = next_frame(&mut socket) => match frame {
                Some(Ok(Message::Text(text))) => shared.exchange().handle_frame(now(), text.as_bytes()),
                Some(Ok(Message::Binary(bytes))) => shared.exchange().handle_frame(now(), &bytes),
                // tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    socket = None;
                    let closed = TransportError::from_message("the mailbox server closed the connection");
                    shared.exchange().handle_disconnected(now(), closed);
                }
                Some(Err(error)) => {
                    socket = None;
                    shared.exchange().handle_disconnected(now(), classify(error));
                }
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(far_future)) => {}
            _ = shared.wake.notified() => {}
        }
    }
    if let Some(mut open) = socket.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), open.close(None)).await;
    }
    if let Some(task) = connecting {
        task.abort();
    }
    publish(shared, &news, true);
}
