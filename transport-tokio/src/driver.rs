//! The driver task: one tokio task per exchange sends what the core asks
//! for (concurrently: a long-poll and a control request may be in flight
//! together), feeds back the answers, sleeps until the core's next deadline,
//! and publishes progress to every waiter through a watch channel.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use wormhole_sync_core::wire::MAX_RESPONSE_BYTES;
use wormhole_sync_core::{Code, Error, Exchange, RequestId, Timestamp, Verifier, DEFAULT_RENDEZVOUS_URL};

/// Longest time spent closing the channel once the outcome is known.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Shortest HTTP timeout given to a request, even right at the deadline.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The HTTP client every exchange of this process shares unless given another.
pub(crate) fn shared_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("wormhole-sync-tokio/", env!("CARGO_PKG_VERSION")))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client with default settings builds")
        })
        .clone()
}

/// What waiters can see.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Status {
    pub(crate) code: Option<Code>,
    pub(crate) verifier: Option<Verifier>,
    pub(crate) outcome: Option<Result<Vec<u8>, Error>>,
    /// The driver task has ended (outcome known and channel closed, or given up).
    pub(crate) finished: bool,
}

pub(crate) struct Shared {
    exchange: Mutex<Exchange>,
    status: watch::Sender<Status>,
    wake: Notify,
    stop: AtomicBool,
    handles: AtomicUsize,
    client: reqwest::Client,
}

/// A running exchange: `Clone + Send + Sync`. Dropping the last handle
/// stops the exchange (like [`Handle::stop`]).
pub struct Handle {
    shared: Arc<Shared>,
}

/// Starts the driver task for `exchange` on the current tokio runtime.
pub(crate) fn start(exchange: Exchange, client: reqwest::Client) -> Handle {
    let (status, _) = watch::channel(Status::default());
    let shared = Arc::new(Shared {
        exchange: Mutex::new(exchange),
        status,
        wake: Notify::new(),
        stop: AtomicBool::new(false),
        handles: AtomicUsize::new(1),
        client,
    });
    tokio::spawn(drive(shared.clone()));
    Handle { shared }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Handle { shared: self.shared.clone() }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.stop.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.exchange.lock().expect("exchange lock").fmt(f)
    }
}

