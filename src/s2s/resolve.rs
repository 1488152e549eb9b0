//! Where to connect for a remote domain (RFC 6120 §3.2, XEP-0368), in order:
//! a static `[[s2s_route]]`; an IP-literal domain directly; DNS SRV records
//! `_xmpps-server._tcp` (Direct TLS) and `_xmpp-server._tcp` (STARTTLS) merged by
//! priority and weight; else the domain's A/AAAA records on port 5269. Host names
//! are resolved on a blocking thread, never on the event loop.

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

/// Every address to try for `domain`, best first.
pub async fn candidates(
    routes: &[S2sRoute],
    dns_server: Option<SocketAddr>,
    domain: &Domain,
    timeout: Duration,
) -> Vec<Candidate> {
    if let Some(route) = routes.iter().find(|r| r.domain == *domain) {
        let addrs = host_addrs(&route.host, route.port).await;
        return addrs.into_iter().map(|addr| Candidate { addr, direct_tls: route.direct_tls }).collect();
    }
    if let Some(ip) = ip_literal(domain.as_str()) {
        return vec![Candidate { addr: SocketAddr::new(ip, DEFAULT_PORT), direct_tls: false }];
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
            return out;
        }
    }
    host_addrs(domain.as_str(), DEFAULT_PORT)
        .await
        .into_iter()
        .map(|addr| Candidate { addr, direct_tls: false })
        .collect()
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
    fn ip_literals_are_recognised() {
        assert_eq!(ip_literal("192.168.1.20"), Some([192, 168, 1, 20].into()));
        assert_eq!(ip_literal("[::1]"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(ip_literal("nas.lan"), None);
    }
}
