//! `GET /metrics`: request counts and latency histograms by route, and the
//! gauges of state and budgets, in the Prometheus / OpenMetrics text format
//! (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use wormhole_sync_core::rendezvous::RendezvousStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Latency buckets, seconds: from a fast answer to a long-poll held its
/// whole wait (60 s at most).
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The state and budgets, read when `/metrics` is asked for.
pub(crate) struct Snapshot {
    pub(crate) stats: RendezvousStats,
    pub(crate) waiting: i64,
    pub(crate) websockets: usize,
    pub(crate) connections: usize,
    pub(crate) stored_bytes: u64,
    pub(crate) storing_clients: usize,
    pub(crate) storage_healthy: bool,
    pub(crate) split_batches: u64,
    pub(crate) missed_turns: u64,
}

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    gauges: [Gauge; 11],
    split_batches: Counter,
    missed_turns: Counter,
    announced_reads: Counter,
    announced_news: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("wormhole_requests", "Requests by route and outcome code", requests.clone());
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "wormhole_request_duration_seconds",
            "Time to answer, by route (long-polls included)",
            durations.clone(),
        );
        let gauges: [Gauge; 11] = Default::default();
        let described = [
            ("wormhole_channels_open", "Open channels (mailboxes)"),
            (
                "wormhole_channels_retained",
                "Channels kept, emptied, for the retention (a spent, burned or abandoned code)",
            ),
            ("wormhole_nameplates_claimed", "Short channel ids (nameplates) in use"),
            ("wormhole_messages_stored", "Messages stored in open channels"),
            ("wormhole_apps_active", "Application ids with open channels"),
            ("wormhole_longpolls_waiting", "Requests held waiting for news"),
            ("wormhole_websockets_open", "Open mailbox protocol (WebSocket) connections"),
            ("wormhole_connections_open", "Open client connections"),
            ("wormhole_stored_bytes", "Bytes of message bodies stored (the total budget's use)"),
            ("wormhole_storing_clients", "Client addresses with messages stored (per-address budgets)"),
            ("wormhole_storage_healthy", "1 while storage accepts writes"),
        ];
        for ((name, help), gauge) in described.into_iter().zip(&gauges) {
            registry.register(name, help, gauge.clone());
        }
        let split_batches = Counter::default();
        registry.register(
            "wormhole_storage_split_batches",
            "Batches of operations that did not commit together and ran again one operation per transaction \
             (PostgreSQL: a conflict with another instance's transaction, a cap or budget reached, a new application id)",
            split_batches.clone(),
        );
        let missed_turns = Counter::default();
        registry.register(
            "wormhole_storage_missed_turns",
            "Batches whose turn over the deployment did not come within 100 ms and ran beside the batch that had it \
             (PostgreSQL: an instance stuck in its transaction, or a database far behind)",
            missed_turns.clone(),
        );
        let announced_reads = Counter::default();
        registry.register(
            "wormhole_longpoll_announced_reads",
            "Reads of woken long-polls answered from the state the waking commit announced, without reading \
             the storage (PostgreSQL)",
            announced_reads.clone(),
        );
        let announced_news = Counter::default();
        registry.register(
            "wormhole_websocket_announced_reads",
            "Reads of news for mailbox-protocol connections woken by a commit answered from the state it \
             announced, without reading the storage (PostgreSQL)",
            announced_news.clone(),
        );
        Metrics { registry, requests, durations, gauges, split_batches, missed_turns, announced_reads, announced_news }
    }
}

impl Metrics {
    /// Counts one answered request and how long it took.
    pub(crate) fn observe(&self, route: &'static str, code: &'static str, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { route, code }).inc();
        self.durations.get_or_create(&RouteLabels { route }).observe(seconds);
    }

    /// Counts a long-poll's read answered from an announced state.
    pub(crate) fn announced_read(&self) {
        self.announced_reads.inc();
    }

    /// Counts a mailbox-protocol connection's news read from an announced
    /// state.
    pub(crate) fn announced_news(&self) {
        self.announced_news.inc();
    }

    pub(crate) fn render(&self, now: Snapshot) -> String {
        let values = [
            now.stats.channels as i64,
            now.stats.tombstones as i64,
            now.stats.nameplates as i64,
            now.stats.messages as i64,
            now.stats.apps as i64,
            now.waiting,
            now.websockets as i64,
            now.connections as i64,
            i64::try_from(now.stored_bytes).unwrap_or(i64::MAX),
            now.storing_clients as i64,
            i64::from(now.storage_healthy),
        ];
        for (gauge, value) in self.gauges.iter().zip(values) {
            gauge.set(value);
        }
        // A count kept by the storage: the counter catches up with it.
        self.split_batches.inc_by(now.split_batches.saturating_sub(self.split_batches.get()));
        self.missed_turns.inc_by(now.missed_turns.saturating_sub(self.missed_turns.get()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
