//! XMPP addresses (JIDs) as defined by RFC 7622, "XMPP: Address Format".
//!
//! A JID is `[localpart@]domainpart[/resourcepart]` (RFC 7622 §3.1). Parsing
//! splits off the resourcepart at the first `/` and then the localpart at the
//! first `@` of what is left (§3.2), so a resourcepart may itself contain `/`
//! and `@`. Each part must be 1 to 1023 bytes long after normalization.
//!
//! * Domainpart (§3.2): one trailing dot is removed; a bracketed IPv6 literal
//!   is stored in canonical compressed form (`[2001:db8::1]`); anything else is
//!   a hostname, lowercased, made of non-empty labels of at most 63 bytes,
//!   with ASCII letters, digits, `-` (not at a label's ends) and `_`. IPv4
//!   literals are accepted through the hostname rules. Non-ASCII labels are
//!   width-mapped, lowercased and NFC-normalized with the PRECIS
//!   UsernameCaseMapped profile (RFC 8265 §3.3), standing in for IDNA2008.
//! * Localpart (§3.3): PRECIS UsernameCaseMapped (RFC 8265 §3.3), then the
//!   characters `" & ' / : < > @` are forbidden (§3.3.1).
//! * Resourcepart (§3.4): PRECIS OpaqueString (RFC 8265 §4.2).
//!
//! PRECIS rules are re-applied until the output is stable, at most three
//! extra times, as RFC 8264 §7 recommends; so parsing is idempotent:
//! `Jid::parse(j.as_str()) == Ok(j)` for every parsed `j`.
//!
//! Deviations from RFC 7622: `juliet@example.com/ foo` (an example of an
//! invalid JID in §3.5) is accepted, because OpaqueString allows spaces
//! anywhere; A-labels (`xn--…`) are not converted to U-labels, and label
//! lengths are counted in UTF-8 bytes rather than in A-label octets;
//! underscores are allowed in domain labels.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

#[cfg(feature = "precis")]
use precis_profiles::precis_core::profile::PrecisFastInvocation;
#[cfg(feature = "precis")]
use precis_profiles::precis_core::Error as PrecisError;
#[cfg(feature = "precis")]
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// Maximum length in bytes of each part of a JID, after normalization.
pub const MAX_PART_LEN: usize = 1023;
/// Maximum length in bytes of one domain label.
const MAX_LABEL_LEN: usize = 63;
/// Characters forbidden in a localpart on top of its PRECIS profile (RFC 7622 §3.3.1).
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// One of the three parts of a JID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JidPart {
    /// The localpart, before the `@`.
    Local,
    /// The domainpart.
    Domain,
    /// The resourcepart, after the first `/`.
    Resource,
}

impl fmt::Display for JidPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JidPart::Local => "localpart",
            JidPart::Domain => "domainpart",
            JidPart::Resource => "resourcepart",
        })
    }
}

/// Why a string is not a valid JID (or JID part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidError {
    /// The part is empty, or the domainpart is missing.
    Empty(JidPart),
    /// The part is longer than 1023 bytes after normalization.
    TooLong(JidPart),
    /// The part contains a character its rules forbid.
    ForbiddenChar(JidPart, char),
    /// The PRECIS profile rejects the part as a whole (e.g. its bidi rule),
    /// or its output does not stabilize (RFC 8264 §7).
    Precis(JidPart),
    /// A domain label is empty (`a..b`, `.a`, `a..`).
    EmptyLabel,
    /// A domain label is longer than 63 bytes.
    LabelTooLong,
    /// A domain label starts or ends with `-`.
    LabelHyphen,
    /// A bracketed domainpart is not a valid IPv6 address.
    InvalidIpv6,
    /// A bare JID was expected but the input has a resourcepart.
    UnexpectedResource,
    /// A full JID was expected but the input has no resourcepart.
    MissingResource,
}

