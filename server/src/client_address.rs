//! Which client a request comes from: the connection's address, or, when
//! the connection comes from a trusted reverse proxy, the address the proxy
//! reports in the one header the operator names (`X-Forwarded-For` by
//! default, `Forwarded` (RFC 7239) or `X-Real-IP`). Limits and budgets are
//! charged to it, IPv6 addresses by their /64 (one subscriber).
//!
//! Only the named header is read, never another as a fallback: a proxy
//! that sets one header passes the others through as the client wrote
//! them. The chain is walked from the right (the hop the nearest proxy
//! wrote) back past trusted proxies, so hops a client prepends are never
//! reached: a proxy that appends to what the client sent is as safe as one
//! that replaces it.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header a trusted proxy names the client in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client` (one address, nginx's `real_ip` convention).
    XRealIp,
}

impl ClientIpHeader {
    /// The header's name, as `--client-ip-header` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
            ClientIpHeader::XRealIp => "x-real-ip",
        }
    }
}

impl FromStr for ClientIpHeader {
    type Err = String;

    /// ```
    /// use wormhole_sync_server::ClientIpHeader;
    ///
    /// assert_eq!("X-Real-IP".parse(), Ok(ClientIpHeader::XRealIp));
    /// assert!("via".parse::<ClientIpHeader>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<ClientIpHeader, String> {
        [ClientIpHeader::XForwardedFor, ClientIpHeader::Forwarded, ClientIpHeader::XRealIp]
            .into_iter()
            .find(|header| header.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("{text:?} is not one of x-forwarded-for, forwarded, x-real-ip"))
    }
}

/// Who a request is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// The address limits and budgets are kept under (before grouping by /64).
    pub(crate) address: IpAddr,
    /// The connection itself comes from a loopback address that is not a
    /// trusted proxy (a local client, which `--rate-limit-exempt-loopback`
    /// may exempt). Never true for an address a proxy reported.
    pub(crate) local: bool,
}

/// The proxies whose forwarding header is believed, and which header.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientAddresses {
    trusted: Vec<IpNet>,
    header: ClientIpHeader,
}

/// Most forwarding hops walked for one request (from the right); past them
/// the request is charged to the last one walked.
const MAX_HOPS: usize = 32;

impl ClientAddresses {
    pub(crate) fn new(trusted: Vec<IpNet>, header: ClientIpHeader) -> ClientAddresses {
        ClientAddresses { trusted, header }
    }

