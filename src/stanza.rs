//! Stanzas (RFC 6120 §8): their kinds and types, and stanza errors (§8.3) — every
//! defined condition in one enum with its wire name and default error type, written
//! from one place.

use crate::ns::{NS_MUC, NS_STANZAS};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;

/// The three stanza kinds (§8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn of(el: &Element<'_>) -> Option<Kind> {
        match el.name() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }
}

/// The `type` of an error (§8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn wire_name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

macro_rules! conditions {
    ($($variant:ident => $wire:literal, $ty:ident;)*) => {
        /// A defined stanza error condition (§8.3.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Condition {
            $($variant,)*
        }

        impl Condition {
            pub const ALL: &'static [Condition] = &[$(Condition::$variant,)*];

            pub fn wire_name(self) -> &'static str {
                match self {
                    $(Condition::$variant => $wire,)*
                }
            }

            /// The error type §8.3.3 gives for the condition.
            pub fn default_type(self) -> ErrorType {
                match self {
                    $(Condition::$variant => ErrorType::$ty,)*
                }
            }

            pub fn from_wire(name: &str) -> Option<Condition> {
                match name {
                    $($wire => Some(Condition::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

conditions! {
    BadRequest => "bad-request", Modify;
    Conflict => "conflict", Cancel;
    FeatureNotImplemented => "feature-not-implemented", Cancel;
    Forbidden => "forbidden", Auth;
    Gone => "gone", Cancel;
    InternalServerError => "internal-server-error", Cancel;
    ItemNotFound => "item-not-found", Cancel;
    JidMalformed => "jid-malformed", Modify;
    NotAcceptable => "not-acceptable", Modify;
    NotAllowed => "not-allowed", Cancel;
    NotAuthorized => "not-authorized", Auth;
    PolicyViolation => "policy-violation", Modify;
    RecipientUnavailable => "recipient-unavailable", Wait;
    Redirect => "redirect", Modify;
    RegistrationRequired => "registration-required", Auth;
    RemoteServerNotFound => "remote-server-not-found", Cancel;
    RemoteServerTimeout => "remote-server-timeout", Wait;
    ResourceConstraint => "resource-constraint", Wait;
    ServiceUnavailable => "service-unavailable", Cancel;
    SubscriptionRequired => "subscription-required", Auth;
    UndefinedCondition => "undefined-condition", Cancel;
    UnexpectedRequest => "unexpected-request", Wait;
}

/// A stanza error to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: Condition,
    pub error_type: ErrorType,
    pub text: Option<String>,
    /// Who generated the error (`by`, §8.3.2), usually the server's domain.
    pub by: Option<String>,
    /// An application-specific condition element (name, namespace), §8.3.4.
    pub app: Option<(&'static str, &'static str)>,
}

impl StanzaError {
    pub fn new(condition: Condition) -> Self {
        StanzaError { condition, error_type: condition.default_type(), text: None, by: None, app: None }
    }

    pub fn with_text(condition: Condition, text: impl Into<String>) -> Self {
        StanzaError { text: Some(text.into()), ..StanzaError::new(condition) }
    }

    /// `<error type=…><condition/><text/></error>`.
    pub fn write_error_element(&self, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("error").attr("type", self.error_type.wire_name()).attr_opt("by", self.by.as_deref()).open();
        w.empty_ns(self.condition.wire_name(), NS_STANZAS);
        if let Some(t) = &self.text {
            w.start("text").attr("xmlns", NS_STANZAS).attr("xml:lang", "en").open().text(t).end("text");
        }
        if let Some((name, ns)) = self.app {
            w.empty_ns(name, ns);
        }
        w.end("error");
    }

    /// The error reply to `original` (§8.3.1): same kind and id, `from`/`to`
    /// swapped, `type='error'`. `sender` is the full JID the original came from
    /// (the stamped `from`), `recipient` the address it was sent to. Returns false
    /// (and writes nothing) when `original` is itself an error, which never gets one.
    pub fn write_reply(
        &self,
        original: &Element<'_>,
        sender: &str,
        recipient: Option<&str>,
        out: &mut Vec<u8>,
    ) -> bool {
        // A refused group-chat join echoes its <x xmlns=muc/> (XEP-0045 §7.2.6–
        // §7.2.10; RFC 6120 §8.3.1 allows the original's payload): clients such as
        // Profanity end a join only on an error that carries it.
        let join = original.name() == "presence" && original.child("x", NS_MUC).is_some();
        self.write_reply_with(original, sender, recipient, join, out)
    }

    /// [`StanzaError::write_reply`], with `<x xmlns=muc/>` before the error when
    /// `muc_x` (a group chat's errors to presence always carry it).
    pub fn write_reply_with(
        &self,
        original: &Element<'_>,
        sender: &str,
        recipient: Option<&str>,
        muc_x: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        if original.attr("type").as_deref() == Some("error") {
            return false;
        }
        let name = original.name();
        let id = original.attr("id");
        let mut w = XmlWriter::new(out);
        w.start(name)
            .attr_opt("from", recipient)
            .attr("to", sender)
            .attr_opt("id", id.as_deref())
            .attr("type", "error")
            .open();
        if muc_x {
            w.empty_ns("x", NS_MUC);
        }
        self.write_error_element(out);
        XmlWriter::new(out).end(name);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_22_conditions_round_trip_with_their_default_types() {
        assert_eq!(Condition::ALL.len(), 22);
        for c in Condition::ALL {
            assert_eq!(Condition::from_wire(c.wire_name()), Some(*c));
        }
        assert_eq!(Condition::ServiceUnavailable.default_type(), ErrorType::Cancel);
        assert_eq!(Condition::ResourceConstraint.default_type(), ErrorType::Wait);
        assert_eq!(Condition::NotAuthorized.default_type(), ErrorType::Auth);
    }
}
