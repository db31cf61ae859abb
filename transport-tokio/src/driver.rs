//! The driver task: one tokio task per exchange sends what the core asks
//! for (concurrently: a long-poll and a control request may be in flight
//! together), feeds back the answers, sleeps until the core's next deadline,
//! and publishes the news to every waiter through a watch channel.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use wormhole_sync_core::magic_wormhole::MailboxExchange;
use wormhole_sync_core::wire::MAX_RESPONSE_BYTES;
use wormhole_sync_core::{
    ApiMisuse, Code, Error, Event, Exchange, Progress, RequestId, ServerTrouble, Timestamp, Transmit, TransportError,
    Verifier,
};

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
struct Status {
    news: Progress,
    /// The driver task has ended (outcome known and channel closed, or given up).
    finished: bool,
}

/// What a driver and its handles need of the state machine they drive: a
/// transcribe-mode exchange (over HTTP, [`drive`]) or a magic-wormhole one
/// (over a WebSocket, [`crate::mailbox::drive`]). Each driver loop knows
/// its machine's type; handles see this common face.
pub(crate) trait Machine: std::fmt::Debug + Send + 'static {
    fn start(&mut self, at: Timestamp);
    fn cancel(&mut self, at: Timestamp);
    fn handle_timeout(&mut self, at: Timestamp);
    fn has_outcome(&self) -> bool;
    fn is_finished(&self) -> bool;
    fn poll_timeout(&self) -> Option<Timestamp>;
    fn poll_event(&mut self) -> Option<Event>;
    fn serialize(&self) -> Vec<u8>;
    fn server_trouble(&self) -> Option<ServerTrouble>;
    /// A person's answer to the verifier; false when none is pending.
    fn confirm_verifier(&mut self, at: Timestamp, accept: bool) -> bool;
}

/// Implements [`Machine`] by calling the machine's own methods of the same names.
macro_rules! machine {
    ($machine:ty, |$m:ident, $at:ident, $accept:ident| $confirm:expr) => {
        impl Machine for $machine {
            fn start(&mut self, at: Timestamp) {
                <$machine>::start(self, at)
            }
            fn cancel(&mut self, at: Timestamp) {
                <$machine>::cancel(self, at)
            }
            fn handle_timeout(&mut self, at: Timestamp) {
                <$machine>::handle_timeout(self, at)
            }
            fn has_outcome(&self) -> bool {
                <$machine>::has_outcome(self)
            }
            fn is_finished(&self) -> bool {
                <$machine>::is_finished(self)
            }
            fn poll_timeout(&self) -> Option<Timestamp> {
                <$machine>::poll_timeout(self)
            }
            fn poll_event(&mut self) -> Option<Event> {
                <$machine>::poll_event(self)
            }
            fn serialize(&self) -> Vec<u8> {
                <$machine>::serialize(self)
            }
            fn server_trouble(&self) -> Option<ServerTrouble> {
                <$machine>::server_trouble(self)
            }
            fn confirm_verifier(&mut self, $at: Timestamp, $accept: bool) -> bool {
                let $m = self;
                $confirm
            }
        }
    };
}

machine!(Exchange, |exchange, at, accept| exchange.confirm_verifier(at, accept));
// The magic-wormhole flavour shows the verifier but has no confirmation step.
machine!(MailboxExchange, |_exchange, _at, _accept| false);

/// Takes in every pending event of `machine`; true if there was one.
fn drain(machine: &mut impl Machine, news: &mut Progress) -> bool {
    let mut any = false;
    while let Some(event) = machine.poll_event() {
        news.record(event);
        any = true;
    }
    any
}

/// What a handle and its driver task share; `M` is the machine (a
/// concrete type for the driver, `dyn Machine` for handles).
pub(crate) struct Shared<M: ?Sized> {
    status: watch::Sender<Status>,
    pub(crate) wake: Notify,
    stop: AtomicBool,
    handles: AtomicUsize,
    /// The state was handed out: the last handle's drop leaves the channel
    /// open for whoever restores it.
    saved: AtomicBool,
    /// Makes the driver task panic, to test what waiters then see.
    #[cfg(test)]
    panic: AtomicBool,
    exchange: Mutex<M>,
}

