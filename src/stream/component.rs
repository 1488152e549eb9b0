//! The external component stream (XEP-0114, `jabber:component:accept`) as a
//! sans-I/O state machine: the header names the component's domain, the server
//! answers with a fresh id, the component proves the shared secret with
//! `<handshake>hex(SHA-1(id ‖ secret))</handshake>`, then exchanges stanzas whose
//! `from` must lie within its domain.

use super::error::{StreamCondition, StreamError};
use super::header::new_stream_id;
pub use super::Input;
use crate::components::Link;
use crate::jid::{Domain, Jid};
use crate::ns::{NS_COMPONENT, NS_STREAMS};
use crate::sasl::scram::ct_eq;
use crate::xml::writer::XmlWriter;
use crate::xml::{Element, Event};
use std::rc::Rc;

/// What the component stream needs from the rest of the server.
pub struct Env<'a> {
    pub hub: crate::hub::Hub<'a>,
    /// Wrong handshakes count per source address, like failed logins (S19).
    pub limiter: &'a crate::auth_limiter::AuthLimiter,
    pub peer: std::net::IpAddr,
}

enum Phase {
    AwaitingHeader,
    /// Header answered; waiting for the handshake of this configured component.
    AwaitingHandshake(usize),
    Established(Rc<Link>),
    Closed,
}

/// What the connection loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    Close,
}

pub struct ComponentStream {
    phase: Phase,
    stream_id: String,
    header_sent: bool,
    /// The domain the header asked for (the `from` of our header).
    domain: String,
    /// The registered link, kept after the stream closed for the loop to clean up.
    ended: Option<Rc<Link>>,
}

impl Default for ComponentStream {
    fn default() -> Self {
        ComponentStream {
            phase: Phase::AwaitingHeader,
            stream_id: String::new(),
            header_sent: false,
            domain: String::new(),
            ended: None,
        }
    }
}

impl ComponentStream {
    pub fn link(&self) -> Option<&Rc<Link>> {
        match &self.phase {
            Phase::Established(l) => Some(l),
            _ => None,
        }
    }

    /// The registered link, also after the stream closed (for cleanup; once).
    pub fn take_link(&mut self) -> Option<Rc<Link>> {
        match &self.phase {
            Phase::Established(l) => Some(Rc::clone(l)),
            _ => self.ended.take(),
        }
    }