impl JidError {
    /// The part of the JID that is wrong.
    pub fn part(&self) -> JidPart {
        use JidError::*;
        match *self {
            Empty(p) | TooLong(p) | ForbiddenChar(p, _) | Precis(p) => p,
            EmptyLabel | LabelTooLong | LabelHyphen | InvalidIpv6 => JidPart::Domain,
            UnexpectedResource | MissingResource => JidPart::Resource,
        }
    }
}

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JidError::*;
        match *self {
            Empty(JidPart::Domain) => f.write_str("the domainpart is missing or empty"),
            Empty(p) => write!(f, "the {p} is empty"),
            TooLong(p) => write!(f, "the {p} is longer than {MAX_PART_LEN} bytes"),
            ForbiddenChar(p, c) => {
                write!(f, "the {p} contains the forbidden character U+{:04X} {c:?}", c as u32)
            }
            Precis(JidPart::Resource) => f.write_str("the resourcepart is rejected by the PRECIS OpaqueString profile"),
            Precis(p) => write!(f, "the {p} is rejected by the PRECIS UsernameCaseMapped profile"),
            EmptyLabel => f.write_str("the domainpart has an empty label"),
            LabelTooLong => f.write_str("a label of the domainpart is longer than 63 bytes"),
            LabelHyphen => f.write_str("a label of the domainpart starts or ends with '-'"),
            InvalidIpv6 => f.write_str("the bracketed domainpart is not a valid IPv6 address"),
            UnexpectedResource => f.write_str("a bare JID cannot have a resourcepart"),
            MissingResource => f.write_str("a full JID needs a resourcepart"),
        }
    }
}

impl std::error::Error for JidError {}

#[cfg(feature = "precis")]
fn precis_error(part: JidPart, e: PrecisError) -> JidError {
    match e {
        PrecisError::BadCodepoint(info) => match char::from_u32(info.cp) {
            Some(c) => JidError::ForbiddenChar(part, c),
            None => JidError::Precis(part),
        },
        _ => JidError::Precis(part),
    }
}

/// Applies the part's PRECIS profile until its output is stable (RFC 8264 §7).
#[cfg(feature = "precis")]
fn enforce(part: JidPart, input: &str) -> Result<Cow<'_, str>, JidError> {
    // Normalisation shrinks a part at most about threefold (width mapping), so
    // anything over four times the limit is too long before any Unicode work.
    if input.len() > 4 * MAX_PART_LEN {
        return Err(JidError::TooLong(part));
    }
    let apply = |s: &str| -> Result<Option<String>, JidError> {
        let out = match part {
            JidPart::Resource => OpaqueString::enforce(s),
            _ => UsernameCaseMapped::enforce(s),
        };
        match out.map_err(|e| precis_error(part, e))? {
            Cow::Owned(o) if o != s => Ok(Some(o)),
            _ => Ok(None),
        }
    };
    let mut cur = Cow::Borrowed(input);
    // The first application plus at most three re-applications.
    for _ in 0..4 {
        match apply(&cur)? {
            None => return Ok(cur),
            Some(next) => cur = Cow::Owned(next),
        }
    }
    Err(JidError::Precis(part))
}

/// Built without the `precis` feature (for the smallest boards), only ASCII JIDs
/// are accepted; any other character is reported as forbidden.
#[cfg(not(feature = "precis"))]
fn enforce(part: JidPart, input: &str) -> Result<Cow<'_, str>, JidError> {
    match input.chars().find(|c| !c.is_ascii()) {
        Some(c) => Err(JidError::ForbiddenChar(part, c)),
        None => Ok(Cow::Borrowed(input)),
    }
}

fn check_len(part: JidPart, s: Cow<'_, str>) -> Result<Cow<'_, str>, JidError> {
    match s.len() {
        0 => Err(JidError::Empty(part)),
        1..=MAX_PART_LEN => Ok(s),
        _ => Err(JidError::TooLong(part)),
    }
}

fn ascii_lowercase(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        s
    }
}

/// Localpart: UsernameCaseMapped plus RFC 7622 §3.3.1.
fn norm_local(s: &str) -> Result<Cow<'_, str>, JidError> {
    let out = if s.is_ascii() {
        // For ASCII input the profile reduces to: printable, no space, lowercase.
        if let Some(c) = s.chars().find(|c| !('!'..='~').contains(c)) {
            return Err(JidError::ForbiddenChar(JidPart::Local, c));
        }
        ascii_lowercase(Cow::Borrowed(s))
    } else {
        enforce(JidPart::Local, s)?
    };
    if let Some(c) = out.chars().find(|c| LOCAL_FORBIDDEN.contains(c)) {
        return Err(JidError::ForbiddenChar(JidPart::Local, c));
    }
    check_len(JidPart::Local, out)
}