impl<M: ?Sized> Shared<M> {
    /// The exchange; a panic elsewhere while it was locked does not make it
    /// unusable (the exchange is only changed through its own methods).
    pub(crate) fn exchange(&self) -> MutexGuard<'_, M> {
        self.exchange.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running exchange: `Clone + Send + Sync`. It runs until it ends, while
/// any handle or any future from `when_*` is alive. Dropping the last of
/// them stops it like [`stop`](Handle::stop), closing the channel, unless the
/// state was serialized (the saved copy may continue it).
pub struct Handle {
    shared: Arc<Shared<dyn Machine>>,
}

/// Starts `drive`, the driver task for `exchange`, on the current tokio runtime.
pub(crate) fn start<M: Machine, F>(exchange: M, drive: impl FnOnce(DriverGuard<M>) -> F) -> Handle
where
    F: Future<Output = ()> + Send + 'static,
{
    let (status, _) = watch::channel(Status::default());
    let shared = Arc::new(Shared {
        exchange: Mutex::new(exchange),
        status,
        wake: Notify::new(),
        stop: AtomicBool::new(false),
        handles: AtomicUsize::new(1),
        saved: AtomicBool::new(false),
        #[cfg(test)]
        panic: AtomicBool::new(false),
    });
    tokio::spawn(drive(DriverGuard(shared.clone())));
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
        f.debug_tuple("Handle").field(&*self.shared.exchange()).finish()
    }
}

impl Handle {
    /// Waits until `pick` finds an answer in the news, keeping the exchange
    /// alive meanwhile (the future holds a handle).
    fn wait<T: Send + 'static>(
        &self,
        pick: impl Fn(&Progress) -> Option<Result<T, Error>> + Send + Sync + 'static,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let keep_alive = self.clone();
        let mut status = self.shared.status.subscribe();
        async move {
            let settled = |s: &Status| pick(&s.news).or_else(|| s.finished.then(|| Err(Error::Cancelled)));
            let result = match status.wait_for(|s| settled(s).is_some()).await {
                Ok(s) => settled(&s).expect("checked by wait_for"),
                Err(_) => Err(Error::Cancelled),
            };
            drop(keep_alive);
            result
        }
    }

    /// Resolves to the invitation code once the channel is allocated (a
    /// receiver's code at once), or to the error that ended the exchange.
    /// Any number of tasks may await it, before or after it is known.
    pub fn when_code(&self) -> impl Future<Output = Result<Code, Error>> + Send + 'static {
        self.wait(Progress::code_result)
    }

    /// Resolves to the verifier once the keys are agreed.
    pub fn when_verifier(&self) -> impl Future<Output = Result<Verifier, Error>> + Send + 'static {
        self.wait(Progress::verifier_result)
    }

    /// Resolves to the peer's data, or to the error (`WrongCode`,
    /// `Timeout`, `Crowded`, `Cancelled`, ...). Every waiter gets the result.
    pub fn when_data(&self) -> impl Future<Output = Result<Vec<u8>, Error>> + Send + 'static {
        self.wait(Progress::data)
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
        if !self.shared.exchange().confirm_verifier(now(), accept) {
            return Err(ApiMisuse::NoVerifierPending.into());
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Why the server has not answered lately, while the exchange retries
    /// (to show a person "cannot reach the server for 40 s: connection
    /// refused" rather than nothing): `None` while requests are answered,
    /// and once there is an outcome.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), wormhole_sync_tokio::Error> {
    /// use wormhole_sync_tokio::transcribe::Initiator;
    ///
    /// let initiator = Initiator::new("example.com/app1", b"data".to_vec())?.start();
    /// let code = initiator.when_code();
    /// tokio::pin!(code);
    /// loop {
    ///     tokio::select! {
    ///         code = &mut code => { println!("{}", code?); break; }
    ///         _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
    ///             if let Some(trouble) = initiator.server_trouble() {
    ///                 eprintln!("retrying: {}", trouble.cause);
    ///             }
    ///         }
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn server_trouble(&self) -> Option<ServerTrouble> {
        self.shared.exchange().server_trouble()
    }

    /// The whole state as printable JSON, also while running; restore it
    /// with `from_serialized` and `start()`. **It contains secrets.** Once
    /// serialized, dropping the last handle stops the driver without
    /// closing the channel: the saved copy may continue it.
    pub fn serialize(&self) -> Vec<u8> {
        self.shared.saved.store(true, Ordering::Relaxed);
        self.shared.exchange().serialize()
    }

    /// Stops the exchange: every waiter gets [`Error::Cancelled`] (unless
    /// it already ended), the channel is closed so the peer fails with
    /// `PeerClosed`, and the driver task ends. Resolves once it has.
    pub fn stop(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.saved.store(false, Ordering::Relaxed);
        self.cancel();
        self.when_finished()
    }

    /// Stops the exchange at once, as dropping its last handle does, from
    /// any thread and without awaiting: every waiter gets
    /// [`Error::Cancelled`] (unless it already ended) and the channel is
    /// closed, unless the state was [serialized](Self::serialize) (then it
    /// is left open for the saved copy). Await
    /// [`when_finished`](Self::when_finished) for the close to be sent.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), wormhole_sync_tokio::Error> {
    /// use wormhole_sync_tokio::transcribe::Initiator;
    ///
    /// let initiator = Initiator::new("example.com/app1", b"data".to_vec())?.start();
    /// let waiting = tokio::spawn(initiator.when_data());
    /// initiator.cancel();
    /// assert_eq!(waiting.await.unwrap(), Err(wormhole_sync_tokio::Error::Cancelled));
    /// initiator.when_finished().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    /// Resolves once the driver task has ended: the outcome is known and
    /// the channel closed (or its close given up), or the exchange was
    /// stopped. Await it before the runtime shuts down (the end of `main`)
    /// so that the close reaches the server.
    pub fn when_finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let keep_alive = self.clone();
        let mut status = self.shared.status.subscribe();
        async move {
            let _ = status.wait_for(|s| s.finished).await;
            drop(keep_alive);
        }
    }
}

