//! The accepting side of a server-to-server stream (RFC 6120 §3–§6 with
//! `jabber:server`) as a sans-I/O state machine: STARTTLS (required), then the
//! peer authenticates one or more domains, by SASL EXTERNAL with a certificate
//! this server trusts (XEP-0178) or by Server Dialback (XEP-0220); then it sends
//! stanzas whose `from` must be an authenticated domain. This side also answers
//! `<db:verify/>` for keys this server issued (the authoritative role).
//!
//! s2s streams are unidirectional: nothing but stream-level answers (TLS, SASL,
//! dialback) goes back on this stream; replies to stanzas leave on the outbound
//! link to the sender's domain.

use super::error::{StreamCondition, StreamError};
use super::header::{new_stream_id, Version};
pub use super::Input;
use crate::jid::{Domain, Jid};
use crate::ns::NS_TLS;
use crate::ns::{NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SASL, NS_SERVER, NS_STREAMS};
use crate::s2s::dialback::{self};
use crate::s2s::{S2s, Verdict};
use crate::sasl::decode_payload;
use crate::xml::writer::XmlWriter;
use crate::xml::{Element, Event};
use rustls::pki_types::CertificateDer;

/// Domains one inbound stream may authenticate (XEP-0220 §4.4 multiplexing).
const MAX_DOMAINS: usize = 8;

/// What the inbound stream needs from the rest of the server.
pub struct Env<'a> {
    pub s2s: &'a S2s,
    /// Dialback is allowed (`s2s_dialback`).
    pub dialback: bool,
    /// The certificate chain the peer presented in the TLS handshake.
    pub peer_chain: Option<&'a [CertificateDer<'static>]>,
    /// Routing, and the domains served here (ours, and configured components').
    pub hub: crate::hub::Hub<'a>,
}

enum Phase {
    AwaitingHeader,
    Open,
    Closed,
}

/// What the connection loop does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Flush `<proceed/>`, drop buffered input, start TLS, read a new header.
    StartTls,
    /// Flush, then read a new header (after SASL success).
    Restart,
    Close,
    /// Ask the authoritative server of `remote` whether this key, presented to
    /// `local` (ours), is its own (XEP-0220 §2.3), then call
    /// [`S2sInStream::dialback_answer`].
    Verify {
        local: Domain,
        remote: Domain,
        key: String,
    },
}

pub struct S2sInStream {
    phase: Phase,
    secure: bool,
    stream_id: String,
    header_sent: bool,
    /// Our domain as the peer addressed it (the `to` of its header).
    local: String,
    /// The peer's domain (the `from` of its header).
    peer: Option<Domain>,
    /// Authenticated by SASL EXTERNAL: no more SASL on this stream.
    sasl_done: bool,
    /// Domains the peer may send from.
    authenticated: Vec<Domain>,
    /// Dialback requests waiting for the authoritative server: (domain, our domain).
    pending: Vec<(Domain, String)>,
    /// Whether the peer's certificate authenticates a domain, per domain asked
    /// (the chain is validated once per domain, not at every feature and request).
    cert_checks: Vec<(Domain, bool)>,
}

