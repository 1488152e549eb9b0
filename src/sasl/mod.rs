//! SASL for XMPP (RFC 6120 §6): the mechanisms wrenhub offers, their failure
//! conditions (§6.5) in one enum, and the `<challenge/>`/`<success/>`/`<failure/>`
//! elements. Sans-I/O: the stream layer drives it.

pub mod fast;
pub mod sasl2;
pub mod scram;

use crate::ns::NS_SASL;
use crate::xml::writer::XmlWriter;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use scram::ScramHash;

/// A SASL failure condition (RFC 6120 §6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl Failure {
    pub fn wire_name(self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::AccountDisabled => "account-disabled",
            Failure::CredentialsExpired => "credentials-expired",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// `<failure><condition/><text/></failure>` (§6.4.5).
    pub fn write(self, text: Option<&str>, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("failure").attr("xmlns", NS_SASL).open();
        w.start(self.wire_name()).close_empty();
        if let Some(t) = text {
            w.start("text").attr("xml:lang", "en").open().text(t).end("text");
        }
        w.end("failure");
    }
}

/// A mechanism wrenhub implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Scram { hash: ScramHash, plus: bool },
    Plain,
}

impl Mechanism {
    /// Strongest first: the order of the `<mechanisms/>` list.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Scram { hash: ScramHash::Sha256, plus: true },
        Mechanism::Scram { hash: ScramHash::Sha1, plus: true },
        Mechanism::Scram { hash: ScramHash::Sha256, plus: false },
        Mechanism::Scram { hash: ScramHash::Sha1, plus: false },
        Mechanism::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Scram { hash: ScramHash::Sha256, plus: true } => "SCRAM-SHA-256-PLUS",
            Mechanism::Scram { hash: ScramHash::Sha1, plus: true } => "SCRAM-SHA-1-PLUS",
            Mechanism::Scram { hash: ScramHash::Sha256, plus: false } => "SCRAM-SHA-256",
            Mechanism::Scram { hash: ScramHash::Sha1, plus: false } => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Decodes the base64 payload of `<auth/>` or `<response/>`; `=` is an empty one.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, Failure> {
    let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| Failure::IncorrectEncoding)
}

/// `<challenge>` or `<success>` with a base64 payload.
pub fn write_payload(name: &str, payload: &[u8], out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start(name).attr("xmlns", NS_SASL);
    if payload.is_empty() {
        w.close_empty();
    } else {
        w.open().text(&B64.encode(payload)).end(name);
    }
}

/// Prepares a password with the PRECIS OpaqueString profile (RFC 8265 §4.2, as
/// RFC 7677 asks for SCRAM); `None` if the profile rejects it. Built without the
/// `precis` feature, passwords are used as given.
pub fn normalize_password(password: &str) -> Option<String> {
    #[cfg(feature = "precis")]
    {
        use precis_profiles::precis_core::profile::PrecisFastInvocation;
        precis_profiles::OpaqueString::enforce(password).ok().map(|p| p.into_owned())
    }
    #[cfg(not(feature = "precis"))]
    {
        (!password.is_empty()).then(|| password.to_string())
    }
}

/// The PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
pub struct PlainCredentials {
    pub authzid: Option<String>,
    pub username: String,
    pub password: String,
}

pub fn parse_plain(msg: &[u8]) -> Result<PlainCredentials, Failure> {
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::MalformedRequest);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Failure::MalformedRequest);
    let (authz, user, pass) = (text(authz)?, text(user)?, text(pass)?);
    if user.is_empty() || pass.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    Ok(PlainCredentials { authzid: (!authz.is_empty()).then_some(authz), username: user, password: pass })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
    }

    #[test]
    fn plain_messages_parse() {
        let c = parse_plain(b"\0juliet\0pw").unwrap();
        assert_eq!((c.authzid, c.username.as_str(), c.password.as_str()), (None, "juliet", "pw"));
        assert!(parse_plain(b"juliet\0pw").is_err());
        assert!(parse_plain(b"\0\0pw").is_err());
        assert_eq!(decode_payload("=").unwrap(), b"");
        assert_eq!(decode_payload("!!").unwrap_err(), Failure::IncorrectEncoding);
    }

    #[test]
    fn failure_is_written_per_rfc6120() {
        let mut out = Vec::new();
        Failure::NotAuthorized.write(Some("bad"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text xml:lang='en'>bad</text></failure>"
        );
    }
}
