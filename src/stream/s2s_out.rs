//! The initiating side of a server-to-server stream, as a sans-I/O state machine:
//! header, STARTTLS (required), then authentication of our domain to the peer by
//! SASL EXTERNAL when it offers it (XEP-0178: it trusts our certificate), else
//! Server Dialback (XEP-0220). It also carries `<db:verify/>` requests for inbound
//! streams (the receiving role asks the authoritative server).

use super::error::{StreamCondition, StreamError};
use super::header::Version;
pub use super::Input;
use crate::jid::Domain;
use crate::ns::NS_SASL;
use crate::ns::NS_TLS;
use crate::ns::{NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SERVER, NS_STREAMS};
use crate::s2s::dialback::{self};
use crate::s2s::{DialbackWaiter, Verdict, VerifyRequest};
use crate::xml::writer::XmlWriter;
use crate::xml::{Element, Event};
use std::rc::Weak;

/// Dialback verifications waiting for an answer on one link.
const MAX_VERIFYING: usize = 32;

/// What the outbound stream needs.
pub struct Env<'a> {
    pub secret: &'a [u8],
    /// Dialback is allowed (`s2s_dialback`).
    pub dialback: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitingHeader,
    AwaitingFeatures,
    AwaitingProceed,
    AwaitingSasl,
    AwaitingDialback,
    Established,
    Closed,
}

/// What the connection loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Flush `<starttls/>`'s answer was `<proceed/>`: start TLS as the client, then
    /// call [`S2sOutStream::restart`].
    StartTls,
    /// Flush; a new header was written; reset the framer (after SASL success).
    Restart,
    Close,
}

/// How the link was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    SaslExternal,
    Dialback,
}

pub struct S2sOutStream {
    local: Domain,
    remote: Domain,
    phase: Phase,
    secure: bool,
    /// The peer's stream id (keys are bound to it).
    peer_stream_id: String,
    /// The peer declared the dialback namespace or offered the feature.
    peer_dialback: bool,
    sasl_done: bool,
    external_failed: bool,
    authenticated: Option<AuthMethod>,
    verifying: Vec<(String, Weak<DialbackWaiter>)>,
    /// Why the stream ended, for the log and the bounces.
    pub failure: Option<String>,
}

impl S2sOutStream {
    /// Writes the opening header.
    pub fn new(local: Domain, remote: Domain, secure: bool, out: &mut Vec<u8>) -> S2sOutStream {
        let s = S2sOutStream {
            local,
            remote,
            phase: Phase::AwaitingHeader,
            secure,
            peer_stream_id: String::new(),
            peer_dialback: false,
            sasl_done: false,
            external_failed: false,
            authenticated: None,
            verifying: Vec::new(),
            failure: None,
        };
        s.write_header(out);
        s
    }

