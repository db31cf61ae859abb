//! The blocking loop of a magic-wormhole exchange. The WebSocket lives on
//! a thread of its own, which waits (with `mio`) for its socket or for a
//! frame to send, whichever comes first, and passes back what it reads;
//! the loop, in the caller's thread, feeds the core and sleeps until its
//! next deadline, waking early for a frame, a closed connection or a cancel.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token, Waker};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};
use wormhole_sync_core::magic_wormhole::{MailboxExchange, Transmit};
use wormhole_sync_core::mailbox_wire::MAX_FRAME_BYTES;
use wormhole_sync_core::{Progress, Timestamp, TransportError};

use crate::driver::{Canceller, Observer};

/// How `wss://` connections are made: a `rustls` client configuration
/// (your own roots, say). Without one, the roots of `webpki-roots`
/// (Mozilla's) are trusted.
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;

/// What wakes the connection thread: its socket, or the loop with a frame to send.
const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);

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

/// The loop's side of the connection thread: frames to send (`None`:
/// close), and what wakes the thread to send them.
struct Connection {
    number: u64,
    outbound: mpsc::Sender<Option<String>>,
    waker: Arc<Waker>,
}

impl Connection {
    fn send(&self, frame: Option<String>) -> bool {
        self.outbound.send(frame).is_ok() && self.waker.wake().is_ok()
    }
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
    pub(crate) observer: Observer,
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
            observer: Observer::default(),
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
            self.observer.publish(self.exchange.server_trouble());
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
            connection.send(None);
        }
    }

    fn transmit(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Connect { url, timeout: within } => {
                self.hang_up();
                self.connections += 1;
                let number = self.connections;
                let poll = Poll::new().and_then(|poll| Ok((Arc::new(Waker::new(poll.registry(), WAKE)?), poll)));
                let (waker, poll) = match poll {
                    Ok(made) => made,
                    Err(error) => {
                        let _ = self.signals.send(Signal::Disconnected(number, TransportError::new(error)));
                        return;
                    }
                };
                let (outbound, frames) = mpsc::channel();
                self.connection = Some(Connection { number, outbound, waker });
                let (signals, connector) = (self.signals.clone(), self.connector.clone());
                let thread = Thread { number, poll, frames, signals };
                let spawned = std::thread::Builder::new()
                    .name("wormhole-sync-ws".into())
                    .spawn(move || thread.run(&url, connector, within));
                if let Err(error) = spawned {
                    let _ = self.signals.send(Signal::Disconnected(number, TransportError::new(error)));
                }
            }
            Transmit::Frame(frame) => {
                let sent = self.connection.as_ref().is_some_and(|c| c.send(Some(frame)));
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

type Socket = WebSocket<MaybeTlsStream<mio::net::TcpStream>>;

fn would_block(error: &WsError) -> bool {
    matches!(error, WsError::Io(io) if io.kind() == ErrorKind::WouldBlock)
}

/// The connection thread: its number, what it waits on, the frames the
/// loop hands it, and where it reports.
struct Thread {
    number: u64,
    poll: Poll,
    frames: mpsc::Receiver<Option<String>>,
    signals: mpsc::Sender<Signal>,
}

impl Thread {
    /// Opens the socket, then sends what the loop hands it and passes back
    /// what it reads, until either side closes.
    fn run(mut self, url: &str, tls: Option<TlsConfig>, within: Duration) {
        let number = self.number;
        let outcome = match self.open(url, tls, within) {
            Ok(mut socket) => {
                if self.signals.send(Signal::Connected(number)).is_err() {
                    return;
                }
                self.serve(&mut socket)
            }
            Err(cause) => Err(cause),
        };
        if let Err(cause) = outcome {
            let _ = self.signals.send(Signal::Disconnected(number, cause));
        }
    }

    /// Opens the WebSocket within `within`: TCP, TLS for `wss://`, the upgrade.
    fn open(&mut self, url: &str, tls: Option<TlsConfig>, within: Duration) -> Result<Socket, TransportError> {
        let deadline = Instant::now() + within;
        let request = url.into_client_request().map_err(classify)?;
        let uri = request.uri();
        let no_host = || TransportError::permanent(WsError::Url(tungstenite::error::UrlError::NoHostName));
        let host = uri.host().ok_or_else(no_host)?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
        let mut stream = None;
        let mut last = TransportError::from_message("the mailbox server's name resolved to no address");
        for address in (host.as_str(), port).to_socket_addrs().map_err(TransportError::new)? {
            match TcpStream::connect_timeout(&address, within) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last = TransportError::new(error),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        stream.set_nonblocking(true).map_err(TransportError::new)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        self.poll
            .registry()
            .register(&mut stream, SOCKET, Interest::READABLE | Interest::WRITABLE)
            .map_err(TransportError::new)?;
        let config =
            WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES)).max_frame_size(Some(MAX_FRAME_BYTES));
        let connector = tls.map(tungstenite::Connector::Rustls);
        let mut attempt = tungstenite::client_tls_with_config(request, stream, Some(config), connector);
        let mut events = Events::with_capacity(4);
        loop {
            match attempt {
                Ok((socket, _)) => return Ok(socket),
                Err(HandshakeError::Failure(error)) => return Err(classify(error)),
                Err(HandshakeError::Interrupted(midway)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(TransportError::from_message("the mailbox server did not answer in time"));
                    }
                    self.wait(&mut events, Some(left))?;
                    attempt = midway.handshake();
                }
            }
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<(), TransportError> {
        match self.poll.poll(events, timeout) {
            Err(error) if error.kind() != ErrorKind::Interrupted => Err(TransportError::new(error)),
            _ => Ok(()),
        }
    }

    /// Sends what the loop hands over and passes back what arrives, each as
    /// soon as it can: the socket and the loop's waker both wake the thread.
    fn serve(&mut self, socket: &mut Socket) -> Result<(), TransportError> {
        let mut events = Events::with_capacity(4);
        loop {
            loop {
                match self.frames.try_recv() {
                    Ok(Some(frame)) => match socket.send(Message::text(frame)) {
                        // Queued: sent by a later flush.
                        Err(error) if would_block(&error) => {}
                        sent => sent.map_err(classify)?,
                    },
                    Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                        let _ = socket.close(None);
                        let _ = socket.flush();
                        return Ok(());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            match socket.flush() {
                Err(error) if !would_block(&error) => return Err(classify(error)),
                _ => {}
            }
            loop {
                match socket.read() {
                    Ok(Message::Text(text)) => self.pass(text.as_bytes())?,
                    Ok(Message::Binary(bytes)) => self.pass(&bytes)?,
                    Ok(Message::Close(_)) => {
                        return Err(TransportError::from_message("the mailbox server closed the connection"))
                    }
                    Ok(_) => {}
                    Err(error) if would_block(&error) => break,
                    Err(error) => return Err(classify(error)),
                }
            }
            self.wait(&mut events, None)?;
        }
    }

    fn pass(&self, frame: &[u8]) -> Result<(), TransportError> {
        // The loop is gone: nobody to tell, so stop.
        self.signals
            .send(Signal::Frame(self.number, frame.to_vec()))
            .map_err(|_| TransportError::from_message("the exchange stopped"))
    }
}

impl std::fmt::Debug for MailboxDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxDriver").field("exchange", &self.exchange).finish_non_exhaustive()
    }
}