impl Handle {
    /// Waits until `pick` finds an answer in the published status.
    fn wait<T: Send + 'static>(
        &self,
        pick: impl Fn(&Status) -> Option<Result<T, Error>> + Send + Sync + 'static,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let mut status = self.shared.status.subscribe();
        async move {
            let settled = |s: &Status| pick(s).or_else(|| s.finished.then(|| Err(Error::Cancelled)));
            match status.wait_for(|s| settled(s).is_some()).await {
                Ok(s) => settled(&s).expect("checked by wait_for"),
                Err(_) => Err(Error::Cancelled),
            }
        }
    }

    /// Resolves to the invitation code once the channel is allocated (a
    /// receiver's code at once), or to the error that ended the exchange.
    /// Any number of tasks may await it, before or after it is known.
    pub fn when_code(&self) -> impl Future<Output = Result<Code, Error>> + Send + 'static {
        self.wait(|s| match (&s.code, &s.outcome) {
            (Some(code), _) => Some(Ok(code.clone())),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            _ => None,
        })
    }

    /// Resolves to the verifier once the keys are agreed.
    pub fn when_verifier(&self) -> impl Future<Output = Result<Verifier, Error>> + Send + 'static {
        self.wait(|s| match (&s.verifier, &s.outcome) {
            (Some(verifier), _) => Some(Ok(verifier.clone())),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            _ => None,
        })
    }

    /// Resolves to the peer's data, or to the error (`WrongCode`,
    /// `Timeout`, `Crowded`, `Cancelled`, ...). Every waiter gets the result.
    pub fn when_data(&self) -> impl Future<Output = Result<Vec<u8>, Error>> + Send + 'static {
        self.wait(|s| s.outcome.clone())
    }

    /// Releases our data after a person confirmed the verifier (with
    /// `confirm_verifier(true)`).
    pub fn accept_verifier(&self) -> Result<(), Error> {
        self.decide(true)
    }

    /// Refuses the verifier: the channel is closed and both sides fail with
    /// a "declined" error.
    pub fn reject_verifier(&self) -> Result<(), Error> {
        self.decide(false)
    }

    fn decide(&self, accept: bool) -> Result<(), Error> {
        let decided = self.shared.exchange.lock().expect("exchange lock").confirm_verifier(now(), accept);
        if !decided {
            return Err(Error::InvalidConfig("no verifier is waiting for a verdict".into()));
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The whole state as printable JSON, also while running; restore it
    /// with `from_serialized` and `start()`. **It contains secrets.**
    pub fn serialize(&self) -> Vec<u8> {
        self.shared.exchange.lock().expect("exchange lock").serialize()
    }

    /// Stops the exchange: every waiter gets [`Error::Cancelled`] (unless
    /// it already ended), the channel is closed so the peer fails with
    /// `PeerClosed`, and the driver task ends. Resolves once it has.
    pub fn stop(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let mut status = self.shared.status.subscribe();
        async move {
            let _ = status.wait_for(|s| s.finished).await;
        }
    }
}

fn publish(shared: &Shared, exchange: &mut Exchange, finished: bool) {
    while exchange.poll_event().is_some() {} // The status below carries the same news.
    let current = Status {
        code: exchange.code().cloned(),
        verifier: exchange.verifier().cloned(),
        outcome: exchange.outcome().map(|o| o.map(<[u8]>::to_vec).map_err(Clone::clone)),
        finished,
    };
    shared.status.send_if_modified(|status| {
        let changed = *status != current;
        *status = current;
        changed
    });
}

type Answer = (RequestId, Result<(u16, Vec<u8>), String>);

async fn drive(shared: Arc<Shared>) {
    let mut requests: JoinSet<Answer> = JoinSet::new();
    let mut cancelled = false;
    let mut give_up_at: Option<tokio::time::Instant> = None;
    loop {
        let (due, wake) = {
            let mut exchange = shared.exchange.lock().expect("exchange lock");
            let at = now();
            exchange.start(at);
            if shared.stop.load(Ordering::Acquire) && !cancelled {
                exchange.cancel(at);
                cancelled = true;
            }
            exchange.handle_timeout(at);
            let base =
                exchange.config().rendezvous().unwrap_or(DEFAULT_RENDEZVOUS_URL).trim_end_matches('/').to_string();
            let deadline = exchange.deadline().filter(|_| exchange.outcome().is_none());
            let due: Vec<_> = std::iter::from_fn(|| exchange.poll_transmit(at))
                .map(|t| {
                    let mut timeout = t.timeout();
                    if let Some(deadline) = deadline {
                        timeout = timeout.min(deadline.saturating_since(at).max(MIN_REQUEST_TIMEOUT));
                    }
                    (t.id(), format!("{base}{}", t.path()), t.body(), timeout)
                })
                .collect();
            if exchange.outcome().is_some() && give_up_at.is_none() {
                give_up_at = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            let done = exchange.is_finished() || give_up_at.is_some_and(|t| tokio::time::Instant::now() >= t);
            publish(&shared, &mut exchange, done);
            if done {
                break;
            }
            let wake = exchange
                .poll_timeout()
                .map(|t| tokio::time::Instant::now() + t.saturating_since(now()))
                .into_iter()
                .chain(give_up_at)
                .min();
            (due, wake)
        };
        for (id, url, body, timeout) in due {
            let client = shared.client.clone();
            requests.spawn(async move { (id, send(&client, &url, body, timeout).await) });
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            Some(joined) = requests.join_next(), if !requests.is_empty() => {
                if let Ok((id, answer)) = joined {
                    let mut exchange = shared.exchange.lock().expect("exchange lock");
                    match answer {
                        Ok((status, body)) => exchange.handle_response(now(), id, status, &body),
                        Err(detail) => exchange.handle_transport_error(now(), id, &detail),
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(far)) => {}
            _ = shared.wake.notified() => {}
        }
    }
    requests.abort_all();
}

/// One HTTP request; a failure without an answer becomes a description.
async fn send(client: &reqwest::Client, url: &str, body: Vec<u8>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let mut response = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err("the server's answer was too large".to_string());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err("the server did not answer in time".into()))
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text.chars().take(200).collect()
}