    fn write_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<?xml version='1.0'?>");
        XmlWriter::new(out)
            .start("stream:stream")
            .attr("xmlns", NS_SERVER)
            .attr("xmlns:stream", NS_STREAMS)
            .attr("xmlns:db", NS_DIALBACK)
            .attr("from", self.local.as_str())
            .attr("to", self.remote.as_str())
            .attr("version", "1.0")
            .open();
    }

    /// TLS is up: a new stream (RFC 6120 §5.4.3.3).
    pub fn restart(&mut self, out: &mut Vec<u8>) {
        self.secure = true;
        self.phase = Phase::AwaitingHeader;
        self.write_header(out);
    }

    pub fn established(&self) -> bool {
        self.phase == Phase::Established
    }

    pub fn auth_method(&self) -> Option<AuthMethod> {
        self.authenticated
    }

    pub fn awaiting_header(&self) -> bool {
        self.phase == Phase::AwaitingHeader
    }

    /// `<db:verify/>` may go out: TLS is up and the peer has sent its features.
    pub fn can_verify(&self) -> bool {
        self.secure && matches!(self.phase, Phase::AwaitingSasl | Phase::AwaitingDialback | Phase::Established)
    }

    /// Sends a dialback verification request (XEP-0220 §2.3.1).
    pub fn send_verify(&mut self, request: VerifyRequest, out: &mut Vec<u8>) {
        if self.verifying.len() >= MAX_VERIFYING {
            if let Some(w) = request.waiter.upgrade() {
                w.answer(self.remote.clone(), Verdict::Overloaded);
            }
            return;
        }
        XmlWriter::new(out)
            .start("db:verify")
            .attr("from", self.local.as_str())
            .attr("to", self.remote.as_str())
            .attr("id", &request.stream_id)
            .open()
            .text(&request.key)
            .end("db:verify");
        self.verifying.push((request.stream_id, request.waiter));
    }

    /// Answers every verification still waiting with "not valid" (the link ended).
    pub fn abandon_verifies(&mut self) {
        for (_, waiter) in self.verifying.drain(..) {
            if let Some(w) = waiter.upgrade() {
                w.answer(self.remote.clone(), Verdict::Unreachable);
            }
        }
    }

    pub fn handle(&mut self, input: Input<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if self.phase == Phase::Closed {
            return Step::Close;
        }
        match input.into_event() {
            Ok(Event::Header(h)) => self.on_header(&h, out),
            Ok(Event::Element(el)) => self.on_element(&el, env, out),
            Ok(Event::StreamEnd) => {
                self.failure.get_or_insert_with(|| "the peer closed the stream".into());
                self.close(out)
            }
            Err(e) => self.fail(e, out),
        }
    }

    fn on_header(&mut self, header: &Element<'_>, out: &mut Vec<u8>) -> Step {
        if self.phase != Phase::AwaitingHeader {
            return self.fail(StreamError::with_text(StreamCondition::BadFormat, "unexpected stream header"), out);
        }
        if header.ns() != NS_STREAMS || header.stream_namespace("") != Some(NS_SERVER) {
            return self
                .fail(StreamError::with_text(StreamCondition::InvalidNamespace, "not a jabber:server stream"), out);
        }
        if header.attr("version").and_then(|v| Version::parse(&v)).is_none_or(|v| v < Version::V1_0) {
            return self.fail(StreamError::with_text(StreamCondition::UnsupportedVersion, "XMPP 1.0 is required"), out);
        }
        let Some(id) = header.attr("id").filter(|id| !id.is_empty()) else {
            return self.fail(StreamError::with_text(StreamCondition::InvalidId, "the stream header has no id"), out);
        };
        self.peer_stream_id = id.into_owned();
        self.peer_dialback = header.stream_namespace("db") == Some(NS_DIALBACK);
        self.phase = Phase::AwaitingFeatures;
        Step::Continue
    }

    fn on_element(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if el.is("error", NS_STREAMS) {
            let condition = el.children().next().map(|c| c.name().to_string()).unwrap_or_default();
            self.failure = Some(format!("the peer sent the stream error {condition}"));
            return self.close(out);
        }
        match (&self.phase, el.ns(), el.name()) {
            (Phase::AwaitingFeatures, NS_STREAMS, "features") => self.on_features(el, env, out),
            (Phase::AwaitingProceed, NS_TLS, "proceed") => Step::StartTls,
            (Phase::AwaitingProceed, NS_TLS, "failure") => {
                self.failure = Some("the peer refused STARTTLS".into());
                self.close(out)
            }
            (Phase::AwaitingSasl, NS_SASL, "success") => {
                self.sasl_done = true;
                self.authenticated = Some(AuthMethod::SaslExternal);
                self.phase = Phase::AwaitingHeader;
                self.write_header(out);
                Step::Restart
            }
            (Phase::AwaitingSasl, NS_SASL, "failure") => {
                self.external_failed = true;
                log::info!("s2s out {}: SASL EXTERNAL refused, trying dialback", self.remote);
                self.authenticate(env, out)
            }
            (_, NS_DIALBACK, "result") if self.phase == Phase::AwaitingDialback => match el.attr("type").as_deref() {
                Some("valid") => {
                    self.authenticated = Some(AuthMethod::Dialback);
                    self.phase = Phase::Established;
                    Step::Continue
                }
                other => {
                    let why = el.children().flat_map(|e| e.children()).next().map(|c| c.name().to_string());
                    self.failure = Some(format!(
                        "dialback refused ({}{})",
                        other.unwrap_or("no type"),
                        why.map(|w| format!(": {w}")).unwrap_or_default()
                    ));
                    self.close(out)
                }
            },
            (_, NS_DIALBACK, "verify") => {
                let id = el.attr("id").unwrap_or_default();
                let verdict =
                    if el.attr("type").as_deref() == Some("valid") { Verdict::Valid } else { Verdict::Invalid };
                if let Some(i) = self.verifying.iter().position(|(v, _)| *v == id) {
                    let (_, waiter) = self.verifying.remove(i);
                    if let Some(w) = waiter.upgrade() {
                        w.answer(self.remote.clone(), verdict);
                    }
                }
                Step::Continue
            }
            (_, NS_SERVER, "message" | "presence" | "iq") => {
                // One direction per stream (RFC 6120 §4.1); a peer that sends on our
                // outbound stream is ignored, not obeyed.
                log::debug!("s2s out {}: ignored a stanza sent on our outbound stream", self.remote);
                Step::Continue
            }
            _ => self.fail(StreamError::with_text(StreamCondition::UnsupportedStanzaType, "unexpected element"), out),
        }
    }

    fn on_features(&mut self, features: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !self.secure {
            if features.child("starttls", NS_TLS).is_some() {
                XmlWriter::new(out).empty_ns("starttls", NS_TLS);
                self.phase = Phase::AwaitingProceed;
                return Step::Continue;
            }
            self.failure = Some("the peer does not offer TLS".into());
            return self.fail(
                StreamError::with_text(StreamCondition::PolicyViolation, "server-to-server links require TLS"),
                out,
            );
        }
        if self.authenticated.is_some() {
            self.phase = Phase::Established;
            return Step::Continue;
        }
        if features.child("dialback", NS_DIALBACK_FEATURE).is_some() {
            self.peer_dialback = true;
        }
        let external = features
            .child("mechanisms", NS_SASL)
            .is_some_and(|m| m.children().any(|c| c.name() == "mechanism" && c.text().trim() == "EXTERNAL"));
        if external && !self.external_failed {
            let authzid = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.local.as_str());
            XmlWriter::new(out)
                .start("auth")
                .attr("xmlns", NS_SASL)
                .attr("mechanism", "EXTERNAL")
                .open()
                .text(&authzid)
                .end("auth");
            self.phase = Phase::AwaitingSasl;
            return Step::Continue;
        }
        self.authenticate(env, out)
    }

    /// Dialback (XEP-0220 §2.1.1): our key for this stream.
    fn authenticate(&mut self, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !env.dialback || !self.peer_dialback {
            self.failure = Some(if env.dialback {
                "the peer neither trusts our certificate nor offers dialback".into()
            } else {
                "the peer does not trust our certificate and dialback is disabled (s2s_dialback)".into()
            });
            return self.fail(
                StreamError::with_text(StreamCondition::NotAuthorized, "no authentication method in common"),
                out,
            );
        }
        let key = dialback::key(env.secret, self.remote.as_str(), self.local.as_str(), &self.peer_stream_id);
        XmlWriter::new(out)
            .start("db:result")
            .attr("from", self.local.as_str())
            .attr("to", self.remote.as_str())
            .open()
            .text(&key)
            .end("db:result");
        self.phase = Phase::AwaitingDialback;
        Step::Continue
    }

    fn close(&mut self, out: &mut Vec<u8>) -> Step {
        if self.phase != Phase::Closed {
            out.extend_from_slice(b"</stream:stream>");
        }
        self.phase = Phase::Closed;
        self.abandon_verifies();
        Step::Close
    }

    pub fn fail(&mut self, error: StreamError, out: &mut Vec<u8>) -> Step {
        if self.phase == Phase::Closed {
            return Step::Close;
        }
        self.failure.get_or_insert_with(|| {
            format!("{} ({})", error.condition.wire_name(), error.text.as_deref().unwrap_or(""))
        });
        error.write(out);
        self.close(out)
    }
}