/// Resourcepart: OpaqueString.
fn norm_resource(s: &str) -> Result<Cow<'_, str>, JidError> {
    let out = if s.is_ascii() {
        // For ASCII input the profile reduces to: printable or space, unchanged.
        if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(JidError::ForbiddenChar(JidPart::Resource, c));
        }
        Cow::Borrowed(s)
    } else {
        enforce(JidPart::Resource, s)?
    };
    check_len(JidPart::Resource, out)
}

/// Domainpart: IPv6 literal or hostname (RFC 7622 §3.2).
fn norm_domain(s: &str) -> Result<Cow<'_, str>, JidError> {
    if let Some(inner) = s.strip_prefix('[') {
        let addr: Ipv6Addr = inner.strip_suffix(']').and_then(|a| a.parse().ok()).ok_or(JidError::InvalidIpv6)?;
        return Ok(Cow::Owned(format!("[{addr}]")));
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::Empty(JidPart::Domain)); // "", "."
    }
    let out = if s.is_ascii() {
        ascii_lowercase(Cow::Borrowed(s))
    } else {
        let mut o = String::with_capacity(s.len());
        for (i, label) in s.split('.').enumerate() {
            if i > 0 {
                o.push('.');
            }
            if label.is_ascii() {
                o.push_str(label);
            } else {
                o.push_str(&enforce(JidPart::Domain, label)?);
            }
        }
        o.make_ascii_lowercase();
        Cow::Owned(o)
    };
    for label in out.split('.') {
        let bad = |c: &char| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_');
        if let Some(c) = label.chars().find(bad) {
            return Err(JidError::ForbiddenChar(JidPart::Domain, c));
        }
        if label.is_empty() {
            return Err(JidError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(JidError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(JidError::LabelHyphen);
        }
    }
    check_len(JidPart::Domain, out)
}

/// Splits per RFC 7622 §3.2: resource after the first `/`, then local before the first `@`.
fn split(s: &str) -> (Option<&str>, &str, Option<&str>) {
    let (rest, resource) = match s.split_once('/') {
        Some((rest, r)) => (rest, Some(r)),
        None => (s, None),
    };
    match rest.split_once('@') {
        Some((l, d)) => (Some(l), d, resource),
        None => (None, rest, resource),
    }
}

/// Normalized JID string `[local@]domain[/resource]` with the part boundaries.
///
/// Invariants: `local_len` is 0 (no localpart) or the byte length of the
/// localpart, followed by `@`; `domain_end` is the end of the domainpart,
/// followed by `/` and the resourcepart if `domain_end < s.len()`. Offsets fit
/// in u16 because each part is at most 1023 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Repr {
    s: Box<str>,
    local_len: u16,
    domain_end: u16,
}

impl Repr {
    fn parse(input: &str) -> Result<Repr, JidError> {
        let (local, domain, resource) = split(input);
        let local = local.map(norm_local).transpose()?;
        let domain = norm_domain(domain)?;
        let resource = resource.map(norm_resource).transpose()?;
        let len = |p: &Option<Cow<'_, str>>| p.as_ref().map_or(0, |p| p.len() + 1);
        let mut s = String::with_capacity(len(&local) + domain.len() + len(&resource));
        if let Some(l) = &local {
            s.push_str(l);
            s.push('@');
        }
        s.push_str(&domain);
        let domain_end = s.len() as u16;
        if let Some(r) = &resource {
            s.push('/');
            s.push_str(r);
        }
        Ok(Repr { s: s.into_boxed_str(), local_len: local.map_or(0, |l| l.len() as u16), domain_end })
    }

    fn local(&self) -> Option<&str> {
        (self.local_len > 0).then(|| &self.s[..usize::from(self.local_len)])
    }

    fn domain(&self) -> &str {
        let start = match self.local_len {
            0 => 0,
            n => usize::from(n) + 1,
        };
        &self.s[start..usize::from(self.domain_end)]
    }