/// Owned by the driver task: however the task ends (returning, panicking,
/// or dropped with its runtime), waiters are told, never left hanging.
pub(crate) struct DriverGuard<M>(pub(crate) Arc<Shared<M>>);

impl<M> Drop for DriverGuard<M> {
    fn drop(&mut self) {
        let why = if std::thread::panicking() {
            "the driver task panicked (a bug: please report it)"
        } else {
            "the driver task was dropped (its tokio runtime shut down)"
        };
        self.0.status.send_if_modified(|status| {
            if status.finished {
                return false;
            }
            if status.news.outcome().is_none() {
                status
                    .news
                    .record(wormhole_sync_core::Event::Outcome(Err(Error::DriverStopped { detail: why.into() })));
            }
            status.finished = true;
            true
        });
    }
}

pub(crate) fn publish<M>(shared: &Shared<M>, news: &Progress, finished: bool) {
    let current = Status { news: news.clone(), finished };
    shared.status.send_if_modified(|status| {
        let changed = *status != current;
        *status = current;
        changed
    });
}

type Answer = (RequestId, Result<(u16, Vec<u8>), TransportError>);

/// The bookkeeping at the top of each turn of a driver loop: starts the
/// machine, turns a stop into a cancel (or leaves a saved machine as it
/// is), fires timers, and publishes news. Returns `None` when the loop
/// should end.
pub(crate) fn turn<M: Machine, T>(
    shared: &Shared<M>,
    news: &mut Progress,
    stopping: &mut bool,
    poll: impl FnOnce(&mut M, Timestamp) -> T,
) -> Option<(T, Option<tokio::time::Instant>)> {
    #[cfg(test)]
    if shared.panic.load(Ordering::Relaxed) {
        panic!("injected by a test");
    }
    let mut machine = shared.exchange();
    let at = now();
    machine.start(at);
    if shared.stop.load(Ordering::Acquire) && !*stopping {
        *stopping = true;
        if shared.saved.load(Ordering::Relaxed) && !machine.has_outcome() {
            return None; // Left for the saved copy: no cancel, no close.
        }
        machine.cancel(at);
    }
    machine.handle_timeout(at);
    let due = poll(&mut machine, at);
    let news_changed = drain(&mut *machine, news);
    let finished = machine.is_finished();
    if news_changed || finished {
        publish(shared, news, finished);
    }
    if finished {
        return None;
    }
    let wake = machine.poll_timeout().map(|t| tokio::time::Instant::now() + t.saturating_since(now()));
    Some((due, wake))
}