#[cfg(test)]
mod tests {
    //! The outbound core without sockets: CVE-2012-3525's class (dialback answers
    //! nobody asked for) cannot authenticate a link (REVIEW T4).
    use super::*;
    use crate::xml::{Framer, Limits};

    const HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' from='b.test' to='a.test' id='peer-stream' version='1.0'>";
    const FEATURES: &str = "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>";

    /// Feeds the peer's bytes; returns the last step.
    fn feed(stream: &mut S2sOutStream, framer: &mut Framer, bytes: &str, out: &mut Vec<u8>) -> Step {
        let env = Env { secret: b"secret", dialback: true };
        framer.feed(bytes.as_bytes());
        let mut last = Step::Continue;
        while let Ok(Some(event)) = framer.next_event() {
            last = stream.handle(Input::Xml(event), &env, out);
        }
        last
    }

    fn secure_stream() -> (S2sOutStream, Framer, Vec<u8>) {
        let mut out = Vec::new();
        let stream =
            S2sOutStream::new(Domain::parse("a.test").unwrap(), Domain::parse("b.test").unwrap(), true, &mut out);
        (stream, Framer::new(Limits::default()), out)
    }

    #[test]
    fn a_dialback_result_nobody_asked_for_does_not_authenticate_the_link() {
        let (mut stream, mut framer, mut out) = secure_stream();
        feed(&mut stream, &mut framer, HEADER, &mut out);
        let step = feed(&mut stream, &mut framer, "<db:result from='b.test' to='a.test' type='valid'/>", &mut out);
        assert!(matches!(step, Step::Close), "an unsolicited result ends the stream");
        assert!(!stream.established());
    }

    #[test]
    fn a_dialback_verify_for_an_id_we_never_sent_changes_nothing_and_only_our_result_counts() {
        let (mut stream, mut framer, mut out) = secure_stream();
        feed(&mut stream, &mut framer, HEADER, &mut out);
        feed(&mut stream, &mut framer, FEATURES, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("<db:result from='a.test' to='b.test'>"), "we asked");
        let forged = "<db:verify from='b.test' to='a.test' id='never-sent' type='valid'/>";
        assert!(matches!(feed(&mut stream, &mut framer, forged, &mut out), Step::Continue));
        assert!(!stream.established(), "a verify is not a result");
        feed(&mut stream, &mut framer, "<db:result from='b.test' to='a.test' type='valid'/>", &mut out);
        assert!(stream.established(), "the answer to our own result does");
    }
}
