//! Embedding the core in a hand-written event loop: plain non-blocking
//! `std::net` sockets, one thread, no async runtime. An initiator and a
//! receiver run side by side in the same loop against a real server.
//!
//! `cargo run -p wormhole-sync-server` in one terminal, then
//! `cargo run -p wormhole-sync-core --example event_loop [HOST:PORT]`.
//!
//! Each request is a small state machine on its own socket (write the
//! request, read until the response is complete); the loop polls every
//! socket, feeds finished answers to the exchanges, and sleeps until the
//! earliest of their `poll_timeout()`s when nothing is ready.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use rand_core::{OsRng, RngCore};
use wormhole_sync_core::{Config, Event, Exchange, RequestId, Timestamp, TransportError};

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// One HTTP/1.1 request in flight on a non-blocking socket.
struct InFlight {
    side: usize,
    id: RequestId,
    stream: TcpStream,
    outgoing: Vec<u8>,
    written: usize,
    incoming: Vec<u8>,
    give_up_at: Instant,
}

enum Progress {
    Pending,
    Answered(u16, Vec<u8>),
    Failed(String),
}

impl InFlight {
    fn poll(&mut self) -> Progress {
        if Instant::now() >= self.give_up_at {
            return Progress::Failed("no answer in time".into());
        }
        while self.written < self.outgoing.len() {
            match self.stream.write(&self.outgoing[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) => return Progress::Failed(e.to_string()),
            }
        }
        let mut buffer = [0u8; 4096];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return self.parse().unwrap_or(Progress::Failed("connection closed".into())),
                Ok(n) => self.incoming.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return self.parse().unwrap_or(Progress::Pending),
                Err(e) => return Progress::Failed(e.to_string()),
            }
        }
    }

    /// The response, once the head and `Content-Length` bytes of body are in.
    fn parse(&self) -> Option<Progress> {
        let end = self.incoming.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.incoming[..end]).to_ascii_lowercase();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())?;
        let body = self.incoming.get(end..end + length)?;
        Some(Progress::Answered(status, body.to_vec()))
    }
}

fn main() {
    let server: SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4000".into()).parse().expect("HOST:PORT");
    let seed = || {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        seed
    };
    let config = Config::new("example.com/app1").expect("valid appid");
    let mut sides: Vec<(&str, Exchange)> = vec![(
        "initiator",
        Exchange::initiator(config.clone(), b"initiator's data".to_vec(), seed()).expect("small data"),
    )];
    sides[0].1.start(now());
    let mut in_flight: Vec<InFlight> = Vec::new();

    while !sides.iter().all(|(_, e)| e.is_finished()) {
        // 1. Start every request the exchanges want now.
        for (side, (_, exchange)) in sides.iter_mut().enumerate() {
            while let Some(t) = exchange.poll_transmit(now()) {
                let body = t.body();
                let head = format!(
                    "POST {} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    t.path(),
                    body.len()
                );
                let connected = TcpStream::connect_timeout(&server, Duration::from_secs(2));
                match connected.and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                    Ok(stream) => in_flight.push(InFlight {
                        side,
                        id: t.id(),
                        stream,
                        outgoing: [head.into_bytes(), body].concat(),
                        written: 0,
                        incoming: Vec::new(),
                        give_up_at: Instant::now() + t.timeout(),
                    }),
                    Err(e) => exchange.handle_transport_error(now(), t.id(), TransportError::new(e)),
                }
            }
        }
        // 2. Make progress on every socket; hand finished answers back.
        let mut still = Vec::new();
        for mut request in in_flight.drain(..) {
            let exchange = &mut sides[request.side].1;
            match request.poll() {
                Progress::Pending => still.push(request),
                Progress::Answered(status, body) => exchange.handle_response(now(), request.id, status, &body),
                Progress::Failed(why) => {
                    exchange.handle_transport_error(now(), request.id, TransportError::from_message(&why))
                }
            }
        }
        in_flight = still;
        // 3. Act on events; the receiver "types" the initiator's code.
        let mut typed = None;
        for (name, exchange) in sides.iter_mut() {
            while let Some(event) = exchange.poll_event() {
                match event {
                    Event::Code(code) if *name == "initiator" => {
                        println!("{name}: Invitation Code: {code}");
                        typed = Some(code);
                    }
                    Event::Code(_) => {}
                    Event::Verifier(v) => println!("{name}: verifier {v}"),
                    Event::Outcome(Ok(data)) => println!("{name}: Their data: {}", String::from_utf8_lossy(&data)),
                    Event::Outcome(Err(error)) => println!("{name}: failed: {error}"),
                    _ => {}
                }
            }
        }
        if let Some(code) = typed {
            let mut receiver =
                Exchange::receiver(config.clone(), code, b"receiver's data".to_vec(), seed()).expect("small");
            receiver.start(now());
            sides.push(("receiver", receiver));
        }
        // 4. Sleep until a socket may be ready or an exchange's deadline comes.
        let wake = sides.iter().filter_map(|(_, e)| e.poll_timeout()).min();
        let until_wake = wake.map_or(Duration::from_millis(5), |w| w.saturating_since(now()));
        let nap = if in_flight.is_empty() { until_wake } else { until_wake.min(Duration::from_millis(2)) };
        std::thread::sleep(nap);
        for (_, exchange) in sides.iter_mut() {
            exchange.handle_timeout(now());
        }
    }
}