    /// Whether `addr` is a trusted proxy.
    pub(crate) fn is_proxy(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&unmapped(addr)))
    }

    /// The client of a request that came over a connection from `peer`:
    /// walking the forwarding chain from the nearest hop back, the first
    /// address that is not a trusted proxy. Headers from an untrusted peer
    /// are ignored (anyone can write them); an unreadable hop ends the walk
    /// at the last trusted proxy.
    pub(crate) fn of(&self, peer: IpAddr, headers: &HeaderMap) -> Client {
        let peer = unmapped(peer);
        if !self.is_proxy(peer) {
            return Client { address: peer, local: peer.is_loopback() };
        }
        let mut client = peer;
        for hop in self.chain_from_the_right(headers).take(MAX_HOPS) {
            match hop {
                Some(addr) if self.is_proxy(addr) => client = addr,
                Some(addr) => return Client { address: addr, local: false },
                None => break,
            }
        }
        Client { address: client, local: false }
    }

    /// The hops of the configured header, nearest first; `None` for a hop
    /// that is not an address (`unknown`, an obfuscated name, garbage).
    fn chain_from_the_right<'a>(&self, headers: &'a HeaderMap) -> impl Iterator<Item = Option<IpAddr>> + 'a {
        let header = self.header;
        // Several header lines are one list, in order (RFC 9110 5.3).
        let lines: Vec<&str> = headers.get_all(header.name()).iter().map(|v| v.to_str().unwrap_or("")).collect();
        lines.into_iter().rev().flat_map(|line| line.rsplit(',')).map(move |hop| match header {
            ClientIpHeader::XForwardedFor | ClientIpHeader::XRealIp => parse_node(hop.trim()),
            ClientIpHeader::Forwarded => {
                let value = hop.split(';').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
                })?;
                parse_node(value.trim_matches('"'))
            }
        })
    }
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]`, `[2001:db8::1]:80` or a bare IPv6 address.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(unmapped);
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(unmapped(addr));
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The key limits are kept under: the address, or an IPv6 address's /64.
pub(crate) fn subscriber(addr: IpAddr) -> IpAddr {
    match unmapped(addr) {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusting(header: ClientIpHeader) -> ClientAddresses {
        ClientAddresses::new(vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()], header)
    }

    fn charged(clients: &ClientAddresses, peer: &str, headers: &HeaderMap) -> IpAddr {
        clients.of(ip(peer), headers).address
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let clients = trusting(ClientIpHeader::XForwardedFor);
        let forged = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(charged(&clients, "198.51.100.7", &forged), ip("198.51.100.7"), "an untrusted peer's header");
        assert_eq!(charged(&clients, "127.0.0.1", &forged), ip("203.0.113.9"));
        assert_eq!(charged(&clients, "127.0.0.1", &HeaderMap::new()), ip("127.0.0.1"), "no header: the proxy");
        // Trusted hops are walked past, from the right.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(charged(&clients, "127.0.0.1", &chain), ip("203.0.113.9"));
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(charged(&clients, "127.0.0.1", &garbage), ip("127.0.0.1"), "an unreadable hop: the proxy");
        let none = ClientAddresses::default();
        assert_eq!(charged(&none, "127.0.0.1", &forged), ip("127.0.0.1"), "nobody trusted by default");
    }

    /// Behind a proxy that appends to what the client sent, a client that
    /// writes 32 hops of its own is still charged by its real address.
    #[test]
    fn the_chain_is_read_from_the_right() {
        let clients = trusting(ClientIpHeader::XForwardedFor);
        let forged: Vec<String> = (1..=32).map(|i| format!("198.51.100.{i}")).collect();
        let appended = format!("{}, 203.0.113.9", forged.join(", "));
        let mut map = HeaderMap::new();
        map.insert("x-forwarded-for", HeaderValue::from_str(&appended).unwrap());
        assert_eq!(charged(&clients, "127.0.0.1", &map), ip("203.0.113.9"));
        // Two header lines are one list: the later line is nearer.
        let lines = headers(&[("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(charged(&clients, "127.0.0.1", &lines), ip("203.0.113.9"));
        // A chain of trusted hops longer than the walk ends at the last one walked.
        let proxies: Vec<String> = (1..=40).map(|i| format!("10.0.0.{i}")).collect();
        map.insert("x-forwarded-for", HeaderValue::from_str(&proxies.join(",")).unwrap());
        assert_eq!(charged(&clients, "127.0.0.1", &map), ip("10.0.0.9"));
    }

    /// Only the configured header counts: a client behind a proxy that sets
    /// X-Forwarded-For cannot choose its address by writing Forwarded.
    #[test]
    fn only_the_named_header_is_read() {
        let both = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "198.51.100.4"),
        ]);
        let charge = |header| charged(&trusting(header), "::ffff:127.0.0.1", &both);
        assert_eq!(charge(ClientIpHeader::XForwardedFor), ip("203.0.113.9"));
        assert_eq!(charge(ClientIpHeader::Forwarded), ip("2001:db8:cafe::17"));
        assert_eq!(charge(ClientIpHeader::XRealIp), ip("198.51.100.4"));
        let only_forwarded = headers(&[("forwarded", "for=192.0.2.60")]);
        let xff = trusting(ClientIpHeader::XForwardedFor);
        assert_eq!(charged(&xff, "127.0.0.1", &only_forwarded), ip("127.0.0.1"), "no fallback to another header");
        assert_eq!("Forwarded".parse(), Ok(ClientIpHeader::Forwarded));
    }

    #[test]
    fn only_a_direct_loopback_connection_is_local() {
        let clients = ClientAddresses::new(vec!["10.0.0.1/32".parse().unwrap()], ClientIpHeader::XForwardedFor);
        assert!(clients.of(ip("127.0.0.1"), &HeaderMap::new()).local);
        assert!(clients.of(ip("::1"), &HeaderMap::new()).local);
        assert!(!clients.of(ip("192.0.2.1"), &HeaderMap::new()).local);
        let claims_loopback = headers(&[("x-forwarded-for", "127.0.0.1")]);
        let forwarded = clients.of(ip("10.0.0.1"), &claims_loopback);
        assert_eq!(forwarded, Client { address: ip("127.0.0.1"), local: false }, "a forwarded address is never local");
        let proxy_on_loopback = trusting(ClientIpHeader::XForwardedFor);
        assert!(!proxy_on_loopback.of(ip("127.0.0.1"), &HeaderMap::new()).local, "a trusted proxy is not local");
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        assert_eq!(subscriber(ip("2001:db8:1:2:aaaa::1")), subscriber(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(subscriber(ip("2001:db8:1:2::1")), subscriber(ip("2001:db8:1:3::1")));
        assert_eq!(subscriber(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(subscriber(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
