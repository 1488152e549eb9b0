//! RFC 6120 §4.9: stream errors, every condition of §4.9.3 in one enum, written
//! from one place.
//!
//! The product's spec was written from RFC 3920, which had 23 conditions. RFC 6120
//! renamed `xml-not-well-formed` to `not-well-formed`, moved `invalid-id` to Server
//! Dialback (XEP-0220, which still sends it as a stream error), and added `reset` and
//! `unsupported-feature`. wrenhub sends the RFC 6120 names and recognises the RFC
//! 3920 ones from peers ([`StreamCondition::from_wire`]).

use crate::ns::NS_STREAMS_ERRORS;
use crate::xml::writer::XmlWriter;
use crate::xml::{Limit, XmlError, XmlErrorKind};
use std::borrow::Cow;

macro_rules! conditions {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// A defined stream error condition (RFC 6120 §4.9.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum StreamCondition {
            $($(#[$doc])* $variant,)*
        }

        impl StreamCondition {
            /// Every condition, in RFC order.
            pub const ALL: &'static [StreamCondition] = &[$(StreamCondition::$variant,)*];

            /// The element name on the wire.
            pub fn wire_name(self) -> &'static str {
                match self {
                    $(StreamCondition::$variant => $wire,)*
                }
            }

            /// Parses a condition a peer sent, accepting RFC 3920 names too.
            pub fn from_wire(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(StreamCondition::$variant),)*
                    "xml-not-well-formed" => Some(StreamCondition::NotWellFormed),
                    _ => None,
                }
            }
        }
    };
}

conditions! {
    /// §4.9.3.1
    BadFormat => "bad-format",
    /// §4.9.3.2
    BadNamespacePrefix => "bad-namespace-prefix",
    /// §4.9.3.3
    Conflict => "conflict",
    /// §4.9.3.4
    ConnectionTimeout => "connection-timeout",
    /// §4.9.3.5
    HostGone => "host-gone",
    /// §4.9.3.6
    HostUnknown => "host-unknown",
    /// §4.9.3.7
    ImproperAddressing => "improper-addressing",
    /// §4.9.3.8
    InternalServerError => "internal-server-error",
    /// §4.9.3.9
    InvalidFrom => "invalid-from",
    /// RFC 3920 §4.7.3; in RFC 6120 only Server Dialback (XEP-0220 §2.4) uses it.
    InvalidId => "invalid-id",
    /// §4.9.3.10
    InvalidNamespace => "invalid-namespace",
    /// §4.9.3.11
    InvalidXml => "invalid-xml",
    /// §4.9.3.12
    NotAuthorized => "not-authorized",
    /// §4.9.3.13 (RFC 3920: `xml-not-well-formed`)
    NotWellFormed => "not-well-formed",
    /// §4.9.3.14
    PolicyViolation => "policy-violation",
    /// §4.9.3.15
    RemoteConnectionFailed => "remote-connection-failed",
    /// §4.9.3.16
    Reset => "reset",
    /// §4.9.3.17
    ResourceConstraint => "resource-constraint",
    /// §4.9.3.18
    RestrictedXml => "restricted-xml",
    /// §4.9.3.19
    SeeOtherHost => "see-other-host",
    /// §4.9.3.20
    SystemShutdown => "system-shutdown",
    /// §4.9.3.21
    UndefinedCondition => "undefined-condition",
    /// §4.9.3.22
    UnsupportedEncoding => "unsupported-encoding",
    /// §4.9.3.23
    UnsupportedFeature => "unsupported-feature",
    /// §4.9.3.24
    UnsupportedStanzaType => "unsupported-stanza-type",
    /// §4.9.3.25
    UnsupportedVersion => "unsupported-version",
}

/// A stream error to send: condition, optional `<text/>`, optional application
/// condition (§4.9.4), and for `see-other-host` the other host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamCondition,
    pub text: Option<Cow<'static, str>>,
    /// An application-specific condition element: (name, namespace).
    pub app: Option<(&'static str, &'static str)>,
    /// The character data of `<see-other-host/>` (a host, or `host:port`).
    pub other_host: Option<Box<str>>,
}

impl StreamError {
    pub fn new(condition: StreamCondition) -> Self {
        StreamError { condition, text: None, app: None, other_host: None }
    }

    pub fn with_text(condition: StreamCondition, text: impl Into<Cow<'static, str>>) -> Self {
        StreamError { text: Some(text.into()), ..StreamError::new(condition) }
    }

    /// Writes `<stream:error>…</stream:error>` (RFC 6120 §4.9.2). The `stream`
    /// prefix is the one wrenhub declares on every header it sends.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("stream:error").open();
        w.start(self.condition.wire_name()).attr("xmlns", NS_STREAMS_ERRORS);
        match &self.other_host {
            Some(host) => {
                w.open().text(host).end(self.condition.wire_name());
            }
            None => {
                w.close_empty();
            }
        }
        if let Some(text) = &self.text {
            w.start("text").attr("xmlns", NS_STREAMS_ERRORS).attr("xml:lang", "en").open().text(text).end("text");
        }
        if let Some((name, ns)) = self.app {
            w.empty_ns(name, ns);
        }
        w.end("stream:error");
    }
}

impl From<XmlError> for StreamError {
    /// The one mapping from XML-layer errors to stream conditions (RFC 6120 §4.9.3,
    /// §11): limits are `policy-violation` with the limit named in the text.
    fn from(e: XmlError) -> Self {
        let condition = match e.kind {
            XmlErrorKind::NotWellFormed => StreamCondition::NotWellFormed,
            XmlErrorKind::Restricted => StreamCondition::RestrictedXml,
            XmlErrorKind::UnboundPrefix => StreamCondition::BadNamespacePrefix,
            XmlErrorKind::UnsupportedEncoding => StreamCondition::UnsupportedEncoding,
            XmlErrorKind::LimitExceeded(_) => StreamCondition::PolicyViolation,
        };
        let text = match e.kind {
            XmlErrorKind::LimitExceeded(limit) => limit_text(limit),
            _ => Cow::Borrowed(e.detail),
        };
        StreamError::with_text(condition, text)
    }
}

fn limit_text(limit: Limit) -> Cow<'static, str> {
    Cow::Owned(format!("{} (limit {})", XmlError::limit(limit).detail, limit.config_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rfc6120_condition_has_its_wire_name_and_parses_back() {
        assert_eq!(StreamCondition::ALL.len(), 26); // 25 of RFC 6120 + invalid-id
        for c in StreamCondition::ALL {
            assert_eq!(StreamCondition::from_wire(c.wire_name()), Some(*c));
        }
        assert_eq!(StreamCondition::from_wire("xml-not-well-formed"), Some(StreamCondition::NotWellFormed));
        assert_eq!(StreamCondition::from_wire("nonsense"), None);
    }

    #[test]
    fn error_is_written_with_text_and_app_condition() {
        let mut e = StreamError::with_text(StreamCondition::PolicyViolation, "too <big>");
        e.app = Some(("stanza-too-big", "urn:xmpp:errors"));
        let mut out = Vec::new();
        e.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too &lt;big&gt;</text>\
             <stanza-too-big xmlns='urn:xmpp:errors'/></stream:error>"
        );
    }
}
