//! Which client a request comes from: the connection's address, or, when
//! the connection comes from a trusted reverse proxy, the address the proxy
//! reports in `Forwarded` (RFC 7239) or `X-Forwarded-For`. Limits and
//! budgets are charged to it, IPv6 addresses by their /64 (one subscriber).

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientAddresses {
    trusted: Vec<IpNet>,
}

/// Most forwarding hops read from one request.
const MAX_HOPS: usize = 32;

impl ClientAddresses {
    pub(crate) fn new(trusted: Vec<IpNet>) -> ClientAddresses {
        ClientAddresses { trusted }
    }

    /// Whether `addr` is a trusted proxy.
    pub(crate) fn is_proxy(&self, addr: IpAddr) -> bool {
        self.is_trusted(addr)
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&unmapped(addr)))
    }

    /// The client's address: walking the forwarding chain from the nearest
    /// hop back, the first address that is not a trusted proxy. Headers
    /// from an untrusted peer are ignored (anyone can write them); an
    /// unreadable hop ends the walk at the last trusted proxy.
    pub(crate) fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = unmapped(peer);
        if !self.is_trusted(client) {
            return client;
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            match hop {
                Some(addr) if self.is_trusted(addr) => client = addr,
                Some(addr) => return addr,
                None => return client,
            }
        }
        client
    }
}

/// The addresses a request passed through, nearest last, from `Forwarded`
/// if present, else `X-Forwarded-For`; `None` for a hop that is not an
/// address (`unknown`, an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .take(MAX_HOPS)
            .map(|element| {
                let value = element.split(';').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
                })?;
                parse_node(value.trim_matches('"'))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(MAX_HOPS)
        .map(|hop| parse_node(hop.trim()))
        .collect()
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

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let clients = ClientAddresses::new(vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        let forged = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            clients.of(ip("198.51.100.7"), &forged),
            ip("198.51.100.7"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(clients.of(ip("127.0.0.1"), &forged), ip("203.0.113.9"));
        assert_eq!(clients.of(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"), "no header: the proxy itself");
        // A client that forges a hop before the real one is charged by the real one.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(clients.of(ip("127.0.0.1"), &chain), ip("203.0.113.9"));
        // Forwarded wins over X-Forwarded-For, with quotes, ports and IPv6.
        let both = headers(&[
            ("forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(clients.of(ip("::ffff:127.0.0.1"), &both), ip("2001:db8:cafe::17"));
        let garbage = headers(&[("forwarded", "for=unknown"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(clients.of(ip("127.0.0.1"), &garbage), ip("127.0.0.1"), "an unreadable hop: the proxy");
        let none = ClientAddresses::default();
        assert_eq!(none.of(ip("127.0.0.1"), &forged), ip("127.0.0.1"), "nobody trusted by default");
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        assert_eq!(subscriber(ip("2001:db8:1:2:aaaa::1")), subscriber(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(subscriber(ip("2001:db8:1:2::1")), subscriber(ip("2001:db8:1:3::1")));
        assert_eq!(subscriber(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(subscriber(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
