//! The client-to-server stream as a sans-I/O state machine (RFC 6120 §4): it takes
//! framer events, timer expiries and shutdown, and writes the server's side of the
//! stream into an output buffer. The socket loop around it lives in `net/`.
//!
//! The phases are an enum, so "a stanza before authentication" is a match arm
//! (RFC 6120 §4.3.2 / the product's spec §3.1: `not-authorized`, not processed).

use super::error::{StreamCondition, StreamError};
use super::header::{negotiate, new_stream_id, ResponseHeader, Version, NS_CLIENT, NS_STREAMS};
use crate::jid::{BareJid, Domain};
use crate::xml::writer::XmlWriter;
use crate::xml::{Element, Event, XmlError};
use std::rc::Rc;

/// Where a client stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the client's stream header.
    AwaitingHeader,
    /// Header exchanged, features sent, the client is not authenticated.
    Negotiating,
    /// The server has closed its side.
    Closed,
}

/// What happened to the stream.
#[derive(Debug)]
pub enum Input<'a> {
    Xml(Event<'a>),
    XmlError(XmlError),
    /// A deadline passed; the text says which one.
    Timeout(&'static str),
    /// The server is stopping (SIGTERM / SIGINT).
    Shutdown,
}

/// What the connection loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Flush the output and keep reading.
    Continue,
    /// Flush the output, then close the connection.
    Close,
}

/// One client stream.
pub struct C2sStream {
    domain: Rc<Domain>,
    phase: Phase,
    /// The id of the current stream (fresh at every header and restart).
    stream_id: String,
    header_sent: bool,
}

impl C2sStream {
    pub fn new(domain: Rc<Domain>) -> Self {
        C2sStream {
            domain,
            phase: Phase::AwaitingHeader,
            stream_id: String::new(),
            header_sent: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// True until the client has authenticated (the negotiation deadline applies).
    pub fn unauthenticated(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHeader | Phase::Negotiating)
    }

    pub fn handle(&mut self, input: Input<'_>, out: &mut Vec<u8>) -> Step {
        if self.phase == Phase::Closed {
            return Step::Close;
        }
        match input {
            Input::Xml(Event::Header(header)) => self.on_header(&header, out),
            Input::Xml(Event::Element(el)) => self.on_element(&el, out),
            Input::Xml(Event::StreamEnd) => self.close(out),
            Input::XmlError(e) => self.fail(StreamError::from(e), out),
            Input::Timeout(why) => self.fail(
                StreamError::with_text(StreamCondition::ConnectionTimeout, why),
                out,
            ),
            Input::Shutdown => self.fail(
                StreamError::with_text(
                    StreamCondition::SystemShutdown,
                    "the server is shutting down",
                ),
                out,
            ),
        }
    }

    /// §4.2, §4.7, §4.8: checks the client's header and answers it.
    fn on_header(&mut self, header: &Element<'_>, out: &mut Vec<u8>) -> Step {
        if self.phase != Phase::AwaitingHeader {
            // A second header without a restart the server asked for.
            return self.fail(
                StreamError::with_text(StreamCondition::BadFormat, "unexpected stream header"),
                out,
            );
        }
        self.stream_id = new_stream_id();
        let client_from = header.attr("from").and_then(|f| f.parse::<BareJid>().ok());
        let version_attr = header.attr("version");
        let client_version = version_attr.as_deref().map(Version::parse);
        let negotiated = match client_version {
            Some(None) => None,
            Some(Some(v)) => Some(negotiate(Some(v))),
            None => Some(negotiate(None)),
        };
        let response_version = negotiated.map_or(Some(Version::V1_0), |n| n.response);
        ResponseHeader {
            content_ns: NS_CLIENT,
            from: self.domain.as_str(),
            to: client_from.as_ref().map(|j| j.as_str()),
            id: &self.stream_id,
            version: response_version,
        }
        .write(out);
        self.header_sent = true;

        let error = if header.ns() != NS_STREAMS {
            Some(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                "the stream namespace must be http://etherx.jabber.org/streams",
            ))
        } else if header.name() != "stream" {
            Some(StreamError::with_text(
                StreamCondition::BadFormat,
                "the root element must be <stream>",
            ))
        } else if header.stream_namespace("") != Some(NS_CLIENT) {
            Some(StreamError::with_text(
                StreamCondition::InvalidNamespace,
                "the content namespace must be jabber:client",
            ))
        } else if negotiated.is_none() {
            Some(StreamError::with_text(
                StreamCondition::UnsupportedVersion,
                "the version attribute must be major.minor; XMPP 1.0 is required",
            ))
        } else if negotiated.is_some_and(|n| !n.supported) {
            Some(StreamError::with_text(
                StreamCondition::UnsupportedVersion,
                "this server requires XMPP 1.0",
            ))
        } else {
            match header.attr("to") {
                None => Some(StreamError::with_text(
                    StreamCondition::HostUnknown,
                    "the stream header has no 'to' address",
                )),
                Some(to) => match to.parse::<Domain>() {
                    Ok(d) if d == *self.domain => None,
                    _ => Some(StreamError::with_text(
                        StreamCondition::HostUnknown,
                        "this server does not serve that domain",
                    )),
                },
            }
        };
        if let Some(e) = error {
            return self.fail(e, out);
        }
        self.phase = Phase::Negotiating;
        self.write_features(out);
        Step::Continue
    }

    /// §4.3.2: the features offered in the current phase.
    fn write_features(&self, out: &mut Vec<u8>) {
        XmlWriter::new(out).start("stream:features").close_empty();
    }

    /// A first-level element of the stream.
    fn on_element(&mut self, el: &Element<'_>, out: &mut Vec<u8>) -> Step {
        if el.is("error", NS_STREAMS) {
            log::debug!("client sent a stream error: {:?}", el.children().next());
            return self.close(out);
        }
        let is_stanza = el.ns() == NS_CLIENT && matches!(el.name(), "message" | "presence" | "iq");
        match self.phase {
            Phase::Negotiating if is_stanza => self.fail(
                StreamError::with_text(
                    StreamCondition::NotAuthorized,
                    "stanzas are not accepted before authentication",
                ),
                out,
            ),
            _ => self.fail(
                StreamError::with_text(
                    StreamCondition::UnsupportedStanzaType,
                    "unsupported first-level element",
                ),
                out,
            ),
        }
    }

    /// Ends the stream normally (§4.4): the server's closing tag.
    fn close(&mut self, out: &mut Vec<u8>) -> Step {
        if !self.header_sent {
            self.write_error_header(out);
        }
        out.extend_from_slice(b"</stream:stream>");
        self.phase = Phase::Closed;
        Step::Close
    }

    /// The one place that ends a stream with an error (§4.9.1.1): the opening
    /// header first if none was sent, then the error, then the closing tag.
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<u8>) -> Step {
        if self.phase == Phase::Closed {
            return Step::Close;
        }
        if !self.header_sent {
            self.write_error_header(out);
        }
        log::debug!("stream {}: {}", self.stream_id, error.condition.wire_name());
        error.write(out);
        self.close(out)
    }

    /// §4.9.1.2: an error before the client's header still opens the stream, with
    /// `from` = the served domain.
    fn write_error_header(&mut self, out: &mut Vec<u8>) {
        if self.stream_id.is_empty() {
            self.stream_id = new_stream_id();
        }
        ResponseHeader {
            content_ns: NS_CLIENT,
            from: self.domain.as_str(),
            to: None,
            id: &self.stream_id,
            version: Some(Version::V1_0),
        }
        .write(out);
        self.header_sent = true;
    }
}
