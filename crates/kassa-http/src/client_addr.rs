//! Who the client is, behind reverse proxies (risk D1). Kassa has no TLS listener, so a live
//! deployment sits behind a proxy whose address is every request's socket peer. Only when the
//! peer is one of the configured trusted proxies is a forwarding header believed, and then only
//! as far back as the proxies are trusted: the client is the right-most address of
//! `X-Forwarded-For` (or `Forwarded: for=`) that is not itself a trusted proxy. Anything to the
//! left of it was written by the client and proves nothing. That one address feeds the rate
//! limits, the velocity limit, the audit trail and the logs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The networks whose connections may say, in a forwarding header, whom they forward for.
/// Empty (the default): every request's client is its socket peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(networks.into())
    }

    /// Parses `KASSA_TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for item in list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let network = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is neither a CIDR (10.0.0.0/8) nor an address"))?;
            networks.push(network);
        }
        Ok(TrustedProxies::new(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }
}

/// The request's client, as [`client_address`] found it; set on every request by
/// [`resolve_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client behind `peer`: `peer` itself unless it is trusted; then the forwarded hops are
/// walked from the right (the nearest first): the first that is not a trusted proxy is the
/// client. An entry that is no address ends the walk at the last trusted hop: nothing to the
/// left of it was vouched for by anyone Kassa trusts, and one bad entry never discards the
/// good ones to its right.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.trusts(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in hops_nearest_first(headers) {
        let Some(address) = hop else {
            break;
        };
        client = address;
        if !trusted.trusts(address) {
            break;
        }
    }
    client
}

/// The addresses a request passed through, nearest first, each `None` where the entry is no
/// address. `X-Forwarded-For` whenever the request carries one (then `Forwarded` is never
/// read: a proxy that appends to one header does not clean the other, so the client wrote
/// it), else `Forwarded`'s `for=` parameters. Several lines of one header are one list, in
/// order; bytes that are not text are an entry that is no address.
fn hops_nearest_first(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let entries = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
            .map(|entry| String::from_utf8_lossy(entry).trim().to_owned())
            .collect()
    };
    let forwarded_for = entries("x-forwarded-for");
    let hops: Vec<Option<IpAddr>> = if forwarded_for.is_empty() {
        entries("forwarded")
            .iter()
            .map(|element| {
                let value = element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then_some(value)
                })?;
                parse_hop(value.trim().trim_matches('"'))
            })
            .collect()
    } else {
        forwarded_for.iter().map(|entry| parse_hop(entry)).collect()
    };
    hops.into_iter().rev().collect()
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let bracketed = hop.strip_prefix('[')?.split(']').next()?;
    bracketed.parse::<IpAddr>().ok().map(canonical)
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:192.0.2.1`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Middleware: sets [`ClientAddr`] on the request from its socket peer, its headers and the
/// trusted proxies.
pub async fn resolve_client(
    axum::extract::State(trusted): axum::extract::State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let client = client_address(peer, request.headers(), &trusted);
    request.extensions_mut().insert(ClientAddr(client));
    next.run(request).await
}

/// The request's client (the socket peer when the resolver did not run, as in unit tests).
pub fn client_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ClientAddr>()
        .map(|client| client.0)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| canonical(info.0.ip()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).expect("parses")
    }

    #[test]
    fn risk_d1_a_header_counts_only_from_a_trusted_peer() {
        let forged = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &forged, &TrustedProxies::default()),
            ip("198.51.100.7"),
            "no proxy trusted: the peer"
        );
        assert_eq!(
            client_address(ip("198.51.100.7"), &forged, &proxies("10.0.0.0/8")),
            ip("198.51.100.7"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &forged, &proxies("10.0.0.0/8")),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn risk_d1_the_client_is_the_right_most_untrusted_hop() {
        let trusted = proxies("10.0.0.0/8, 192.0.2.1");
        // The client wrote "1.2.3.4" itself; the first trusted proxy appended the real peer.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 192.0.2.1")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &chain, &trusted),
            ip("203.0.113.9")
        );
        // Two header lines are one list.
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &split, &trusted),
            ip("203.0.113.9")
        );
        // Every hop trusted: the farthest one vouched for.
        let inside = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &inside, &trusted),
            ip("10.1.1.1")
        );
        // A client's junk to the left of its real address changes nothing (Squid and clients
        // send `unknown`): the first untrusted address from the right is still the client.
        let junk = headers(&[("x-forwarded-for", "unknown, 203.0.113.9")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &junk, &trusted),
            ip("203.0.113.9")
        );
        // Junk nearer than any untrusted address: the last trusted hop is all that is known.
        let junk_near = headers(&[("x-forwarded-for", "203.0.113.9, _hidden, 10.1.1.1")]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &junk_near, &trusted),
            ip("10.1.1.1")
        );
    }

    /// A header of bytes that are not text must not make Kassa fall back to a header the
    /// client wrote whole (nginx appends to `X-Forwarded-For` and passes `Forwarded` on).
    #[test]
    fn risk_d1_undecodable_bytes_never_open_the_other_header() {
        let trusted = proxies("127.0.0.1");
        let mut forged = HeaderMap::new();
        forged.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff, 198.51.100.7").expect("bytes"),
        );
        forged.append("forwarded", "for=203.0.113.77".parse().expect("value"));
        assert_eq!(
            client_address(ip("127.0.0.1"), &forged, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_and_ports_and_ipv6_are_read() {
        let trusted = proxies("10.0.0.0/8");
        let forwarded = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::17]:4711""#,
        )]);
        assert_eq!(
            client_address(ip("10.0.0.2"), &forwarded, &trusted),
            ip("2001:db8::17")
        );
        let with_port = headers(&[("x-forwarded-for", "203.0.113.9:5555")]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.2"), &with_port, &trusted),
            ip("203.0.113.9"),
            "a v4-mapped peer is its v4 address"
        );
    }

    #[test]
    fn the_setting_is_parsed_strictly() {
        assert!(TrustedProxies::parse("").expect("empty").is_empty());
        assert!(TrustedProxies::parse("127.0.0.1, ::1, 10.0.0.0/8").is_ok());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }
}
