//! RFC 6120 §4.7: stream attributes, version negotiation (§4.7.5) and the
//! response header the receiving entity sends (§4.2).

use crate::ns::NS_STREAMS;
use crate::xml::writer::XmlWriter;
use core::cmp::Ordering;
use core::fmt;

/// An XMPP version `major.minor` (§4.7.5): each part an integer, compared
/// numerically ("1.10" > "1.9", "01.0" == "1.0").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const V1_0: Version = Version { major: 1, minor: 0 };

    /// Parses `major.minor`; absurdly large parts saturate (they still compare right
    /// against 1.0, which is all that matters here).
    pub fn parse(s: &str) -> Option<Version> {
        let (major, minor) = s.split_once('.')?;
        Some(Version { major: parse_part(major)?, minor: parse_part(minor)? })
    }
}

fn parse_part(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u32, |n, b| n.saturating_mul(10).saturating_add(u32::from(b - b'0'))))
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The outcome of version negotiation for a server that requires XMPP 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The `version` of the response header; `None` = no attribute.
    pub response: Option<Version>,
    /// False: the stream must end with `unsupported-version`.
    pub supported: bool,
}

/// §4.7.5: the response carries the lower of the initiator's version and 1.0. A
/// header without `version` means a pre-1.0 peer (RFC 6120 reads it as "0.9", the
/// product's RFC 3920 notes as "0.0"): the response then has no `version`, and as
/// wrenhub requires 1.0 (TLS, SASL), the stream ends with `unsupported-version`.
pub fn negotiate(client: Option<Version>) -> Negotiated {
    match client {
        None => Negotiated { response: None, supported: false },
        Some(v) => match v.cmp(&Version::V1_0) {
            Ordering::Less => Negotiated { response: Some(v), supported: false },
            _ => Negotiated { response: Some(Version::V1_0), supported: true },
        },
    }
}

/// A fresh stream id: 128 random bits, hex (§4.7.3: unique and unpredictable).
pub fn new_stream_id() -> String {
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes);
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    id
}

/// The response header (§4.2): `from` the served domain in canonical form, `to` the
/// initiator's `from` when it sent a valid one, a fresh `id`, `version`, `xml:lang`.
pub struct ResponseHeader<'a> {
    pub content_ns: &'a str,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub id: &'a str,
    pub version: Option<Version>,
}

impl ResponseHeader<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<?xml version='1.0'?>");
        let version = self.version.map(|v| v.to_string());
        XmlWriter::new(out)
            .start("stream:stream")
            .attr("xmlns", self.content_ns)
            .attr("xmlns:stream", NS_STREAMS)
            .attr("from", self.from)
            .attr_opt("to", self.to)
            .attr("id", self.id)
            .attr_opt("version", version.as_deref())
            .attr("xml:lang", "en")
            .open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically_per_part() {
        assert!(v("1.10") > v("1.9"));
        assert_eq!(v("01.0"), v("1.0"));
        assert_eq!(v("1.00"), Version::V1_0);
        assert!(v("2.0") > v("1.99"));
        assert!(v("0.9") < Version::V1_0);
        assert!(v("1.99999999999999999999") > Version::V1_0);
        for bad in ["", "1", "1.", ".0", "a.b", "1.0.0", "1.-1", " 1.0", "+1.0"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn negotiation_picks_the_lower_version_and_requires_1_0() {
        assert_eq!(negotiate(None), Negotiated { response: None, supported: false });
        assert_eq!(negotiate(Some(v("0.9"))), Negotiated { response: Some(v("0.9")), supported: false });
        assert_eq!(negotiate(Some(v("1.0"))), Negotiated { response: Some(v("1.0")), supported: true });
        assert_eq!(negotiate(Some(v("1.5"))), Negotiated { response: Some(v("1.0")), supported: true });
        assert_eq!(negotiate(Some(v("2.0"))), Negotiated { response: Some(v("1.0")), supported: true });
    }

    #[test]
    fn stream_ids_are_fresh_128_bit_hex() {
        let a = new_stream_id();
        let b = new_stream_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
