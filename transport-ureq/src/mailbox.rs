//! The blocking loop of a magic-wormhole exchange. The WebSocket lives on
//! a thread of its own, which sends the frames the loop hands it and
//! passes back what it reads; the loop, in the caller's thread, feeds the
//! core and sleeps until its next deadline, waking early for a frame, a
//! closed connection or a cancel.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};
use wormhole_sync_core::magic_wormhole::{MailboxExchange, Transmit};
use wormhole_sync_core::mailbox_wire::MAX_FRAME_BYTES;
use wormhole_sync_core::{Progress, Timestamp, TransportError};

use crate::driver::Canceller;

/// How `wss://` connections are made: a `rustls` client configuration
/// (your own roots, say). Without one, the roots of `webpki-roots`
/// (Mozilla's) are trusted.
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;

/// How often the connection thread looks for frames to send while it
/// waits to read one.
const POLL: Duration = Duration::from_millis(50);

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// What wakes the loop before its next deadline. Connection events carry
/// the connection's number, so a late event of a closed one is ignored.
enum Signal {
    Connected(u64),
    Frame(u64, Vec<u8>),
    Disconnected(u64, TransportError),
    Cancel,
}

/// The loop's side of the connection thread.
struct Connection {
    number: u64,
    outbound: mpsc::Sender<Option<String>>,
}

/// A magic-wormhole exchange, the news it announced, and its connection.
pub(crate) struct MailboxDriver {
    pub(crate) exchange: MailboxExchange,
    pub(crate) news: Progress,
    connector: Option<TlsConfig>,
    signals: mpsc::Sender<Signal>,
    inbox: mpsc::Receiver<Signal>,
    connection: Option<Connection>,
    connections: u64,
    /// The state was handed out: dropping this one must not close the mailbox.
    saved: AtomicBool,
}

impl MailboxDriver {
    pub(crate) fn new(exchange: MailboxExchange, connector: Option<TlsConfig>) -> MailboxDriver {
        let (signals, inbox) = mpsc::channel();
        MailboxDriver {
            exchange,
            news: Progress::default(),
            connector,
            signals,
            inbox,
            connection: None,
            connections: 0,
            saved: AtomicBool::new(false),
        }
    }

    pub(crate) fn with_connector(mut self, connector: TlsConfig) -> MailboxDriver {
        self.connector = Some(connector);
        self
    }

    pub(crate) fn canceller(&self) -> Canceller {
        let signals = self.signals.clone();
        Canceller::new(move || {
            let _ = signals.send(Signal::Cancel);
        })
    }

    pub(crate) fn serialize(&self) -> Vec<u8> {
        self.saved.store(true, Ordering::Relaxed);
        self.exchange.serialize()
    }

    /// Runs the exchange until `done` holds or nothing is left to do
    /// (outcome known and mailbox closed, or its close given up).
    pub(crate) fn run_until(&mut self, done: impl Fn(&Progress) -> bool) {
        self.exchange.start(now());
        loop {
            let at = now();
            while let Some(transmit) = self.exchange.poll_transmit(at) {
                self.transmit(transmit);
            }
            while let Some(event) = self.exchange.poll_event() {
                self.news.record(event);
            }
            if done(&self.news) && !self.exchange.has_outcome() {
                return;
            }
            let Some(wake) = self.exchange.poll_timeout() else { break };
            let current = self.connection.as_ref().map(|c| c.number);
            match self.inbox.recv_timeout(wake.saturating_since(now())) {
                Ok(Signal::Connected(n)) if Some(n) == current => self.exchange.handle_connected(now()),
                Ok(Signal::Frame(n, frame)) if Some(n) == current => self.exchange.handle_frame(now(), &frame),
                Ok(Signal::Disconnected(n, cause)) if Some(n) == current => {
                    self.connection = None;
                    self.exchange.handle_disconnected(now(), cause);
                }
                Ok(Signal::Cancel) => self.exchange.cancel(now()),
                Ok(_) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.exchange.handle_timeout(now())
                }
            }
        }
        self.hang_up();
    }

    /// Cancels the exchange and closes its mailbox (briefly), unless it
    /// has ended already.
    pub(crate) fn close(&mut self) {
        if self.exchange.is_started() && !self.exchange.is_finished() {
            self.exchange.cancel(now());
            self.run_until(|_| false);
        }
        self.hang_up();
    }

    fn hang_up(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = connection.outbound.send(None);
        }
    }

    fn transmit(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Connect => {
                self.hang_up();
                self.connections += 1;
                let number = self.connections;
                let (outbound, frames) = mpsc::channel();
                self.connection = Some(Connection { number, outbound });
                let url = self.exchange.config().rendezvous().unwrap_or_default().to_string();
                let within = self.exchange.config().request_timeout();
                let (signals, connector) = (self.signals.clone(), self.connector.clone());
                let spawned = std::thread::Builder::new()
                    .name("wormhole-sync-ws".into())
                    .spawn(move || run_connection(number, &url, connector, within, &frames, &signals));
                if let Err(error) = spawned {
                    let _ = self.signals.send(Signal::Disconnected(number, TransportError::new(error)));
                }
            }
            Transmit::Frame(frame) => {
                let sent = self.connection.as_ref().is_some_and(|c| c.outbound.send(Some(frame)).is_ok());
                if !sent {
                    self.connection = None;
                    self.exchange.handle_disconnected(now(), TransportError::from_message("the connection closed"));
                }
            }
            Transmit::Disconnect => {
                self.hang_up();
                self.exchange.handle_disconnected(now(), TransportError::from_message("closed by this client"));
            }
            _ => {}
        }
    }
}