    fn resource(&self) -> Option<&str> {
        self.s.get(usize::from(self.domain_end) + 1..)
    }

    fn bare(&self) -> Repr {
        Repr {
            s: self.s[..usize::from(self.domain_end)].into(),
            local_len: self.local_len,
            domain_end: self.domain_end,
        }
    }
}

/// A validated, normalized domainpart (RFC 7622 §3.2).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Domain(Box<str>);

/// A JID without resourcepart: `[localpart@]domainpart`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BareJid(Repr);

/// A JID with a resourcepart: `[localpart@]domainpart/resourcepart`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FullJid(Repr);

/// Any JID, bare or full.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Jid {
    /// A JID without resourcepart.
    Bare(BareJid),
    /// A JID with a resourcepart.
    Full(FullJid),
}

impl Domain {
    /// Parses and normalizes a domainpart alone.
    pub fn parse(s: &str) -> Result<Domain, JidError> {
        Ok(Domain(norm_domain(s)?.into()))
    }

    /// The normalized domainpart.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl BareJid {
    fn repr(&self) -> &Repr {
        &self.0
    }

    /// Parses a JID that must not have a resourcepart.
    pub fn parse(s: &str) -> Result<BareJid, JidError> {
        if split(s).2.is_some() {
            return Err(JidError::UnexpectedResource);
        }
        Repr::parse(s).map(BareJid)
    }
}

impl FullJid {
    fn repr(&self) -> &Repr {
        &self.0
    }

    /// Parses a JID that must have a resourcepart.
    pub fn parse(s: &str) -> Result<FullJid, JidError> {
        if split(s).2.is_none() {
            return Err(JidError::MissingResource);
        }
        Repr::parse(s).map(FullJid)
    }

    /// Builds `bare/resource`, normalizing and checking the resourcepart.
    pub fn new(bare: &BareJid, resource: &str) -> Result<FullJid, JidError> {
        let r = norm_resource(resource)?;
        let mut s = String::with_capacity(bare.as_str().len() + 1 + r.len());
        s.push_str(bare.as_str());
        s.push('/');
        s.push_str(&r);
        Ok(FullJid(Repr { s: s.into_boxed_str(), ..bare.0 }))
    }

    /// The normalized resourcepart.
    pub fn resource(&self) -> &str {
        self.0.resource().unwrap_or_default()
    }

    /// The bare JID, without the resourcepart.
    pub fn to_bare(&self) -> BareJid {
        BareJid(self.0.bare())
    }
}

impl Jid {
    /// Parses a bare or full JID.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let repr = Repr::parse(s)?;
        Ok(if repr.resource().is_some() { Jid::Full(FullJid(repr)) } else { Jid::Bare(BareJid(repr)) })
    }

    fn repr(&self) -> &Repr {
        match self {
            Jid::Bare(BareJid(r)) | Jid::Full(FullJid(r)) => r,
        }
    }

    /// The normalized resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.repr().resource()
    }

    /// The bare JID, without any resourcepart.
    pub fn to_bare(&self) -> BareJid {
        match self {
            Jid::Bare(b) => b.clone(),
            Jid::Full(f) => f.to_bare(),
        }
    }
}

impl From<Domain> for BareJid {
    fn from(d: Domain) -> BareJid {
        let domain_end = d.0.len() as u16;
        BareJid(Repr { s: d.0, local_len: 0, domain_end })
    }
}

impl From<BareJid> for Jid {
    fn from(b: BareJid) -> Jid {
        Jid::Bare(b)
    }
}

impl From<FullJid> for Jid {
    fn from(f: FullJid) -> Jid {
        Jid::Full(f)
    }
}