/// Far enough to mean "no timer": the loop wakes for something else first.
pub(crate) fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// The driver task of a transcribe-mode exchange: its requests over HTTP.
pub(crate) async fn drive(guard: DriverGuard<Exchange>, client: reqwest::Client) {
    let shared = &guard.0;
    let mut requests: JoinSet<Answer> = JoinSet::new();
    let mut news = Progress::default();
    let mut stopping = false;
    loop {
        let polled = turn(shared, &mut news, &mut stopping, |exchange, at| {
            std::iter::from_fn(|| exchange.poll_transmit(at)).collect::<Vec<_>>()
        });
        let Some((due, wake)) = polled else { break };
        for transmit in due {
            let client = client.clone();
            requests.spawn(async move { (transmit.id(), post(&client, &transmit).await) });
        }
        tokio::select! {
            Some(joined) = requests.join_next(), if !requests.is_empty() => {
                if let Ok((id, answer)) = joined {
                    let mut exchange = shared.exchange();
                    match answer {
                        Ok((status, body)) => exchange.handle_response(now(), id, status, &body),
                        Err(cause) => exchange.handle_transport_error(now(), id, cause),
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(far_future)) => {}
            _ = shared.wake.notified() => {}
        }
    }
    publish(shared, &news, true);
    requests.abort_all();
}

/// One HTTP request, within the transmit's timeout.
async fn post(client: &reqwest::Client, transmit: &Transmit) -> Result<(u16, Vec<u8>), TransportError> {
    let exchange = async {
        let mut response = client
            .post(transmit.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(transmit.body())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(TransportError::new)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TransportError::from_message("the server's answer was too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    };
    tokio::time::timeout(transmit.timeout(), exchange)
        .await
        .unwrap_or_else(|_| Err(TransportError::from_message("the server did not answer in time")))
}

/// A transport error, permanent when TLS refused the server: an untrusted
/// certificate stays untrusted, so retrying for days would help no one.
fn classify(error: reqwest::Error) -> TransportError {
    TransportError::classify(error, |e| e.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use wormhole_sync_core::{Config, Exchange};

    use super::*;

    #[test]
    fn a_panicking_driver_gives_every_waiter_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            // A closed port: nothing will answer, so only the panic can end it.
            let config = Config::new("app").unwrap().with_rendezvous("http://127.0.0.1:9").unwrap();
            let exchange = Exchange::initiator(config, b"data".to_vec(), [1; 32]).unwrap();
            let handle = start(exchange, |guard| drive(guard, shared_client()));
            let (code, data) = (handle.when_code(), handle.when_data());
            handle.shared.panic.store(true, Ordering::Relaxed);
            handle.shared.wake.notify_one();
            let waited = tokio::time::timeout(Duration::from_secs(10), async { (code.await, data.await) });
            let (code, data) = waited.await.expect("waiters must not hang");
            for result in [code.map(|_| ()), data.map(|_| ())] {
                assert!(
                    matches!(&result, Err(Error::DriverStopped { detail }) if detail.contains("panicked")),
                    "{result:?}"
                );
            }
            // The handle itself stays usable.
            assert!(!handle.serialize().is_empty());
        });
    }
}
