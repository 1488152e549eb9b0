//! Just enough DER (X.690) to summarise an X.509 certificate for `wrenhub cert show`
//! and for deciding whether the generated certificate still covers the domain:
//! subject CN, subject alternative names, notAfter. Bounded and panic-free on any
//! input; anything unexpected is `None`.

/// A tag-length-value: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Iterates over the TLVs inside a constructed value.
fn items(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    core::iter::from_fn(move || {
        let (tag, value, rest) = tlv(input)?;
        input = rest;
        Some((tag, value))
    })
}

const SEQUENCE: u8 = 0x30;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// What `cert show` prints about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    pub subject_cn: Option<String>,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
    /// notAfter as `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    /// notAfter as seconds since the epoch.
    pub not_after_unix: i64,
}

/// The hash `tls-server-end-point` uses for a certificate (RFC 5929 §4.1): that of
/// its signature algorithm, SHA-256 for MD5, SHA-1 and SHA-256, and for algorithms
/// this does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

/// Reads the certificate's outer `signatureAlgorithm` (REVIEW S14: Let's Encrypt's
/// ECDSA chain signs leaves with ecdsa-with-SHA384).
pub fn end_point_hash(der: &[u8]) -> EndPointHash {
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    let oid = (|| {
        let (SEQUENCE, cert, _) = tlv(der)? else { return None };
        let mut parts = items(cert);
        let _tbs = parts.next()?;
        let (SEQUENCE, algorithm) = parts.next()? else { return None };
        let (0x06, oid) = items(algorithm).next()? else { return None };
        Some(oid)
    })();
    match oid {
        Some(ECDSA_SHA384) | Some(RSA_SHA384) => EndPointHash::Sha384,
        Some(ECDSA_SHA512) | Some(RSA_SHA512) => EndPointHash::Sha512,
        _ => EndPointHash::Sha256,
    }
}

/// Summarises a DER certificate.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut fields = items(tbs).peekable();
    if fields.peek().map(|f| f.0) == Some(0xa0) {
        fields.next(); // version
    }
    let _serial = fields.next()?;
    let _algorithm = fields.next()?;
    let _issuer = fields.next()?;
    let (SEQUENCE, validity) = fields.next()? else {
        return None;
    };
    let mut times = items(validity);
    let _not_before = times.next()?;
    let (time_tag, not_after) = times.next()?;
    let (not_after, not_after_unix) = parse_time(time_tag, not_after)?;
    let (SEQUENCE, subject) = fields.next()? else {
        return None;
    };
    let subject_cn = find_cn(subject);
    let mut names = Vec::new();
    for (tag, value) in fields {
        if tag == 0xa3 {
            let (SEQUENCE, exts, _) = tlv(value)? else {
                return None;
            };
            for (_, ext) in items(exts) {
                let mut parts = items(ext);
                let (0x06, oid) = parts.next()? else { continue };
                if oid != OID_SAN {
                    continue;
                }
                let Some((0x04, octets)) = parts.find(|p| p.0 == 0x04) else {
                    continue;
                };
                let (SEQUENCE, general_names, _) = tlv(octets)? else {
                    continue;
                };
                for (tag, name) in items(general_names) {
                    match tag {
                        0x82 => names.push(String::from_utf8_lossy(name).into_owned()),
                        0x87 => names.push(ip_text(name)),
                        _ => {}
                    }
                }
            }
        }
    }
    Some(CertSummary { subject_cn, names, not_after, not_after_unix })
}

/// The DNS names a CA certificate's Name Constraints permit (RFC 5280 §4.2.1.10,
/// `permittedSubtrees` with `dNSName` bases), lowercase, without a leading dot.
/// Empty when it has none (an unconstrained CA covers no domain in particular).
pub fn permitted_dns_names(der: &[u8]) -> Vec<String> {
    const OID_NAME_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x1e];
    let extensions = (|| {
        let (SEQUENCE, cert, _) = tlv(der)? else { return None };
        let (SEQUENCE, tbs, _) = tlv(cert)? else { return None };
        let (_, exts) = items(tbs).find(|(tag, _)| *tag == 0xa3)?;
        let (SEQUENCE, exts, _) = tlv(exts)? else { return None };
        Some(exts)
    })();
    let mut names = Vec::new();
    for (_, ext) in extensions.into_iter().flat_map(items) {
        let mut parts = items(ext);
        if parts.next() != Some((0x06, OID_NAME_CONSTRAINTS)) {
            continue;
        }
        let Some((0x04, octets)) = parts.find(|p| p.0 == 0x04) else { continue };
        let Some((SEQUENCE, constraints, _)) = tlv(octets) else { continue };
        for (_, subtrees) in items(constraints).filter(|(tag, _)| *tag == 0xa0) {
            for (tag, subtree) in items(subtrees) {
                if tag != SEQUENCE {
                    continue;
                }
                if let Some((0x82, base)) = items(subtree).next() {
                    let name = String::from_utf8_lossy(base).trim_start_matches('.').to_ascii_lowercase();
                    if !name.is_empty() {
                        names.push(name);
                    }
                }
            }
        }
    }
    names
}

fn find_cn(name: &[u8]) -> Option<String> {
    for (_, rdn) in items(name) {
        for (_, attr) in items(rdn) {
            let mut parts = items(attr);
            if let (Some((0x06, OID_CN)), Some((_, value))) = (parts.next(), parts.next()) {
                return Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    None
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => String::from("?"),
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, v: &[u8]) -> Option<(String, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| rest.get(r).and_then(|t| t.parse::<i64>().ok());
    let (month, day, hour, min, sec) = (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let unix = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
    Some((format!("{year:04}-{month:02}-{day:02} {hour:02}:{min:02}:{sec:02} UTC"), unix))
}

/// Days since 1970-01-01 (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// SHA-256 fingerprint as colon-separated upper-case hex (the form `openssl x509
/// -fingerprint -sha256` prints and phones show).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        // S14: SHA-256 was used whatever signed the certificate.
        for (alg, want) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, EndPointHash::Sha256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, EndPointHash::Sha384),
            (&rcgen::PKCS_ED25519, EndPointHash::Sha256),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["hub.lan".to_string()]).unwrap().self_signed(&key).unwrap();
            assert_eq!(end_point_hash(cert.der()), want);
        }
        assert_eq!(end_point_hash(b"not a certificate"), EndPointHash::Sha256);
    }

    use super::*;

    #[test]
    fn garbage_has_no_permitted_names_and_no_panic() {
        for junk in [&b""[..], b"\x30\x03\x30\x01", b"\x30\x82\xff\xff", &[0x30; 64]] {
            assert!(permitted_dns_names(junk).is_empty());
        }
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for input in [&[][..], &[0x30], &[0x30, 0x85, 1, 2, 3, 4, 5], &[0x30, 0x02, 0x30, 0x05], &[0xff; 64]] {
            assert_eq!(summarize(input), None);
        }
    }

    #[test]
    fn times_parse_both_forms() {
        assert_eq!(parse_time(0x17, b"491231235959Z").unwrap().0, "2049-12-31 23:59:59 UTC");
        assert_eq!(parse_time(0x18, b"20500101000000Z").unwrap().1, 2_524_608_000);
        assert_eq!(parse_time(0x17, b"bad"), None);
    }
}