macro_rules! impl_str_traits {
    ($($t:ident),*) => {$(
        impl FromStr for $t {
            type Err = JidError;
            fn from_str(s: &str) -> Result<$t, JidError> {
                $t::parse(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
impl_str_traits!(Domain, BareJid, FullJid, Jid);

macro_rules! impl_accessors {
    ($($t:ident),*) => {$(
        impl $t {
            /// The normalized localpart, if any.
            pub fn local(&self) -> Option<&str> {
                self.repr().local()
            }
            /// The normalized domainpart.
            pub fn domain(&self) -> &str {
                self.repr().domain()
            }
            /// The canonical normalized string form.
            pub fn as_str(&self) -> &str {
                &self.repr().s
            }
        }
    )*};
}
impl_accessors!(BareJid, FullJid, Jid);

macro_rules! impl_debug {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({:?})"), self.as_str())
            }
        }
    )*};
}
impl_debug!(Domain, BareJid, FullJid);

/// Entry point for the cargo-fuzz target and its regression corpus.
///
/// Parses `data` (decoded as lossy UTF-8) and, when it is a valid JID, asserts
/// that normalization is idempotent and that the typed views agree. Panics
/// only on a bug.
pub fn fuzz_roundtrip(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let Ok(jid) = Jid::parse(&input) else {
        return;
    };
    let again = Jid::parse(jid.as_str());
    assert_eq!(again.as_ref(), Ok(&jid), "not idempotent: {input:?}");
    let bare = jid.to_bare();
    assert_eq!(BareJid::parse(bare.as_str()).as_ref(), Ok(&bare));
    assert_eq!(bare.local(), jid.local());
    assert_eq!(bare.domain(), jid.domain());
    let domain = Domain::parse(jid.domain());
    assert_eq!(domain.as_ref().map(Domain::as_str), Ok(jid.domain()));
    if let Jid::Full(full) = &jid {
        assert_eq!(FullJid::parse(&input).as_ref(), Ok(full));
        assert_eq!(FullJid::new(&bare, full.resource()).as_ref(), Ok(full));
    } else {
        assert_eq!(BareJid::parse(&input), Ok(bare));
    }
}

/// `domain` is `parent` or a subdomain of it (a component serves both).
pub fn within(domain: &str, parent: &str) -> bool {
    domain == parent || domain.strip_suffix(parent).is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::JidPart::{Domain as D, Local as L, Resource as R};
    use super::*;

    fn norm(s: &str) -> String {
        match Jid::parse(s) {
            Ok(j) => j.to_string(),
            Err(e) => panic!("{s:?} rejected: {e}"),
        }
    }

    fn err(s: &str) -> JidError {
        match Jid::parse(s) {
            Ok(j) => panic!("{s:?} accepted as {j}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rfc7622_valid_examples() {
        let same = "juliet@example.com|juliet@example.com/foo|juliet@example.com/foo bar|\
            juliet@example.com/foo@bar|foo\\20bar@example.com|fussball@example.com|\
            fußball@example.com|π@example.com|σ@example.com/foo|ς@example.com/foo|\
            king@example.com/♚|example.com|example.com/foobar|a.example.com/b@example.net";
        for jid in same.split('|') {
            assert_eq!(norm(jid), jid);
        }
        assert_eq!(norm("Σ@example.com/foo"), "σ@example.com/foo");
        // Final sigma is not folded to sigma, nor ß to ss.
        assert_ne!(norm("ς@example.com"), norm("σ@example.com"));
        assert_ne!(norm("fussball@example.com"), norm("fußball@example.com"));
    }

    #[test]
    fn rfc7622_invalid_examples() {
        use JidError::{Empty, ForbiddenChar as Bad};
        assert_eq!(err("\"juliet\"@example.com"), Bad(L, '"'));
        assert_eq!(err("foo bar@example.com"), Bad(L, ' '));
        assert_eq!(err("@example.com/"), Empty(L));
        assert_eq!(err("henryⅣ@example.com"), Bad(L, 'Ⅳ'));
        assert_eq!(err("♚@example.com"), Bad(L, '♚'));
        assert_eq!(err("juliet@"), Empty(D));
        assert_eq!(err("/foobar"), Empty(D));
        // Listed as invalid in §3.5, but OpaqueString allows spaces: accepted.
        assert_eq!(norm("juliet@example.com/ foo"), "juliet@example.com/ foo");
    }

    #[test]
    fn structure_and_empty_parts() {
        for (input, part) in [("@d", L), ("d/", R), ("a@/r", D), ("", D), ("/r", D)] {
            assert_eq!(err(input), JidError::Empty(part), "{input:?}");
        }
        assert_eq!(err("@"), JidError::Empty(L));
        assert_eq!(err("."), JidError::Empty(D));
        assert_eq!(err("a@b@c"), JidError::ForbiddenChar(D, '@'));
        let j = Jid::parse("a@b/c/d@e").unwrap();
        assert_eq!(j.resource(), Some("c/d@e"));
        assert_eq!((j.local(), j.domain()), (Some("a"), "b"));
        assert_eq!(Jid::parse("a/b@c").unwrap().local(), None);
        for c in "&':<>\u{FF20}\u{FF0F}\u{7F}".chars() {
            let e = err(&format!("a{c}b@x"));
            assert!(matches!(e, JidError::ForbiddenChar(L, _)), "{c}");
        }
        assert_eq!(err("d/a\u{7}"), JidError::ForbiddenChar(R, '\u{7}'));
    }

    #[test]
    fn case_folding_and_domains() {
        assert_eq!(norm("Juliet@EXAMPLE.com."), "juliet@example.com");
        assert_eq!(norm("JULIET@Example.COM/Balcony"), "juliet@example.com/Balcony");
        assert_eq!(norm("Bücher.EXAMPLE"), "bücher.example");
        assert_eq!(norm("\u{FF25}xample.com"), "example.com");
        assert_eq!(norm("u@e\u{301}.example"), "u@é.example");
        assert_eq!(norm("_xmpp-client.my_host.example"), "_xmpp-client.my_host.example");
        assert_eq!(norm("xn--bcher-kva.example"), "xn--bcher-kva.example");
        for bad in ["a..b", "a.b..", ".a", "a\u{FF0E}"] {
            assert_eq!(err(bad), JidError::EmptyLabel, "{bad}");
        }
        assert_eq!(err("-a.b"), JidError::LabelHyphen);
        assert_eq!(err("a-.b"), JidError::LabelHyphen);
        for bad in "exa mple.com|example.com\t|a:b|a\"b|a<b|a,b|♚.example".split('|') {
            assert!(matches!(err(bad), JidError::ForbiddenChar(D, _)), "{bad}");
        }
        let label = "a".repeat(MAX_LABEL_LEN);
        assert!(Domain::parse(&format!("{label}.com")).is_ok());
        assert_eq!(Domain::parse(&format!("{label}a.com")), Err(JidError::LabelTooLong));
    }

    #[test]
    fn ip_literals() {
        assert_eq!(norm("127.0.0.1"), "127.0.0.1");
        assert_eq!(norm("user@192.0.2.1/r"), "user@192.0.2.1/r");
        assert_eq!(norm("[::1]"), "[::1]");
        assert_eq!(norm("user@[2001:DB8::1]/r"), "user@[2001:db8::1]/r");
        assert_eq!(norm("[0:0:0:0:0:0:0:1]/x"), "[::1]/x");
        assert_eq!(Jid::parse("[2001:db8::1]").unwrap().domain(), "[2001:db8::1]");
        for bad in ["[::1", "[]", "[zz::1]", "[127.0.0.1]", "[::1].", "[::1%eth0]"] {
            assert_eq!(err(bad), JidError::InvalidIpv6, "{bad}");
        }
        assert_eq!(err("::1"), JidError::ForbiddenChar(D, ':'));
    }

    #[test]
    fn length_edges() {
        let ok = "l".repeat(MAX_PART_LEN);
        let long = "l".repeat(MAX_PART_LEN + 1);
        assert!(Jid::parse(&format!("{ok}@d")).is_ok());
        assert_eq!(err(&format!("{long}@d")), JidError::TooLong(L));
        assert!(Jid::parse(&format!("d/{ok}")).is_ok());
        assert_eq!(err(&format!("d/{long}")), JidError::TooLong(R));
        let units = format!("{}.", "a".repeat(62)).repeat(16); // 1008 bytes
        let d_ok = format!("{units}{}", "b".repeat(15));
        let d_long = format!("{units}{}", "b".repeat(16));
        assert_eq!((d_ok.len(), d_long.len()), (1023, 1024));
        let full = format!("{ok}@{d_ok}/{ok}");
        assert_eq!(norm(&full), full);
        assert_eq!(Jid::parse(&format!("{d_ok}.")).unwrap().domain(), d_ok);
        assert_eq!(err(&d_long), JidError::TooLong(D));
        // The limit applies after normalization: fullwidth letters shrink.
        assert!(Jid::parse(&format!("{}@d", "\u{FF21}".repeat(MAX_PART_LEN))).is_ok());
        let r = FullJid::new(&BareJid::parse("d").unwrap(), &long);
        assert_eq!(r, Err(JidError::TooLong(R)));
    }

    #[test]
    fn typed_constructors() {
        let full = FullJid::parse("Romeo@Example.net/Orchard").unwrap();
        assert_eq!((full.local(), full.domain()), (Some("romeo"), "example.net"));
        assert_eq!(full.resource(), "Orchard");
        assert_eq!(full.to_bare().as_str(), "romeo@example.net");
        assert_eq!(FullJid::parse("a@b"), Err(JidError::MissingResource));
        assert_eq!(BareJid::parse("a@b/c"), Err(JidError::UnexpectedResource));
        let bare: BareJid = "a@B".parse().unwrap();
        assert_eq!(FullJid::new(&bare, "r\u{3000}x").unwrap().as_str(), "a@b/r x");
        assert_eq!(FullJid::new(&bare, ""), Err(JidError::Empty(R)));
        assert_eq!(FullJid::new(&bare, "a\u{7}").unwrap_err().part(), R);
        let d: Domain = "Example.COM.".parse().unwrap();
        assert_eq!(d.as_str(), "example.com");
        assert_eq!(BareJid::from(d).as_str(), "example.com");
        assert_eq!(Domain::parse("a@b"), Err(JidError::ForbiddenChar(D, '@')));
        let j: Jid = "x@y/z".parse().unwrap();
        assert_eq!(j, Jid::from(FullJid::parse("X@Y/z").unwrap()));
        assert_eq!(j.to_bare(), BareJid::parse("x@y").unwrap());
        assert_eq!(format!("{j} {j:?}"), "x@y/z Full(FullJid(\"x@y/z\"))");
        let msg = JidError::ForbiddenChar(L, '"').to_string();
        assert_eq!(msg, "the localpart contains the forbidden character U+0022 '\"'");
    }

    /// Deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn generated_inputs_are_idempotent() {
        // The first 16 tokens are valid in every part; the rest are mostly not.
        let tokens: Vec<&str> = "a|Z|0|1|-|_|ß|é|π|Σ|ς|\u{FF21}|xn--|example|x.y|Bücher|\
            @|/|.| |[|]|:|\"|\t|\0|Ⅳ|İ|ǅ|♚|ﬁ|\u{FF20}|\u{FF0F}|\u{FF0E}|\u{301}|\u{5D0}|\
            \u{627}|\u{3000}|\u{212A}|\u{200D}|\u{FFFD}|\u{1F600}|\u{10FFFF}|[::1]|[2001:DB8::1]"
            .split('|')
            .collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let token = |rng: &mut XorShift| {
            let n = if rng.next().is_multiple_of(4) { tokens.len() } else { 16 };
            tokens[(rng.next() % n as u64) as usize]
        };
        let mut accepted = 0;
        for i in 0..600u32 {
            // Mostly `local@domain/resource` shapes, with random tokens in each part.
            let mut s = String::new();
            for sep in ["", "@", "/"] {
                if i.is_multiple_of(3) || !rng.next().is_multiple_of(4) {
                    s.push_str(sep);
                    (0..1 + rng.next() % 4).for_each(|_| s.push_str(token(&mut rng)));
                }
            }
            fuzz_roundtrip(s.as_bytes());
            if let Ok(j) = Jid::parse(&s) {
                assert_eq!(Jid::parse(j.as_str()), Ok(j));
                accepted += 1;
            }
            let bytes: Vec<u8> = (0..rng.next() % 24).map(|_| rng.next() as u8).collect();
            fuzz_roundtrip(&bytes);
        }
        assert!(accepted > 150, "generator too weak: {accepted}");
    }
}
