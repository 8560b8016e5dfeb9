//! The client address behind trusted load balancers: `X-Forwarded-For`, read from the right.
//!
//! Every proxy appends the address it received the request from, so the right end of the list is
//! written by the hops closest to us and the left end by whoever sent the request first, possibly
//! the client lying. We believe the list only as far as it was written by proxies we trust: walk
//! it from the right, and the first address that is not a trusted proxy is the client. A hop we
//! cannot parse (garbage, `unknown`, an obfuscated name) ends the walk too, because whatever lies
//! left of it was relayed by something we cannot vouch for; the client is then the last trusted
//! hop seen, or the socket peer itself.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// True when `ip` is one of the trusted load balancers.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client address: the socket peer, or, when the peer is a trusted proxy, what its
/// `X-Forwarded-For` says (see the module comment for the rules). Several `X-Forwarded-For`
/// headers count as one list, in the order they came.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Split the raw bytes: a header with a non-UTF-8 byte in one entry still has usable
    // entries to the right of it.
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip, trusted) => client = ip,
            Some(ip) => return ip,
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`, with optional
/// surrounding whitespace. Anything else is `None`.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim_matches([' ', '\t']);
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(inner) = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    // `1.2.3.4:80` and `[::1]:80`; a bare IPv6 address was handled above.
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    const LB: &str = "10.0.0.1";

    fn trusted() -> [IpNet; 2] {
        [net("10.0.0.0/8"), net("fd00::/8")]
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_say() {
        let h = xff(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip(LB), &h, &[]), ip(LB));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(client_ip(ip(LB), &HeaderMap::new(), &trusted()), ip(LB));
        assert_eq!(client_ip(ip(LB), &xff(&[""]), &trusted()), ip(LB));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        // The left-most entry is whatever the client claimed; only trusted hops are skipped.
        let h = xff(&["6.6.6.6, 198.51.100.7, 10.0.0.2, 10.0.0.3"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("198.51.100.7"));
    }

    #[test]
    fn every_entry_form_is_parsed() {
        for (value, want) in [
            ("198.51.100.7", "198.51.100.7"),
            ("198.51.100.7:4711", "198.51.100.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("  198.51.100.7\t", "198.51.100.7"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
        ] {
            assert_eq!(
                client_ip(ip(LB), &xff(&[value]), &trusted()),
                ip(want),
                "{value}"
            );
        }
    }

    #[test]
    fn trusted_hops_with_ports_are_skipped() {
        let h = xff(&["198.51.100.7, 10.0.0.2:8080, [fd00::1]:443, [fd00::2]"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("198.51.100.7"));
    }

    #[test]
    fn an_unparseable_hop_stops_at_the_last_trusted_hop() {
        for value in [
            "198.51.100.7, unknown, 10.0.0.2",
            "198.51.100.7, _hidden, 10.0.0.2",
            "198.51.100.7, 10.0.0.2:99999",
            "198.51.100.7, 10.0.0.2:",
            "198.51.100.7, [fd00::1, 10.0.0.2",
            "198.51.100.7, fe80::1%eth0, 10.0.0.2",
            "198.51.100.7,, 10.0.0.2",
        ] {
            let want = if value.ends_with("10.0.0.2") {
                "10.0.0.2"
            } else {
                LB
            };
            assert_eq!(
                client_ip(ip(LB), &xff(&[value]), &trusted()),
                ip(want),
                "{value}"
            );
        }
        // Nothing parseable at all: the peer.
        assert_eq!(client_ip(ip(LB), &xff(&["garbage"]), &trusted()), ip(LB));
    }

    #[test]
    fn a_non_utf8_entry_is_unparseable_but_entries_right_of_it_count() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.7, \xff, 10.0.0.2").expect("obs-text"),
        );
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("10.0.0.2"));
    }

    #[test]
    fn all_hops_trusted_gives_the_left_most() {
        let h = xff(&["10.0.0.5, 10.0.0.2"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("10.0.0.5"));
    }

    #[test]
    fn several_headers_are_one_list_in_order() {
        // The second header was appended last, so its entries are the right end of the list.
        let h = xff(&["198.51.100.7", "203.0.113.5, 10.0.0.2"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("203.0.113.5"));
        let h = xff(&["198.51.100.7", "10.0.0.3", "10.0.0.2"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("198.51.100.7"));
        let h = xff(&["198.51.100.7", "bogus", "10.0.0.2"]);
        assert_eq!(client_ip(ip(LB), &h, &trusted()), ip("10.0.0.2"));
    }

    #[test]
    fn a_mapped_peer_is_matched_as_ipv4() {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let h = xff(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
    }
}
