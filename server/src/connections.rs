//! Open connections: counted in total and per client address, each under a
//! cap, so neither one address nor everyone together can hold more sockets
//! (and the memory behind them) than the server allows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::client_address::{subscriber, ClientAddresses};

/// Why a connection was turned away.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds as many connections as it allows.
    Full,
    /// This address holds as many as one address may.
    TooManyFromAddress,
}

pub(crate) struct Connections {
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_address: usize,
    /// Trusted proxies carry many clients' connections: only the total applies.
    proxies: ClientAddresses,
}

/// One admitted connection; dropping it gives its place back.
pub(crate) struct Admitted {
    connections: Arc<Connections>,
    address: Option<IpAddr>,
}

impl Connections {
    /// A cap of 0 turns that cap off.
    pub(crate) fn new(max_total: usize, max_per_address: usize, proxies: ClientAddresses) -> Arc<Connections> {
        Arc::new(Connections {
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            max_total,
            max_per_address,
            proxies,
        })
    }

    /// Admits a connection from `peer`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        if self.max_total > 0 && self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::Full);
        }
        let address = (self.max_per_address > 0 && !self.proxies.is_proxy(peer)).then(|| subscriber(peer));
        if let Some(address) = address {
            let mut per_address = self.per_address.lock();
            let open = per_address.entry(address).or_default();
            if *open >= self.max_per_address {
                return Err(Refusal::TooManyFromAddress);
            }
            *open += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted { connections: self.clone(), address })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(address) = self.address {
            let mut per_address = self.connections.per_address.lock();
            if let Some(open) = per_address.get_mut(&address) {
                *open -= 1;
                if *open == 0 {
                    per_address.remove(&address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_places_come_back() {
        let connections =
            Connections::new(3, 2, ClientAddresses::new(vec!["10.0.0.1/32".parse().unwrap()], Default::default()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert_eq!(connections.admit(a).err(), Some(Refusal::TooManyFromAddress));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let _through_proxy = connections.admit(proxy).unwrap();
        assert_eq!(connections.admit(proxy).err(), Some(Refusal::Full), "the total holds for proxies too");
        drop(first);
        assert_eq!(connections.open(), 2);
        assert!(connections.admit(a).is_ok());
        let off = Connections::new(0, 0, ClientAddresses::default());
        let held: Vec<_> = (0..100).map(|_| off.admit(a).unwrap()).collect();
        assert_eq!(off.open(), held.len());
    }
}