impl Drop for MailboxDriver {
    /// Closes the mailbox of an exchange dropped mid-way, so the peer does
    /// not wait for nothing; a saved exchange without an outcome is left
    /// for whoever restores it.
    fn drop(&mut self) {
        if !self.saved.load(Ordering::Relaxed) || self.exchange.has_outcome() {
            self.close();
        }
        self.hang_up();
    }
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

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Opens the WebSocket within `within`: TCP, TLS for `wss://`, the upgrade.
fn open(url: &str, connector: Option<TlsConfig>, within: Duration) -> Result<Socket, TransportError> {
    let request = url.into_client_request().map_err(classify)?;
    let uri = request.uri();
    let host =
        uri.host().ok_or_else(|| TransportError::permanent(WsError::Url(tungstenite::error::UrlError::NoHostName)))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let mut last = TransportError::from_message("the mailbox server's name resolved to no address");
    let addresses = (host, port).to_socket_addrs().map_err(TransportError::new)?;
    for address in addresses {
        match TcpStream::connect_timeout(&address, within) {
            Ok(stream) => {
                stream.set_read_timeout(Some(within)).map_err(TransportError::new)?;
                stream.set_write_timeout(Some(within)).map_err(TransportError::new)?;
                let _ = stream.set_nodelay(true);
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_FRAME_BYTES))
                    .max_frame_size(Some(MAX_FRAME_BYTES));
                return match tungstenite::client_tls_with_config(
                    request,
                    stream,
                    Some(config),
                    connector.map(tungstenite::Connector::Rustls),
                ) {
                    Ok((socket, _)) => Ok(socket),
                    Err(HandshakeError::Failure(error)) => Err(classify(error)),
                    Err(HandshakeError::Interrupted(_)) => {
                        Err(TransportError::from_message("the mailbox server did not answer in time"))
                    }
                };
            }
            Err(error) => last = TransportError::new(error),
        }
    }
    Err(last)
}

fn tcp(socket: &Socket) -> &TcpStream {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => stream,
        MaybeTlsStream::Rustls(stream) => stream.get_ref(),
        _ => unreachable!("only plain and rustls streams are made"),
    }
}

/// The connection thread: opens the socket, then sends what the loop hands
/// it and passes back what it reads, until either side closes.
fn run_connection(
    number: u64,
    url: &str,
    connector: Option<TlsConfig>,
    within: Duration,
    frames: &mpsc::Receiver<Option<String>>,
    signals: &mpsc::Sender<Signal>,
) {
    let mut socket = match open(url, connector, within) {
        Ok(socket) => socket,
        Err(cause) => {
            let _ = signals.send(Signal::Disconnected(number, cause));
            return;
        }
    };
    if tcp(&socket).set_read_timeout(Some(POLL)).is_err() || signals.send(Signal::Connected(number)).is_err() {
        return;
    }
    let cause = loop {
        let mut hung_up = false;
        loop {
            match frames.try_recv() {
                Ok(Some(frame)) => {
                    if let Err(error) = socket.send(Message::text(frame)) {
                        let _ = signals.send(Signal::Disconnected(number, classify(error)));
                        return;
                    }
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    hung_up = true;
                    break;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if hung_up {
            let _ = socket.close(None);
            let _ = socket.flush();
            return;
        }
        match socket.read() {
            Ok(Message::Text(text)) => {
                if signals.send(Signal::Frame(number, text.as_bytes().to_vec())).is_err() {
                    return;
                }
            }
            Ok(Message::Binary(bytes)) => {
                if signals.send(Signal::Frame(number, bytes.to_vec())).is_err() {
                    return;
                }
            }
            Ok(Message::Close(_)) => break TransportError::from_message("the mailbox server closed the connection"),
            Ok(_) => {}
            Err(WsError::Io(error)) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => break classify(error),
        }
    };
    let _ = signals.send(Signal::Disconnected(number, cause));
}

impl std::fmt::Debug for MailboxDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxDriver").field("exchange", &self.exchange).finish_non_exhaustive()
    }
}
