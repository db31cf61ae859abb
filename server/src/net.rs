//! The network layer: the listening socket, the accept loop with its
//! connection caps, TLS, header and write deadlines, graceful shutdown,
//! and the service each connection's requests go to. It knows only an
//! `axum::Router`, never a front end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use wormhole_sync_core::wire::{ErrorCode, WireError};

use crate::error_answers::JsonErrorAnswers;
use crate::write_deadline::WriteDeadline;
use crate::{connections, TlsReloader};

/// Connections the kernel queues before the server accepts them. Tokio's
/// default (1,024) overflowed when thousands of clients connected at once,
/// and the kernel dropped the rest of the burst; the kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8_192;

pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restarted server binds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The smallest header buffer hyper accepts.
const MIN_HEADER_BUFFER: usize = 8 * 1024;

/// How long a connection may keep the server waiting, and how much it may
/// make it read before a request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Most bytes of request line and headers buffered (hyper answers 431,
    /// which becomes `headers-too-large`).
    pub(crate) max_header_bytes: usize,
    /// For a request's headers, also while idle between requests.
    pub(crate) header: Duration,
    /// For any write to make progress: a client that stops reading is closed.
    pub(crate) write: Duration,
    /// For in-flight requests to finish once shutdown begins.
    pub(crate) shutdown_grace: Duration,
}

/// Accepts connections (within the caps of `connections`) until
/// `shutdown`, then lets each finish its in-flight request, for at most the
/// shutdown grace. Unlike `axum::serve`, hyper gets a timer, so a
/// connection that sends no request headers in time (idle keep-alive
/// included) is closed instead of held forever, and every write has a
/// timeout.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    timeouts: ConnectionLimits,
    connections: Arc<connections::Connections>,
    tls: Option<TlsReloader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};

    // HTTP/1.1 only, built directly: the version-sniffing `auto` builder keeps
    // state for HTTP/2 in every connection, which waiting clients pay for.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    // hyper reads headers into one buffer and answers 431 once it is full
    // without a whole head (its default would read about 400 KB first).
    builder.max_buf_size(timeouts.max_header_bytes.max(MIN_HEADER_BUFFER));
    let builder = Arc::new(builder);
    // Shutdown is signalled to every connection; each holds a sender of
    // `finished`, so the channel closes once the last one has ended.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (finished, mut all_finished) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match connections.admit(peer.ip()) {
            Ok(admitted) => Arc::new(admitted),
            Err(refusal) => {
                tokio::spawn(turn_away(stream, refusal));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The deadline below TLS (every byte on the wire counts), hyper's own
        // answers made JSON above it (where they are still plain HTTP).
        let stream = WriteDeadline::new(stream, timeouts.write);
        // A WebSocket keeps the admission (and so its place under the caps)
        // after the upgrade, for as long as it lives.
        let service = connection_service(router.clone(), peer, Some(admitted.clone()));
        let (builder, stopped, finished) = (builder.clone(), stopped.clone(), finished.clone());
        let acceptor = tls.as_ref().map(TlsReloader::acceptor);
        tokio::spawn(async move {
            let ended = match acceptor {
                None => {
                    let stream = TokioIo::new(JsonErrorAnswers::new(stream));
                    serve_until_stopped(&builder, stream, service, stopped).await
                }
                Some(acceptor) => {
                    // The handshake gets the time a request's headers get.
                    match tokio::time::timeout(timeouts.header, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let stream = TokioIo::new(JsonErrorAnswers::new(stream));
                            serve_until_stopped(&builder, stream, service, stopped).await
                        }
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop((admitted, finished));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(finished);
    if tokio::time::timeout(timeouts.shutdown_grace, all_finished.recv()).await.is_err() {
        tracing::warn!(open = connections.open(), "shutdown grace over: leaving the connections still open");
    }
    Ok(())
}

/// Serves one connection's requests (a WebSocket upgrade included) until it
/// ends, or until `stopped` turns true: then the request in flight is
/// finished and the connection closed.
async fn serve_until_stopped<I, S, B>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return ended,
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// The service one connection's requests go to: the router, told the
/// peer's address, with a panic failing only its own request (a 500).
pub(crate) fn connection_service(
    router: axum::Router,
    peer: SocketAddr,
    admitted: Option<Arc<connections::Admitted>>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    use futures_util::FutureExt as _;
    use tower::ServiceExt as _;

    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(admitted) = &admitted {
            request.extensions_mut().insert(admitted.clone());
        }
        let answer = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::error!("a request handler panicked; answered 500");
                    Ok(internal_error())
                }
            }
        }
    })
}

/// An answer of `status` with a JSON body (the front ends' answers, and
/// the network layer's own).
pub(crate) fn json(status: u16, body: Vec<u8>) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse as _;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The answer to a request whose handler panicked.
fn internal_error() -> axum::response::Response {
    let e = WireError::new(ErrorCode::Internal, "the server failed on this request");
    json(e.http_status(), e.to_json())
}

/// Answers a connection over a cap with the error, then closes it.
async fn turn_away(mut stream: tokio::net::TcpStream, refusal: connections::Refusal) {
    use tokio::io::AsyncWriteExt as _;
    let e = match refusal {
        connections::Refusal::Full => {
            WireError::new(ErrorCode::ServerFull, "the server holds as many connections as it allows")
        }
        connections::Refusal::TooManyFromAddress => {
            WireError::new(ErrorCode::RateLimited, "too many connections from this address")
        }
    };
    let body = e.to_json();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        e.http_status(),
        if e.http_status() == 429 { "Too Many Requests" } else { "Service Unavailable" },
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use parking_lot::Mutex;
    use tokio::sync::oneshot;

    use super::*;
    use crate::client_address;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_panicking_handler_fails_only_its_own_request() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shared = Arc::new(Mutex::new(0u32));
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get({
                    let shared = shared.clone();
                    move || async move {
                        let _held = shared.lock();
                        if _held.checked_add(0).is_some() {
                            panic!("a bug in a handler, with a lock held");
                        }
                        "unreachable"
                    }
                }),
            )
            .route(
                "/ok",
                axum::routing::get({
                    let shared = shared.clone();
                    move || async move {
                        *shared.lock() += 1;
                        "fine"
                    }
                }),
            );
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let timeouts = ConnectionLimits {
            header: Duration::from_secs(5),
            write: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
        };
        let connections = connections::Connections::new(0, 0, client_address::ClientAddresses::default());
        let served = runtime.spawn(serve_connections(listener, router, timeouts, connections, None, async move {
            let _ = stopped.await;
        }));
        let boom = get(addr, "/boom");
        assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
        assert!(boom.contains(r#""error":"internal""#), "{boom}");
        for _ in 0..3 {
            let ok = get(addr, "/ok");
            assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("fine"), "{ok}");
        }
        assert_eq!(*shared.lock(), 3, "the lock the panic held is usable");
        let _ = stop.send(());
        runtime.block_on(served).unwrap().unwrap();
    }
}
