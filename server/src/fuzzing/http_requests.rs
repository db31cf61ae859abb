//! The server's HTTP handling in process: fuzzer-built HTTP/1.1 requests
//! (methods, paths, headers, bodies, wrong lengths, trailing garbage) go
//! through the same connection code as a TCP client's, over an in-memory
//! pipe, and every answer is checked:
//!
//! - it is well-formed HTTP/1.1 and never a 500;
//! - an error answer's body is JSON naming a documented error code;
//! - a successful answer is JSON, except `/metrics`' OpenMetrics text and
//!   the front page's plain text;
//! - the server stops answering within a bound (no hang).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormhole_sync_core::rendezvous::RendezvousSnapshot;
use wormhole_sync_core::wire::ErrorCode;

use crate::{http, ServerConfig, Storage};

#[derive(Arbitrary, Debug)]
struct Input {
    requests: Vec<HttpRequest>,
    /// Bytes after the last request: a truncated or malformed one.
    trailer: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct HttpRequest {
    method: u8,
    path: Path,
    headers: Vec<(u8, String)>,
    body: Body,
    /// Declares another length than the body has.
    length: Option<u16>,
    chunked: bool,
}

#[derive(Arbitrary, Debug)]
enum Path {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    /// A protocol request, with fields picked from a small set.
    Template {
        kind: u8,
        appid: u8,
        side: u8,
        channel: u32,
        phase: u8,
        body: String,
        wait: u32,
        after: u32,
    },
    Raw(Vec<u8>),
}

// No HEAD: its answers declare a length and carry no body, which this
// reader cannot tell apart without matching answers to requests.
const METHODS: [&str; 7] = ["POST", "GET", "PUT", "PATCH", "OPTIONS", "DELETE", "CONNECT"];
const PATHS: [&str; 10] =
    ["/v1/allocate", "/v1/join", "/v1/post", "/v1/fetch", "/v1/close", "/health", "/metrics", "/v1/", "/", "/v1"];
const HEADERS: [&str; 9] = [
    "content-type",
    "forwarded",
    "x-forwarded-for",
    "connection",
    "expect",
    "host",
    "accept-encoding",
    "upgrade",
    "x-other",
];

impl HttpRequest {
    fn write(&self, out: &mut Vec<u8>) {
        let method = METHODS[usize::from(self.method) % METHODS.len()];
        let path = match &self.path {
            Path::Known(n) => PATHS[usize::from(*n) % PATHS.len()].to_string(),
            Path::Other(p) => p.clone(),
        };
        let body = self.body.bytes();
        out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: fuzz\r\n").as_bytes());
        if !self.headers.iter().any(|(n, _)| usize::from(*n) % HEADERS.len() == 0) {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
        for (name, value) in self.headers.iter().take(8) {
            let name = HEADERS[usize::from(*name) % HEADERS.len()];
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            let length = self.length.map_or(body.len(), usize::from);
            out.extend_from_slice(format!("content-length: {length}\r\n\r\n").as_bytes());
            out.extend_from_slice(&body);
        }
    }
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Raw(bytes) => bytes.clone(),
            Body::Template { kind, appid, side, channel, phase, body, wait, after } => {
                let appid = ["app", "", "other/app"][usize::from(*appid) % 3];
                let side = ["s1", "s2", "s3", ""][usize::from(*side) % 4];
                let phase = ["pake", "data", ""][usize::from(*phase) % 3];
                let channel = channel % 20;
                let mood = ["happy", "scary", "x"][usize::from(*kind) % 3];
                let json = match kind % 5 {
                    0 => serde_json::json!({"appid": appid, "side": side}),
                    1 => serde_json::json!({"appid": appid, "side": side, "channel": channel, "create": wait % 2 == 0}),
                    2 => {
                        serde_json::json!({"appid": appid, "side": side, "channel": channel, "phase": phase, "body": body})
                    }
                    3 => {
                        serde_json::json!({"appid": appid, "side": side, "channel": channel, "after": after % 8, "wait_ms": wait % 100})
                    }
                    _ => serde_json::json!({"appid": appid, "side": side, "channel": channel, "mood": mood}),
                };
                json.to_string().into_bytes()
            }
        }
    }
}

/// One server state for every input (as one long-running server sees
/// every client), with short long-polls so a fetch cannot stall the fuzzer.
struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let mut config = ServerConfig::default().without_rate_limits();
        config.rendezvous.max_wait = Duration::from_millis(20);
        config.body_timeout = Duration::from_millis(200);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let app = crate::shared_state(config, Storage::memory(), RendezvousSnapshot::new(Vec::new()))
            .expect("an empty state loads");
        Harness { router: http::router(Arc::clone(&app)), runtime }
    })
}

/// Sends the fuzzer's requests down one connection; panics with the broken
/// rule if an answer breaks one.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut wire = Vec::new();
    for request in input.requests.iter().take(8) {
        request.write(&mut wire);
    }
    wire.extend_from_slice(&input.trailer);
    let harness = harness();
    let answers = harness.runtime.block_on(exchange(harness.router.clone(), wire));
    check_answers(&answers);
}

/// Writes `wire` to a fresh connection, closes the sending half, and reads
/// every answer until the server closes.
async fn exchange(router: axum::Router, wire: Vec<u8>) -> Vec<u8> {
    use hyper_util::rt::{TokioIo, TokioTimer};

    let (mut client, server) = tokio::io::duplex(1 << 20);
    let peer: SocketAddr = "192.0.2.1:4000".parse().expect("an address");
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(1));
    let stream = crate::write_deadline::WriteDeadline::new(server, Duration::from_secs(1));
    let stream = crate::error_answers::JsonErrorAnswers::new(stream);
    let service = crate::net::connection_service(router, peer, None);
    let served = tokio::spawn(async move {
        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
    });
    let mut answers = Vec::new();
    let talk = async {
        client.write_all(&wire).await?;
        client.shutdown().await?;
        client.read_to_end(&mut answers).await
    };
    let finished = tokio::time::timeout(Duration::from_secs(5), talk).await;
    assert!(finished.is_ok(), "the server neither answered nor closed within 5 s");
    served.abort();
    answers
}

fn check_answers(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("an answer that is not HTTP/1.1: {other:?} in {:?}", String::from_utf8_lossy(bytes)),
        };
        let status = response.code.expect("a parsed status");
        assert_ne!(status, 500, "a 500: {:?}", String::from_utf8_lossy(bytes));
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).expect("every answer has a length");
        let content_type = header("content-type").unwrap_or_default();
        let body = &bytes[head..head + length];
        bytes = &bytes[head + length..];
        if content_type.starts_with("application/openmetrics-text") && status == 200 {
            continue;
        }
        if content_type.starts_with("text/plain") && status == 200 {
            continue; // The front page, for a person.
        }
        assert_eq!(content_type, "application/json", "status {status} without a JSON body");
        let value: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
        if status >= 400 {
            let code = value.get("error").and_then(|e| e.as_str()).expect("an error names its code");
            assert!(ErrorCode::from_name(code).is_some(), "undocumented error code {code:?}");
        }
    }
}