    pub fn awaiting_header(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHeader)
    }

    pub fn established(&self) -> bool {
        matches!(self.phase, Phase::Established(_))
    }

    pub fn handle(&mut self, input: Input<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if matches!(self.phase, Phase::Closed) {
            return Step::Close;
        }
        match input.into_event() {
            Ok(Event::Header(h)) => self.on_header(&h, env, out),
            Ok(Event::Element(el)) => self.on_element(&el, env, out),
            Ok(Event::StreamEnd) => self.close(out),
            Err(e) => self.fail(e, out),
        }
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if self.stream_id.is_empty() {
            self.stream_id = new_stream_id();
        }
        XmlWriter::new(out)
            .start("stream:stream")
            .attr("xmlns:stream", NS_STREAMS)
            .attr("xmlns", NS_COMPONENT)
            .attr("from", &self.domain)
            .attr("id", &self.stream_id)
            .open();
        self.header_sent = true;
    }

    /// XEP-0114 §3: the component names its domain in `to`.
    fn on_header(&mut self, header: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !matches!(self.phase, Phase::AwaitingHeader) {
            return self.fail(StreamError::with_text(StreamCondition::BadFormat, "unexpected stream header"), out);
        }
        let to = header.attr("to").and_then(|t| t.parse::<Domain>().ok());
        self.domain = to.as_ref().map(|d| d.as_str().to_string()).unwrap_or_default();
        self.stream_id = new_stream_id();
        self.write_header(out);
        if header.ns() != NS_STREAMS || header.name() != "stream" {
            return self.fail(StreamError::with_text(StreamCondition::InvalidNamespace, "not an XMPP stream"), out);
        }
        if header.stream_namespace("") != Some(NS_COMPONENT) {
            return self.fail(
                StreamError::with_text(
                    StreamCondition::InvalidNamespace,
                    "the content namespace must be jabber:component:accept",
                ),
                out,
            );
        }
        let index = to.and_then(|d| env.hub.configured_components.iter().position(|c| c.domain == d));
        match index {
            Some(i) => {
                self.phase = Phase::AwaitingHandshake(i);
                Step::Continue
            }
            None => self.fail(
                StreamError::with_text(StreamCondition::HostUnknown, "no component is configured for that domain"),
                out,
            ),
        }
    }

    fn on_element(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        match &self.phase {
            Phase::AwaitingHandshake(i) if el.is("handshake", NS_COMPONENT) => {
                let config = &env.hub.configured_components[*i];
                let expected = hex_sha1(&format!("{}{}", self.stream_id, config.secret));
                let given = el.text().trim().to_ascii_lowercase();
                let now = std::time::Instant::now();
                if !env.limiter.allowed(env.peer, now) {
                    return self.fail(
                        StreamError::with_text(
                            StreamCondition::PolicyViolation,
                            "too many wrong handshakes from this address; wait a minute",
                        ),
                        out,
                    );
                }
                if !ct_eq(given.as_bytes(), expected.as_bytes()) {
                    env.limiter.record_failure(env.peer, now);
                    return self.fail(StreamError::with_text(StreamCondition::NotAuthorized, "wrong handshake"), out);
                }
                match env.hub.components.connect(config.domain.clone()) {
                    Some(link) => {
                        XmlWriter::new(out).start("handshake").close_empty();
                        log::info!("component {} connected", config.domain);
                        self.phase = Phase::Established(link);
                        Step::Continue
                    }
                    None => self.fail(
                        StreamError::with_text(StreamCondition::Conflict, "this component is already connected"),
                        out,
                    ),
                }
            }
            Phase::Established(link)
                if el.ns() == NS_COMPONENT && matches!(el.name(), "message" | "presence" | "iq") =>
            {
                // §3.2: the component speaks only for JIDs within its domain.
                let from_ok = el.attr("from").and_then(|f| f.parse::<Jid>().ok()).is_some_and(|f| {
                    let d = f.domain();
                    crate::jid::within(d, link.domain.as_str())
                });
                if !from_ok {
                    return self.fail(
                        StreamError::with_text(
                            StreamCondition::InvalidFrom,
                            "'from' must be within the component's domain",
                        ),
                        out,
                    );
                }
                if el.attr("to").is_none() {
                    return self.fail(
                        StreamError::with_text(StreamCondition::ImproperAddressing, "a component's stanza needs 'to'"),
                        out,
                    );
                }
                let link = Rc::clone(link);
                env.hub.route_from_component(&link, el, out);
                Step::Continue
            }
            Phase::AwaitingHandshake(_) => {
                self.fail(StreamError::with_text(StreamCondition::NotAuthorized, "the handshake comes first"), out)
            }
            _ => self.fail(StreamError::with_text(StreamCondition::UnsupportedStanzaType, "unsupported element"), out),
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) -> Step {
        if !self.header_sent {
            self.write_header(out);
        }
        out.extend_from_slice(b"</stream:stream>");
        if let Phase::Established(link) = std::mem::replace(&mut self.phase, Phase::Closed) {
            self.ended = Some(link);
        }
        Step::Close
    }

    /// Ends the stream with an error (header first if none was sent).
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<u8>) -> Step {
        if matches!(self.phase, Phase::Closed) {
            return Step::Close;
        }
        if !self.header_sent {
            self.write_header(out);
        }
        log::debug!("component stream {}: {}", self.stream_id, error.condition.wire_name());
        error.write(out);
        self.close(out)
    }
}

/// Lower-case hex of SHA-1 (XEP-0114 §3).
pub fn hex_sha1(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_digest_is_hex_sha1_of_id_and_secret() {
        // Known answer from an independent SHA-1 (Python hashlib).
        assert_eq!(super::hex_sha1("3BF96D75sousvide"), "174e01f581c146954e0140194bfbbf3c47c305fe");
    }
}
