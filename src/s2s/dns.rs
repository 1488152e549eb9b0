//! A minimal DNS client for SRV lookups (RFC 1035, RFC 2782): one UDP query to one
//! server with a bounded wait, the answer parsed with bounds checks on every read.
//! A/AAAA lookups use the system resolver on a blocking thread instead
//! (`resolve.rs`), so `/etc/hosts` works; SRV is what libc cannot do.

use async_io::{Async, Timer};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, without the trailing dot ("" for ".": no service).
    pub target: String,
}

/// Why a lookup gave no records.
#[derive(Debug, PartialEq, Eq)]
pub enum DnsError {
    Io(String),
    Timeout,
    /// The answer was not a well-formed answer to our question.
    Malformed,
    /// The server answered with this RCODE (2 SERVFAIL, 5 REFUSED...).
    Rcode(u8),
    /// The answer was truncated (TC): not taken as complete (no TCP retry).
    Truncated,
}

const TYPE_SRV: u16 = 33;

/// The first `nameserver` of /etc/resolv.conf.
pub fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
}

/// A recursive query for the SRV records of `name`.
pub fn query(name: &str, id: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    (q.len() <= 512).then_some(q)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a (possibly compressed) name at `at`; returns it and the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(at)? as usize;
        match len {
            0 => return Some((name, end.unwrap_or(at + 1))),
            l if l & 0xC0 == 0xC0 => {
                let pointer = (u16_at(msg, at)? & 0x3FFF) as usize;
                end.get_or_insert(at + 2);
                at = pointer;
            }
            l if l <= 63 => {
                let label = msg.get(at + 1..at + 1 + l)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(std::str::from_utf8(label).ok()?);
                if name.len() > 255 {
                    return None;
                }
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

/// The name of the first question of a message.
pub fn question_name(msg: &[u8]) -> Option<String> {
    read_name(msg, 12).map(|(name, _)| name)
}

/// Parses the SRV records of an answer to query `id` for `name` (as sent, with its
/// letters' case randomised, RFC-draft 0x20): the question must come back exactly
/// as asked, each record must be owned by that name, and a truncated answer is not
/// taken as complete (REVIEW S17). Spoofing then needs the port, the id and the case.
pub fn parse_srv(msg: &[u8], id: u16, name: &str) -> Result<Vec<Srv>, DnsError> {
    let malformed = || DnsError::Malformed;
    if u16_at(msg, 0).ok_or_else(malformed)? != id {
        return Err(DnsError::Malformed);
    }
    let flags = u16_at(msg, 2).ok_or_else(malformed)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000F) as u8 {
        0 => {}
        3 => return Ok(Vec::new()), // NXDOMAIN: no records
        rcode => return Err(DnsError::Rcode(rcode)),
    }
    let questions = u16_at(msg, 4).ok_or_else(malformed)?;
    let answers = u16_at(msg, 6).ok_or_else(malformed)?;
    if questions != 1 {
        return Err(DnsError::Malformed);
    }
    let (question, after_question) = read_name(msg, 12).ok_or_else(malformed)?;
    if question != name.trim_end_matches('.') {
        return Err(DnsError::Malformed);
    }
    let mut at = after_question + 4;
    let mut records = Vec::new();
    for _ in 0..answers.min(64) {
        let (owner, after) = read_name(msg, at).ok_or_else(malformed)?;
        let rtype = u16_at(msg, after).ok_or_else(malformed)?;
        let rdlength = u16_at(msg, after + 8).ok_or_else(malformed)? as usize;
        let rdata = after + 10;
        if msg.len() < rdata + rdlength {
            return Err(DnsError::Malformed);
        }
        if rtype == TYPE_SRV && owner.eq_ignore_ascii_case(&question) {
            let priority = u16_at(msg, rdata).ok_or_else(malformed)?;
            let weight = u16_at(msg, rdata + 2).ok_or_else(malformed)?;
            let port = u16_at(msg, rdata + 4).ok_or_else(malformed)?;
            let (target, _) = read_name(msg, rdata + 6).ok_or_else(malformed)?;
            records.push(Srv { priority, weight, port, target });
        }
        at = rdata + rdlength;
    }
    Ok(records)
}

/// Looks up the SRV records of `name` at `server`, waiting at most `timeout`.
pub async fn lookup_srv(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<Srv>, DnsError> {
    let mut id_bytes = [0u8; 2];
    getrandom::fill(&mut id_bytes).map_err(|e| DnsError::Io(e.to_string()))?;
    let id = u16::from_be_bytes(id_bytes);
    let name = random_case(name);
    let q = query(&name, id).ok_or(DnsError::Malformed)?;
    let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = Async::<UdpSocket>::bind(local).map_err(|e| DnsError::Io(e.to_string()))?;
    socket.get_ref().connect(server).map_err(|e| DnsError::Io(e.to_string()))?;
    socket.send(&q).await.map_err(|e| DnsError::Io(e.to_string()))?;
    let mut buf = [0u8; 1500];
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let received = futures_lite::future::or(async { Some(socket.recv(&mut buf).await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        match received {
            None => return Err(DnsError::Timeout),
            Some(Err(e)) => return Err(DnsError::Io(e.to_string())),
            // A stray datagram with another id is ignored; ours may still come.
            Some(Ok(n)) => match parse_srv(&buf[..n], id, &name) {
                Err(DnsError::Malformed) if u16_at(&buf[..n], 0) != Some(id) => continue,
                other => return other,
            },
        }
    }
}

/// The name with each letter's case chosen at random (a DNS server echoes the
/// question as asked; a blind spoofer has to guess the case too).
fn random_case(name: &str) -> String {
    let mut bits = [0u8; 32];
    crate::random::fill(&mut bits);
    name.chars()
        .enumerate()
        .map(
            |(i, c)| {
                if bits[(i / 8) % 32] >> (i % 8) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            },
        )
        .collect()
}

/// An SRV answer, as a test DNS server sends it (also used by the unit tests).
pub fn srv_answer(query: &[u8], records: &[Srv]) -> Option<Vec<u8>> {
    let (_, qend) = read_name(query, 12)?;
    let question = query.get(12..qend + 4)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(query.get(0..2)?);
    let rcode = if records.is_empty() { 3u8 } else { 0 };
    out.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1]);
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for r in records {
        out.extend_from_slice(&[0xC0, 12]); // the question's name
        out.extend_from_slice(&TYPE_SRV.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        let mut rdata = Vec::new();
        rdata.extend_from_slice(&r.priority.to_be_bytes());
        rdata.extend_from_slice(&r.weight.to_be_bytes());
        rdata.extend_from_slice(&r.port.to_be_bytes());
        for label in r.target.split('.').filter(|l| !l.is_empty()) {
            rdata.push(label.len() as u8);
            rdata.extend_from_slice(label.as_bytes());
        }
        rdata.push(0);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_xmpp-server._tcp.example.net";

    #[test]
    fn the_question_must_come_back_as_asked_and_truncation_is_not_complete() {
        // S17: question and owner names were not compared, TC was ignored.
        let asked = random_case(NAME);
        assert!(asked.eq_ignore_ascii_case(NAME));
        let q = query(&asked, 5).unwrap();
        let records = vec![Srv { priority: 1, weight: 1, port: 5269, target: "xmpp.example.net".into() }];
        let a = srv_answer(&q, &records).unwrap();
        assert_eq!(parse_srv(&a, 5, &asked).unwrap(), records);
        let other_case: String = asked
            .chars()
            .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        if other_case != asked {
            assert_eq!(parse_srv(&a, 5, &other_case), Err(DnsError::Malformed), "a spoofer guessing the case wrong");
        }
        let other = srv_answer(&query("_xmpp-server._tcp.evil.example", 5).unwrap(), &records).unwrap();
        assert_eq!(parse_srv(&other, 5, &asked), Err(DnsError::Malformed), "an answer to another question");
        let mut truncated = a.clone();
        truncated[2] |= 0x02;
        assert_eq!(parse_srv(&truncated, 5, &asked), Err(DnsError::Truncated));
    }

    #[test]
    fn query_and_answer_round_trip() {
        let q = query("_xmpp-server._tcp.example.net", 0x1234).unwrap();
        let records = vec![
            Srv { priority: 10, weight: 5, port: 5269, target: "xmpp.example.net".into() },
            Srv { priority: 20, weight: 0, port: 5270, target: "backup.example.net".into() },
        ];
        let a = srv_answer(&q, &records).unwrap();
        assert_eq!(parse_srv(&a, 0x1234, NAME).unwrap(), records);
        assert_eq!(parse_srv(&a, 0x9999, NAME), Err(DnsError::Malformed));
        let none = srv_answer(&q, &[]).unwrap();
        assert_eq!(parse_srv(&none, 0x1234, NAME).unwrap(), vec![]);
    }

    #[test]
    fn truncated_or_looping_answers_are_rejected() {
        let q = query("_xmpp-server._tcp.example.net", 7).unwrap();
        let a = srv_answer(&q, &[Srv { priority: 1, weight: 1, port: 1, target: "t.example".into() }]).unwrap();
        for cut in 0..a.len() {
            assert!(parse_srv(&a[..cut], 7, NAME).is_err(), "cut at {cut}");
        }
        let mut looping = a.clone();
        let n = looping.len();
        // The target name points at itself.
        looping[n - 11] = 0xC0;
        looping[n - 10] = (n - 11) as u8;
        assert!(parse_srv(&looping, 7, NAME).is_err());
    }

    #[test]
    fn bad_names_make_no_query() {
        assert!(query("a..b", 1).is_none());
        assert!(query(&"x".repeat(64), 1).is_none());
    }
}