impl S2sInStream {
    pub fn new(secure: bool) -> S2sInStream {
        S2sInStream {
            phase: Phase::AwaitingHeader,
            secure,
            stream_id: String::new(),
            header_sent: false,
            local: String::new(),
            peer: None,
            sasl_done: false,
            authenticated: Vec::new(),
            pending: Vec::new(),
            cert_checks: Vec::new(),
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn awaiting_header(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHeader)
    }

    /// Some domain is authenticated on this stream.
    pub fn authenticated(&self) -> bool {
        !self.authenticated.is_empty()
    }

    pub fn set_secure(&mut self) {
        self.secure = true;
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

    fn write_header(&mut self, to: Option<&str>, out: &mut Vec<u8>) {
        if self.stream_id.is_empty() {
            self.stream_id = new_stream_id();
        }
        out.extend_from_slice(b"<?xml version='1.0'?>");
        XmlWriter::new(out)
            .start("stream:stream")
            .attr("xmlns", NS_SERVER)
            .attr("xmlns:stream", NS_STREAMS)
            .attr("xmlns:db", NS_DIALBACK)
            .attr_opt("from", (!self.local.is_empty()).then_some(self.local.as_str()))
            .attr_opt("to", to)
            .attr("id", &self.stream_id)
            .attr("version", "1.0")
            .open();
        self.header_sent = true;
    }

    /// RFC 6120 §4.7: the peer names itself (`from`) and us (`to`).
    fn on_header(&mut self, header: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !matches!(self.phase, Phase::AwaitingHeader) {
            return self.fail(StreamError::with_text(StreamCondition::BadFormat, "unexpected stream header"), out);
        }
        self.stream_id = new_stream_id();
        let to = header.attr("to").and_then(|t| t.parse::<Domain>().ok());
        let served = to.as_ref().filter(|d| env.hub.serves(d.as_str()));
        self.local = served.map(|d| d.as_str().to_string()).unwrap_or_default();
        let from = header.attr("from").and_then(|f| f.parse::<Domain>().ok());
        self.write_header(from.as_ref().map(|d| d.as_str()), out);
        let version = header.attr("version").and_then(|v| Version::parse(&v));
        let error = if header.ns() != NS_STREAMS || header.name() != "stream" {
            Some((StreamCondition::InvalidNamespace, "not an XMPP stream"))
        } else if header.stream_namespace("") != Some(NS_SERVER) {
            Some((StreamCondition::InvalidNamespace, "the content namespace must be jabber:server"))
        } else if version.is_none_or(|v| v < Version::V1_0) {
            Some((StreamCondition::UnsupportedVersion, "this server requires XMPP 1.0 (version='1.0')"))
        } else if served.is_none() {
            Some((StreamCondition::HostUnknown, "this server does not serve the domain in 'to'"))
        } else {
            None
        };
        if let Some((condition, text)) = error {
            return self.fail(StreamError::with_text(condition, text), out);
        }
        if let Some(f) = from {
            self.peer = Some(f);
        }
        self.phase = Phase::Open;
        self.write_features(env, out);
        Step::Continue
    }

    /// Does the peer's certificate authenticate `domain`?
    fn cert_authenticates(&mut self, env: &Env<'_>, domain: &Domain) -> bool {
        if !self.secure {
            return false;
        }
        if let Some((_, known)) = self.cert_checks.iter().find(|(d, _)| d == domain) {
            return *known;
        }
        let ok = env.peer_chain.is_some_and(|chain| env.s2s.trust.authenticates(chain, domain.as_str()));
        if self.cert_checks.len() < MAX_DOMAINS {
            self.cert_checks.push((domain.clone(), ok));
        }
        ok
    }

    fn write_features(&mut self, env: &Env<'_>, out: &mut Vec<u8>) {
        XmlWriter::new(out).start("stream:features").open();
        if !self.secure {
            XmlWriter::new(out)
                .start("starttls")
                .attr("xmlns", NS_TLS)
                .open()
                .start("required")
                .close_empty()
                .end("starttls");
        } else {
            let external = !self.sasl_done && self.peer.clone().is_some_and(|p| self.cert_authenticates(env, &p));
            if external {
                XmlWriter::new(out)
                    .start("mechanisms")
                    .attr("xmlns", NS_SASL)
                    .open()
                    .start("mechanism")
                    .open()
                    .text("EXTERNAL")
                    .end("mechanism")
                    .end("mechanisms");
            }
            if env.dialback {
                XmlWriter::new(out)
                    .start("dialback")
                    .attr("xmlns", NS_DIALBACK_FEATURE)
                    .open()
                    .start("errors")
                    .close_empty()
                    .end("dialback");
            }
        }
        XmlWriter::new(out).end("stream:features");
    }

    fn on_element(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if el.is("error", NS_STREAMS) {
            log::debug!("s2s in {}: the peer sent a stream error", self.stream_id);
            return self.close(out);
        }
        match (el.ns(), el.name()) {
            (NS_TLS, "starttls") if !self.secure => {
                XmlWriter::new(out).empty_ns("proceed", NS_TLS);
                self.phase = Phase::AwaitingHeader;
                self.header_sent = false;
                Step::StartTls
            }
            _ if !self.secure => self
                .fail(StreamError::with_text(StreamCondition::PolicyViolation, "TLS is required: STARTTLS first"), out),
            (NS_SASL, "auth") => self.on_external(el, env, out),
            (NS_DIALBACK, "result") => self.on_dialback_result(el, env, out),
            (NS_DIALBACK, "verify") => self.on_dialback_verify(el, env, out),
            (NS_SERVER, "message" | "presence" | "iq") => self.on_stanza(el, env, out),
            _ => self.fail(StreamError::with_text(StreamCondition::UnsupportedStanzaType, "unsupported element"), out),
        }
    }

    /// XEP-0178 §2: SASL EXTERNAL with the certificate from the TLS handshake.
    fn on_external(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let failure = |condition: &str, out: &mut Vec<u8>| {
            XmlWriter::new(out)
                .start("failure")
                .attr("xmlns", NS_SASL)
                .open()
                .start(condition)
                .close_empty()
                .end("failure");
            Step::Continue
        };
        if self.sasl_done || el.attr("mechanism").as_deref() != Some("EXTERNAL") {
            return failure("invalid-mechanism", out);
        }
        let Ok(authzid) = decode_payload(&el.text()) else { return failure("incorrect-encoding", out) };
        let claimed = if authzid.is_empty() {
            self.peer.clone()
        } else {
            std::str::from_utf8(&authzid).ok().and_then(|s| s.parse::<Domain>().ok())
        };
        let Some(domain) = claimed else { return failure("invalid-authzid", out) };
        if self.peer.as_ref().is_some_and(|p| *p != domain) {
            return failure("invalid-authzid", out);
        }
        if !self.cert_authenticates(env, &domain) {
            log::info!("s2s in {}: certificate does not authenticate {domain}", self.stream_id);
            return failure("not-authorized", out);
        }
        log::info!("s2s in: {domain} authenticated by certificate (SASL EXTERNAL)");
        XmlWriter::new(out).start("success").attr("xmlns", NS_SASL).close_empty();
        self.sasl_done = true;
        self.peer = Some(domain.clone());
        self.authenticate(domain);
        self.phase = Phase::AwaitingHeader;
        self.header_sent = false;
        Step::Restart
    }

    fn authenticate(&mut self, domain: Domain) {
        if !self.authenticated.contains(&domain) && self.authenticated.len() < MAX_DOMAINS {
            self.authenticated.push(domain);
        }
    }

    /// XEP-0220 §2.1.2: the originating server presents a key for a domain pair.
    fn on_dialback_result(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return self.fail(
                StreamError::with_text(StreamCondition::ImproperAddressing, "db:result needs 'from' and 'to'"),
                out,
            );
        };
        let Ok(to) = to.parse::<Domain>() else {
            return self.fail(StreamError::with_text(StreamCondition::HostUnknown, "bad 'to' domain"), out);
        };
        if !env.hub.serves(to.as_str()) {
            return self.fail(
                StreamError::with_text(StreamCondition::HostUnknown, "this server does not serve that domain"),
                out,
            );
        }
        let Ok(from) = from.parse::<Domain>() else {
            return self.fail(StreamError::with_text(StreamCondition::InvalidFrom, "bad 'from' domain"), out);
        };
        let reply = |kind: &str, out: &mut Vec<u8>, error: Option<&str>| {
            write_dialback_result(out, to.as_str(), from.as_str(), kind, error);
        };
        // S11: nobody else speaks for a domain this server serves.
        if env.hub.serves(from.as_str()) {
            reply("error", out, Some("not-authorized"));
            return Step::Continue;
        }
        if self.authenticated.contains(&from) {
            reply("valid", out, None);
            return Step::Continue;
        }
        // XEP-0344 §2.4: a certificate that authenticates the domain makes the
        // round trip to the authoritative server unnecessary.
        if self.cert_authenticates(env, &from) {
            log::info!("s2s in: {from} authenticated by certificate (dialback)");
            reply("valid", out, None);
            self.authenticate(from);
            return Step::Continue;
        }
        // S2: a pinned domain (or any, under s2s_secure_auth) needs its certificate.
        if !env.dialback || env.s2s.trust.must_authenticate(from.as_str()) {
            reply("error", out, Some("policy-violation"));
            return Step::Continue;
        }
        if self.pending.len() + self.authenticated.len() >= MAX_DOMAINS || self.pending.iter().any(|(d, _)| *d == from)
        {
            reply("error", out, Some("resource-constraint"));
            return Step::Continue;
        }
        self.pending.push((from.clone(), to.as_str().to_string()));
        Step::Verify { local: to, remote: from, key: el.text().trim().to_string() }
    }

    /// The authoritative server answered, or could not be asked (XEP-0220 §2.4:
    /// then the answer is `type='error'` with the reason).
    pub fn dialback_answer(&mut self, domain: &Domain, verdict: Verdict, out: &mut Vec<u8>) -> Step {
        let Some(i) = self.pending.iter().position(|(d, _)| d == domain) else { return Step::Continue };
        let (domain, local) = self.pending.remove(i);
        if matches!(self.phase, Phase::Closed) {
            return Step::Close;
        }
        let (kind, error) = match verdict {
            Verdict::Valid => ("valid", None),
            Verdict::Invalid => ("invalid", None),
            Verdict::Unreachable => ("error", Some("remote-server-not-found")),
            Verdict::Overloaded => ("error", Some("resource-constraint")),
        };
        write_dialback_result(out, &local, domain.as_str(), kind, error);
        match verdict {
            Verdict::Valid => {
                log::info!("s2s in: {domain} authenticated by dialback");
                self.authenticate(domain);
            }
            other => log::warn!("s2s in: dialback for {domain} failed ({other:?})"),
        }
        Step::Continue
    }

    /// XEP-0220 §2.3.2: the authoritative role: is this key one we issued?
    fn on_dialback_verify(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let (Some(from), Some(to), Some(id)) = (el.attr("from"), el.attr("to"), el.attr("id")) else {
            return self.fail(
                StreamError::with_text(StreamCondition::ImproperAddressing, "db:verify needs 'from', 'to' and 'id'"),
                out,
            );
        };
        let ours = env.hub.serves(&to);
        let valid = ours && dialback::verify(&env.s2s.secret, &from, &to, &id, &el.text());
        XmlWriter::new(out)
            .start("db:verify")
            .attr("from", &to)
            .attr("to", &from)
            .attr("id", &id)
            .attr("type", if valid { "valid" } else { "invalid" })
            .close_empty();
        Step::Continue
    }

    /// RFC 6120 §8.1.1.2 / §8.1.2.2: s2s stanzas carry `to` and `from`; `from` must
    /// lie in an authenticated domain (§4.9.3.9), `to` in one served here.
    fn on_stanza(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let (Some(from), Some(to)) = (el.attr("from"), el.attr("to")) else {
            return self.fail(
                StreamError::with_text(StreamCondition::ImproperAddressing, "a stanza needs 'from' and 'to'"),
                out,
            );
        };
        let Ok(from) = from.parse::<Jid>() else {
            return self.fail(StreamError::with_text(StreamCondition::InvalidFrom, "'from' is not a valid JID"), out);
        };
        let Some(origin) = self.authenticated.iter().find(|d| d.as_str() == from.domain()).cloned() else {
            return self.fail(
                StreamError::with_text(
                    StreamCondition::InvalidFrom,
                    "the 'from' domain is not authenticated on this stream",
                ),
                out,
            );
        };
        // R9: a `to` under a served domain (an unserved subdomain such as a group
        // chat service this hub lacks) is the router's stanza error, not the end of
        // the whole stream with everything else in flight.
        let under_served = |d: &str| {
            let mut rest = d;
            while let Some((_, parent)) = rest.split_once('.') {
                if env.hub.serves(parent) {
                    return true;
                }
                rest = parent;
            }
            false
        };
        let to_ok = to.parse::<Jid>().is_ok_and(|t| env.hub.serves(t.domain()) || under_served(t.domain()));
        if !to_ok {
            return self.fail(
                StreamError::with_text(StreamCondition::HostUnknown, "this server does not serve the 'to' domain"),
                out,
            );
        }
        env.hub.route_from_remote(&origin, el);
        Step::Continue
    }

    fn close(&mut self, out: &mut Vec<u8>) -> Step {
        if !self.header_sent {
            self.write_header(None, out);
        }
        if !matches!(self.phase, Phase::Closed) {
            out.extend_from_slice(b"</stream:stream>");
        }
        self.phase = Phase::Closed;
        Step::Close
    }

    /// Ends the stream with an error (header first if none was sent).
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<u8>) -> Step {
        if matches!(self.phase, Phase::Closed) {
            return Step::Close;
        }
        if !self.header_sent {
            self.write_header(None, out);
        }
        log::info!(
            "s2s in {}: {} ({})",
            self.stream_id,
            error.condition.wire_name(),
            error.text.as_deref().unwrap_or("")
        );
        error.write(out);
        self.close(out)
    }
}

/// `<db:result from to type/>`, with an error condition for `type='error'`
/// (XEP-0220 §2.4).
fn write_dialback_result(out: &mut Vec<u8>, from: &str, to: &str, kind: &str, error: Option<&str>) {
    let mut w = XmlWriter::new(out);
    w.start("db:result").attr("from", from).attr("to", to).attr("type", kind);
    match error {
        None => {
            w.close_empty();
        }
        Some(condition) => {
            w.open()
                .start("error")
                .attr("type", "cancel")
                .open()
                .empty_ns(condition, crate::ns::NS_STANZAS)
                .end("error")
                .end("db:result");
        }
    }
}
