//! Request counters and the Prometheus text rendering of `GET /metrics`.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use wormhole_sync_core::rendezvous::RendezvousStats;

/// Requests by route and outcome code (`ok` or a stable error code).
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub(crate) fn count(&self, route: &'static str, code: &'static str) {
        *self.requests.lock().entry((route, code)).or_default() += 1;
    }

    pub(crate) fn render(
        &self,
        stats: RendezvousStats,
        waiting: i64,
        connections: usize,
        stored_bytes: u64,
        storing_clients: usize,
        storage_healthy: bool,
    ) -> String {
        let mut out = String::new();
        let gauges = [
            ("wormhole_channels_open", "Open channels.", stats.channels as i64),
            ("wormhole_messages_stored", "Messages stored in open channels.", stats.messages as i64),
            ("wormhole_apps_active", "Application ids with open channels.", stats.apps as i64),
            ("wormhole_longpolls_waiting", "Fetches waiting for a message.", waiting),
            ("wormhole_connections_open", "Open client connections.", connections as i64),
            ("wormhole_stored_bytes", "Bytes of message bodies stored (the total budget's use).", stored_bytes as i64),
            (
                "wormhole_storing_clients",
                "Client addresses with messages stored (per-address budgets).",
                storing_clients as i64,
            ),
            ("wormhole_storage_healthy", "1 while storage accepts writes.", i64::from(storage_healthy)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out.push_str("# HELP wormhole_requests_total Requests by route and outcome code.\n");
        out.push_str("# TYPE wormhole_requests_total counter\n");
        for ((route, code), n) in self.requests.lock().iter() {
            let _ = writeln!(out, "wormhole_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}");
        }
        out
    }
}
