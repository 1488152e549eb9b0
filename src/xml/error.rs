//! Errors of the XML layer. This layer knows nothing of streams: the stream layer
//! maps each [`XmlErrorKind`] to exactly one RFC 6120 §4.9.3 condition.

use core::fmt;

/// A limit that protects the framer's memory (each one is a config key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_stanza_size`: bytes of one top-level element (or the stream header).
    StanzaSize,
    /// `max_xml_depth`: nesting depth inside one top-level element.
    Depth,
    /// `max_xml_attributes`: attributes on one element.
    Attributes,
    /// `max_xml_namespaces`: namespace declarations in scope in one top-level element.
    Namespaces,
    /// `max_preauth_stanza_size`: bytes of one element before the peer authenticated.
    PreAuthStanzaSize,
    /// The parsed tables of one element (nodes, attributes, decoded text) may hold
    /// as many bytes as the stanza limit: a run of `<a/>` costs ten times its source.
    Tree,
}

impl Limit {
    /// The config key that sets this limit.
    pub fn config_key(self) -> &'static str {
        match self {
            Limit::StanzaSize => "max_stanza_size",
            Limit::Depth => "max_xml_depth",
            Limit::Attributes => "max_xml_attributes",
            Limit::Namespaces => "max_xml_namespaces",
            Limit::PreAuthStanzaSize => "max_preauth_stanza_size",
            Limit::Tree => "max_stanza_size",
        }
    }
}

/// What is wrong with the input, in the terms of RFC 6120 §4.9.3 and §11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// Not well-formed XML (XML 1.0 §2.1 or Namespaces in XML §7).
    NotWellFormed,
    /// Well-formed but outside the XML subset RFC 6120 §11.1 allows.
    Restricted,
    /// A prefix with no namespace declaration in scope.
    UnboundPrefix,
    /// Not UTF-8 (RFC 6120 §11.6).
    UnsupportedEncoding,
    /// A configured limit was exceeded.
    LimitExceeded(Limit),
}

/// An error found in the input, with a short human-readable detail for `<text/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    pub kind: XmlErrorKind,
    pub detail: &'static str,
}

impl XmlError {
    pub(crate) fn not_well_formed(detail: &'static str) -> Self {
        XmlError { kind: XmlErrorKind::NotWellFormed, detail }
    }
    pub(crate) fn restricted(detail: &'static str) -> Self {
        XmlError { kind: XmlErrorKind::Restricted, detail }
    }
    pub(crate) fn encoding(detail: &'static str) -> Self {
        XmlError { kind: XmlErrorKind::UnsupportedEncoding, detail }
    }
    pub(crate) fn limit(limit: Limit) -> Self {
        let detail = match limit {
            Limit::StanzaSize => "element exceeds max_stanza_size",
            Limit::Depth => "element nesting exceeds max_xml_depth",
            Limit::Attributes => "element has more attributes than max_xml_attributes",
            Limit::Namespaces => "more namespace declarations than max_xml_namespaces",
            Limit::PreAuthStanzaSize => "element exceeds the limit before authentication",
            Limit::Tree => "element has too many parts for its size limit",
        };
        XmlError { kind: XmlErrorKind::LimitExceeded(limit), detail }
    }
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail)
    }
}

impl std::error::Error for XmlError {}
