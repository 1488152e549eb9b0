//! Where to connect for a remote domain (RFC 6120 §3.2, XEP-0368), in order:
//! a static `[[s2s_route]]`; an IP-literal domain directly; DNS SRV records
//! `_xmpps-server._tcp` (Direct TLS) and `_xmpp-server._tcp` (STARTTLS) merged by
//! priority and weight; else the domain's A/AAAA records on port 5269. Host names
//! are resolved on a blocking thread, never on the event loop.
//!
//! Addresses that come from DNS (SRV targets, A/AAAA) in loopback, private,
//! link-local or unspecified ranges are dropped unless `s2s_private_targets` is
//! on: otherwise any remote could name a domain whose records point into the
//! hub's own LAN, and the dialback answer would tell it which ports are open
//! (REVIEW S18). Static routes and IP-literal domains are taken as given.

use super::dns::{lookup_srv, Srv};
use crate::config::S2sRoute;
use crate::jid::Domain;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The default s2s port (RFC 6120 §3.2.2).
pub const DEFAULT_PORT: u16 = 5269;

/// The longest wait for one DNS answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// One address to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// An IP literal domain (`192.168.1.20`, `[fd00::2]`).
pub fn ip_literal(domain: &str) -> Option<IpAddr> {
    domain.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Resolves a host name (or IP) and port on a blocking thread.
async fn host_addrs(host: &str, port: u16) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    let host = host.to_string();
    blocking::unblock(move || (host.as_str(), port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default()).await
}

/// SRV records of both services in the order to try (XEP-0368 §3: one list by
/// priority, then weight, Direct TLS first on a tie). `None`: no records at all.
fn order(xmpps: Vec<Srv>, xmpp: Vec<Srv>) -> Option<Vec<(Srv, bool)>> {
    if xmpps.is_empty() && xmpp.is_empty() {
        return None;
    }
    let mut all: Vec<(Srv, bool)> =
        xmpps.into_iter().map(|s| (s, true)).chain(xmpp.into_iter().map(|s| (s, false))).collect();
    all.sort_by(|(a, ad), (b, bd)| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)).then(bd.cmp(ad)));
    // RFC 2782: a single record with target "." means "no service here".
    all.retain(|(s, _)| !s.target.is_empty());
    Some(all)
}

/// An address only a LAN (or the host itself) reaches.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                    || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
            }
        },
    }
}

/// Every address to try for `domain`, best first.
pub async fn candidates(
    routes: &[S2sRoute],
    dns_server: Option<SocketAddr>,
    domain: &Domain,
    timeout: Duration,
    private_targets: bool,
) -> Vec<Candidate> {
    let from_dns = candidates_unfiltered(routes, dns_server, domain, timeout).await;
    match from_dns {
        (found, false) => found,
        (found, true) if private_targets => found,
        (found, true) => {
            let (private, public): (Vec<_>, Vec<_>) = found.into_iter().partition(|c| is_private(c.addr.ip()));
            if !private.is_empty() {
                log::warn!(
                    "s2s to {domain}: DNS points at private address(es) {:?}, not used (s2s_private_targets = false)",
                    private.iter().map(|c| c.addr).collect::<Vec<_>>()
                );
            }
            public
        }
    }
}

/// The candidates, and whether they came from DNS.
async fn candidates_unfiltered(
    routes: &[S2sRoute],
    dns_server: Option<SocketAddr>,
    domain: &Domain,
    timeout: Duration,
) -> (Vec<Candidate>, bool) {
    if let Some(route) = routes.iter().find(|r| r.domain == *domain) {
        let addrs = host_addrs(&route.host, route.port).await;
        return (addrs.into_iter().map(|addr| Candidate { addr, direct_tls: route.direct_tls }).collect(), false);
    }
    if let Some(ip) = ip_literal(domain.as_str()) {
        return (vec![Candidate { addr: SocketAddr::new(ip, DEFAULT_PORT), direct_tls: false }], false);
    }
    if let Some(server) = dns_server.or_else(super::dns::system_nameserver) {
        let name = domain.as_str();
        // A DNS server that does not answer costs at most this per query.
        let timeout = timeout.min(DNS_TIMEOUT);
        let xmpps = lookup_srv(server, &format!("_xmpps-server._tcp.{name}"), timeout).await.unwrap_or_default();
        let xmpp = lookup_srv(server, &format!("_xmpp-server._tcp.{name}"), timeout).await.unwrap_or_default();
        if let Some(records) = order(xmpps, xmpp) {
            let mut out = Vec::new();
            for (srv, direct_tls) in records {
                for addr in host_addrs(&srv.target, srv.port).await {
                    out.push(Candidate { addr, direct_tls });
                }
            }
            return (out, true);
        }
    }
    let found = host_addrs(domain.as_str(), DEFAULT_PORT).await;
    (found.into_iter().map(|addr| Candidate { addr, direct_tls: false }).collect(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv { priority, weight, port: 5269, target: target.into() }
    }

    #[test]
    fn srv_records_merge_by_priority_then_weight_direct_tls_first() {
        let ordered =
            order(vec![srv(10, 0, "tls"), srv(5, 0, "first")], vec![srv(10, 0, "plain"), srv(10, 9, "heavy")]).unwrap();
        let names: Vec<(&str, bool)> = ordered.iter().map(|(s, d)| (s.target.as_str(), *d)).collect();
        assert_eq!(names, [("first", true), ("heavy", false), ("tls", true), ("plain", false)]);
        assert_eq!(order(vec![], vec![]), None);
        assert_eq!(order(vec![], vec![srv(0, 0, "")]), Some(vec![]), "'.' means no service");
    }

    #[test]
    fn lan_and_loopback_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::2",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2001:db8::1", "8.8.8.8"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ip_literals_are_recognised() {
        assert_eq!(ip_literal("192.168.1.20"), Some([192, 168, 1, 20].into()));
        assert_eq!(ip_literal("[::1]"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(ip_literal("nas.lan"), None);
    }
}
