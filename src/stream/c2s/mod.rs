//! The client-to-server stream as a sans-I/O state machine (RFC 6120 §4–§7): it
//! takes framer events, timer expiries and shutdown, and writes the server's side
//! of the stream into an output buffer; the socket loop around it (`net/`) performs
//! the [`Step`]s it returns (start TLS, restart the framer, close).
//!
//! The phases are an enum, so "a stanza before authentication" is a match arm
//! (RFC 6120 §4.3.2 / the product's spec §3.1: `not-authorized`, not processed).

mod sasl2;

use super::error::{StreamCondition, StreamError};
use super::header::{negotiate, new_stream_id, ResponseHeader, Version};
pub use super::Input;
use crate::auth_limiter::AuthLimiter;
use crate::jid::{BareJid, Domain, FullJid};
use crate::ns::{NS_BIND, NS_CLIENT, NS_SASL, NS_SASL_CB, NS_STREAMS, NS_TLS};
use crate::sasl::sasl2::{Inline, NS_SASL2};
use crate::sasl::scram::{fake_salt, parse_client_first, ChannelBindings, ScramHash, ScramRecord, ScramServer};
use crate::sasl::{decode_payload, parse_plain, write_payload, Failure, Mechanism};
use crate::sessions::{BindError, Session};
use crate::stanza::{Condition, StanzaError};
use crate::store::Account;
use crate::stream::sm::{self, NS_SM};
use crate::xml::writer::XmlWriter;
use crate::xml::{Element, Event};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

/// SASL failures that tested no credential one stream may have (a client walking
/// its mechanisms needs a few).
const MAX_UNTESTED_FAILURES: u32 = 10;

/// Client-stream policy from the configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    pub domain: Rc<Domain>,
    pub require_encryption: bool,
    pub sasl_plain: bool,
    pub max_auth_attempts: u32,
    pub im: crate::handlers::ImLimits,
    /// How long a dropped session waits to be resumed (XEP-0198); 0: resumption
    /// is not offered.
    pub sm_resume_timeout: u32,
    /// Seconds a FAST token (XEP-0484) is valid.
    pub fast_token_lifetime: u64,
    /// Clients per account that may hold FAST tokens.
    pub fast_clients_per_account: usize,
    /// XEP-0115 verification string of the server's features (computed once).
    pub caps_ver: Rc<str>,
}

/// What the stream needs from the rest of the server while handling input.
pub struct Env<'a> {
    pub hub: crate::hub::Hub<'a>,
    pub limiter: &'a AuthLimiter,
    /// The secret behind fake SCRAM salts for unknown users.
    pub secret: &'a [u8],
    /// Channel bindings of the TLS layer (empty without TLS).
    pub bindings: &'a ChannelBindings,
    pub peer: IpAddr,
}

/// Where a client stream stands.
pub enum Phase {
    /// Waiting for a stream header (the first, or after a restart).
    AwaitingHeader,
    /// Features sent; not authenticated.
    Negotiating,
    /// A SCRAM exchange waits for the client's final message.
    Sasl(Box<ScramServer>, BareJid, bool),
    /// A PLAIN password is being checked off the event loop: the account (if it
    /// exists) and whether it is disabled.
    VerifyingPlain(Option<BareJid>, bool),
    /// Authenticated (the restarted stream's features offer bind).
    Authenticated,
    /// A resource is bound: stanzas are routed.
    Bound(Rc<Session>),
    /// The server has closed its side.
    Closed,
}

/// A PLAIN password check: one PBKDF2 run, too slow for the event loop on a small
/// board, so the loop runs it on a blocking thread and reports back with
/// [`C2sStream::plain_verified`].
#[derive(Debug)]
pub struct PlainCheck {
    record: ScramRecord,
    password: String,
}

impl PlainCheck {
    pub fn run(self) -> bool {
        self.record.verify_password(&self.password)
    }
}

/// What the connection loop does next.
#[derive(Debug)]
pub enum Step {
    /// Flush the output and keep reading.
    Continue,
    /// Flush the output (`<proceed/>`), drop every byte buffered so far, start TLS,
    /// and read a new stream header (RFC 6120 §5.4.3.3).
    StartTls,
    /// Flush the output and read a new stream header, keeping buffered bytes
    /// (after SASL success, RFC 6120 §6.4.6).
    Restart,
    /// Flush the output, then close the connection.
    Close,
    /// Run the check off the loop, then call [`C2sStream::plain_verified`]; no input
    /// is handled meanwhile.
    Verify(Box<PlainCheck>),
}

/// One client stream.
pub struct C2sStream {
    policy: Policy,
    phase: Phase,
    /// TLS is in place (STARTTLS done, or Direct TLS).
    secure: bool,
    /// The authenticated account, from SASL success on.
    user: Option<BareJid>,
    /// Failures that tested a credential (`c2s_max_auth_attempts`).
    failed_auth: u32,
    /// Failures that tested none (see [`C2sStream::sasl_failure`]).
    untested_failures: u32,
    /// The existing account the current SASL exchange names (its failures count
    /// per account too, S12).
    attempted: Option<BareJid>,
    /// The id of the current stream (fresh at every header).
    stream_id: String,
    header_sent: bool,
    /// The session that was bound when the stream closed, for the loop to clean up.
    ended: Option<Rc<Session>>,
    /// The SASL profile of the exchange in progress.
    exchange: Exchange,
}

/// Which SASL profile an exchange speaks: RFC 6120 §6 (success restarts the
/// stream) or XEP-0388 SASL2 (success carries what was asked for inline).
enum Exchange {
    Legacy,
    Sasl2(Box<Sasl2Exchange>),
}

/// A SASL2 exchange: its inline requests, and the FAST token it authenticated
/// with, if any.
struct Sasl2Exchange {
    inline: Inline,
    fast: Option<sasl2::FastLogin>,
}

impl C2sStream {
    pub fn new(policy: Policy, secure: bool) -> Self {
        C2sStream {
            policy,
            phase: Phase::AwaitingHeader,
            secure,
            user: None,
            failed_auth: 0,
            untested_failures: 0,
            attempted: None,
            stream_id: String::new(),
            header_sent: false,
            ended: None,
            exchange: Exchange::Legacy,
        }
    }

    pub fn awaiting_header(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHeader)
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// True until a resource is bound (the authentication deadline applies).
    pub fn unauthenticated(&self) -> bool {
        !matches!(self.phase, Phase::Bound(_) | Phase::Closed)
    }

    /// The bound session, if any.
    pub fn session(&self) -> Option<&Rc<Session>> {
        match &self.phase {
            Phase::Bound(s) => Some(s),
            _ => None,
        }
    }

    /// The bound session, also after the stream closed (for cleanup; once).
    pub fn take_session(&mut self) -> Option<Rc<Session>> {
        match &self.phase {
            Phase::Bound(s) => Some(Rc::clone(s)),
            _ => self.ended.take(),
        }
    }

    /// Enters the closed phase, keeping a bound session for cleanup.
    fn enter_closed(&mut self) {
        if let Phase::Bound(s) = std::mem::replace(&mut self.phase, Phase::Closed) {
            self.ended = Some(s);
        }
    }

    /// TLS was started (the loop calls this once the TLS layer is in place).
    pub fn set_secure(&mut self) {
        self.secure = true;
    }

    pub fn handle(&mut self, input: Input<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if matches!(self.phase, Phase::Closed) {
            return Step::Close;
        }
        match input.into_event() {
            Ok(Event::Header(header)) => self.on_header(&header, env, out),
            Ok(Event::Element(el)) => self.on_element(&el, env, out),
            Ok(Event::StreamEnd) => self.close(out),
            Err(e) => self.fail(e, out),
        }
    }

    /// §4.2, §4.7, §4.8: checks the client's header and answers it.
    fn on_header(&mut self, header: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if !matches!(self.phase, Phase::AwaitingHeader) {
            return self.fail(StreamError::with_text(StreamCondition::BadFormat, "unexpected stream header"), out);
        }
        self.stream_id = new_stream_id();
        let client_from = header.attr("from").and_then(|f| f.parse::<BareJid>().ok());
        let version_attr = header.attr("version");
        let negotiated = match version_attr.as_deref().map(Version::parse) {
            Some(None) => None,
            Some(Some(v)) => Some(negotiate(Some(v))),
            None => Some(negotiate(None)),
        };
        ResponseHeader {
            content_ns: NS_CLIENT,
            from: self.policy.domain.as_str(),
            to: client_from.as_ref().map(|j| j.as_str()),
            id: &self.stream_id,
            version: negotiated.map_or(Some(Version::V1_0), |n| n.response),
        }
        .write(out);
        self.header_sent = true;

        let error = if header.ns() != NS_STREAMS {
            Some((StreamCondition::InvalidNamespace, "the stream namespace must be http://etherx.jabber.org/streams"))
        } else if header.name() != "stream" {
            Some((StreamCondition::BadFormat, "the root element must be <stream>"))
        } else if header.stream_namespace("") != Some(NS_CLIENT) {
            Some((StreamCondition::InvalidNamespace, "the content namespace must be jabber:client"))
        } else if negotiated.is_none() {
            Some((
                StreamCondition::UnsupportedVersion,
                "the version attribute must be major.minor; XMPP 1.0 is required",
            ))
        } else if negotiated.is_some_and(|n| !n.supported) {
            Some((StreamCondition::UnsupportedVersion, "this server requires XMPP 1.0"))
        } else {
            match header.attr("to").map(|to| to.parse::<Domain>()) {
                None => Some((StreamCondition::HostUnknown, "the stream header has no 'to' address")),
                Some(Ok(d)) if d == *self.policy.domain => None,
                Some(_) => Some((StreamCondition::HostUnknown, "this server does not serve that domain")),
            }
        };
        if let Some((condition, text)) = error {
            return self.fail(StreamError::with_text(condition, text), out);
        }
        self.phase = if self.user.is_some() { Phase::Authenticated } else { Phase::Negotiating };
        self.write_features(env, out);
        Step::Continue
    }

    /// §4.3.2: the features offered in the current phase.
    fn write_features(&self, env: &Env<'_>, out: &mut Vec<u8>) {
        XmlWriter::new(out).start("stream:features").open();
        if let Phase::Bound(session) = &self.phase {
            // XEP-0388 §2.6.1: after a SASL2 success that bound a resource.
            if session.sm.borrow().is_none() {
                XmlWriter::new(out).empty_ns("sm", NS_SM);
            }
            XmlWriter::new(out).empty_ns("ver", crate::ns::NS_ROSTER_VER).empty_ns("csi", crate::ns::NS_CSI);
        } else if self.user.is_some() {
            XmlWriter::new(out)
                .empty_ns("bind", NS_BIND)
                .start("session")
                .attr("xmlns", crate::ns::NS_SESSION)
                .open()
                .start("optional")
                .close_empty()
                .end("session")
                .empty_ns("ver", crate::ns::NS_ROSTER_VER)
                .empty_ns("sub", crate::ns::NS_PRE_APPROVAL)
                .empty_ns("sm", NS_SM)
                .empty_ns("csi", crate::ns::NS_CSI);
        } else {
            if !self.secure {
                let mut w = XmlWriter::new(out);
                w.start("starttls").attr("xmlns", NS_TLS);
                if self.policy.require_encryption {
                    w.open().start("required").close_empty().end("starttls");
                } else {
                    w.close_empty();
                }
            }
            if self.secure || !self.policy.require_encryption {
                XmlWriter::new(out).start("mechanisms").attr("xmlns", NS_SASL).open();
                for m in self.offered_mechanisms(env) {
                    XmlWriter::new(out).start("mechanism").open().text(m.name()).end("mechanism");
                }
                XmlWriter::new(out).end("mechanisms");
                if env.bindings.any() {
                    let mut w = XmlWriter::new(out);
                    w.start("sasl-channel-binding").attr("xmlns", NS_SASL_CB).open();
                    if env.bindings.tls_exporter.is_some() {
                        w.start("channel-binding").attr("type", "tls-exporter").close_empty();
                    }
                    if env.bindings.tls_server_end_point.is_some() {
                        w.start("channel-binding").attr("type", "tls-server-end-point").close_empty();
                    }
                    w.end("sasl-channel-binding");
                }
                self.write_sasl2_feature(env, out);
            }
        }
        // XEP-0115 §6.3: the server's entity capabilities, once TLS is in place
        // (before it, STARTTLS stays the only feature, RFC 6120 §5.3.1).
        if self.secure {
            XmlWriter::new(out)
                .start("c")
                .attr("xmlns", crate::ns::NS_CAPS)
                .attr("hash", "sha-1")
                .attr("node", crate::handlers::disco::CAPS_NODE)
                .attr("ver", &self.policy.caps_ver)
                .close_empty();
        }
        XmlWriter::new(out).end("stream:features");
    }

    fn offered_mechanisms(&self, env: &Env<'_>) -> Vec<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| match m {
                Mechanism::Scram { plus, .. } => !plus || env.bindings.any(),
                Mechanism::Plain => self.secure && self.policy.sasl_plain,
            })
            .collect()
    }

    /// A first-level element of the stream.
    fn on_element(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        if el.is("error", NS_STREAMS) {
            log::debug!("stream {}: the client sent a stream error: {:?}", self.stream_id, el.children().next());
            return self.close(out);
        }
        let is_stanza = el.ns() == NS_CLIENT && matches!(el.name(), "message" | "presence" | "iq");
        match (&self.phase, el.ns(), el.name()) {
            (Phase::Negotiating, NS_TLS, "starttls") if !self.secure => {
                XmlWriter::new(out).empty_ns("proceed", NS_TLS);
                self.phase = Phase::AwaitingHeader;
                self.header_sent = false;
                Step::StartTls
            }
            (_, NS_TLS, "starttls") => {
                // §5.4.2.2: TLS already in place, or not at this point.
                XmlWriter::new(out).empty_ns("failure", NS_TLS);
                out.extend_from_slice(b"</stream:stream>");
                self.enter_closed();
                Step::Close
            }
            (Phase::Negotiating | Phase::Sasl(..), NS_SASL, "auth") => self.on_auth(el, env, out),
            (Phase::Negotiating | Phase::Sasl(..), NS_SASL2, "authenticate") => self.on_authenticate(el, env, out),
            (Phase::Sasl(..), NS_SASL | NS_SASL2, "response") if self.speaks(el.ns()) => self.on_response(el, env, out),
            (Phase::Sasl(..), NS_SASL | NS_SASL2, "abort") => self.sasl_failure(Failure::Aborted, None, env, out),
            (Phase::Negotiating | Phase::Sasl(..), NS_SASL | NS_SASL2, "response" | "abort") => {
                self.sasl_failure(Failure::MalformedRequest, Some("no such SASL exchange in progress"), env, out)
            }
            (Phase::Authenticated, NS_CLIENT, "iq") if el.child("bind", NS_BIND).is_some() => {
                self.on_bind(el, env, out)
            }
            (Phase::Authenticated, NS_SM, "resume") => self.on_resume(el, env, out),
            // XEP-0352: what is not urgent waits while the client is inactive.
            (Phase::Bound(session), crate::ns::NS_CSI, state @ ("active" | "inactive")) => {
                session.set_inactive(state == "inactive");
                Step::Continue
            }
            (Phase::Bound(_), NS_SM, "enable") => self.on_enable(el, out),
            (Phase::Bound(session), NS_SM, "r") => {
                if let Some(sm) = session.sm.borrow().as_ref() {
                    sm::write_ack(sm.handled, out);
                }
                Step::Continue
            }
            (Phase::Bound(_), NS_SM, "a") => self.on_ack(el, env, out),
            (_, NS_SM, "enable" | "resume") => {
                sm::write_failed("unexpected-request", None, out);
                Step::Continue
            }
            // An ack or a request before stream management is enabled: nothing to do.
            (_, NS_SM, "a" | "r") => Step::Continue,
            (Phase::Bound(_), _, _) if is_stanza => {
                let step = self.on_stanza(el, env, out);
                // XEP-0198 §4: counted once handled (the driver makes its effects
                // durable before the next input, so before any `<a/>` says so).
                if let Phase::Bound(session) = &self.phase {
                    if let Some(sm) = session.sm.borrow_mut().as_mut() {
                        sm.handled = sm.handled.wrapping_add(1);
                    }
                }
                step
            }
            (_, _, _) if is_stanza => self.fail(
                StreamError::with_text(
                    StreamCondition::NotAuthorized,
                    "stanzas are not accepted before authentication and resource binding",
                ),
                out,
            ),
            _ => self.fail(
                StreamError::with_text(StreamCondition::UnsupportedStanzaType, "unsupported first-level element"),
                out,
            ),
        }
    }

    /// RFC 6120 §6.4.2: `<auth mechanism='…'>`.
    fn on_auth(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        self.phase = Phase::Negotiating;
        self.exchange = Exchange::Legacy;
        if let Err(step) = self.may_authenticate(env, out) {
            return step;
        }
        let mechanism = match self.choose_mechanism(&el.attr("mechanism").unwrap_or_default(), env, out) {
            Ok(m) => m,
            Err(step) => return step,
        };
        let payload = match decode_payload(&el.text()) {
            Ok(p) => p,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        self.start_mechanism(mechanism, &payload, env, out)
    }

    fn start_mechanism(&mut self, mechanism: Mechanism, payload: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        match mechanism {
            Mechanism::Plain => self.auth_plain(payload, env, out),
            Mechanism::Scram { hash, plus } => self.auth_scram(hash, plus, payload, env, out),
        }
    }

    /// Whether an exchange may start at all: encryption first, and not from an
    /// address past its failures (neither counts as an attempt).
    fn may_authenticate(&mut self, env: &Env<'_>, out: &mut Vec<u8>) -> Result<(), Step> {
        let refusal = if !self.secure && self.policy.require_encryption {
            (Failure::EncryptionRequired, "use STARTTLS first")
        } else if !env.limiter.allowed(env.peer, Instant::now()) {
            (Failure::TemporaryAuthFailure, "too many failed logins from this address; wait a minute")
        } else {
            return Ok(());
        };
        self.write_failure(refusal.0, Some(refusal.1), out);
        self.exchange = Exchange::Legacy;
        Err(Step::Continue)
    }

    /// The offered mechanism a client names.
    fn choose_mechanism(&mut self, name: &str, env: &Env<'_>, out: &mut Vec<u8>) -> Result<Mechanism, Step> {
        match Mechanism::from_name(name) {
            Some(Mechanism::Plain) if !self.secure => {
                Err(self.sasl_failure(Failure::EncryptionRequired, None, env, out))
            }
            Some(Mechanism::Plain) if !self.policy.sasl_plain => {
                Err(self.sasl_failure(Failure::MechanismTooWeak, Some("this server accepts SCRAM only"), env, out))
            }
            Some(m) if self.offered_mechanisms(env).contains(&m) => Ok(m),
            _ => Err(self.sasl_failure(Failure::InvalidMechanism, None, env, out)),
        }
    }

    /// True when `ns` is the namespace of the exchange in progress.
    fn speaks(&self, ns: &str) -> bool {
        matches!((&self.exchange, ns), (Exchange::Legacy, NS_SASL) | (Exchange::Sasl2(_), NS_SASL2))
    }

    /// A failure in the profile of the exchange.
    fn write_failure(&self, failure: Failure, text: Option<&str>, out: &mut Vec<u8>) {
        match self.exchange {
            Exchange::Legacy => failure.write(text, out),
            Exchange::Sasl2(_) => crate::sasl::sasl2::write_failure(failure, text, out),
        }
    }

    /// A challenge in the profile of the exchange.
    fn write_challenge(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self.exchange {
            Exchange::Legacy => write_payload("challenge", payload, out),
            Exchange::Sasl2(_) => crate::sasl::sasl2::write_challenge(payload, out),
        }
    }

    /// The account a SASL username names (with an optional authzid that must name
    /// the same account), and its record if it exists.
    fn identify(
        &self,
        username: &str,
        authzid: Option<&str>,
        env: &Env<'_>,
    ) -> Result<(Option<BareJid>, Option<Account>), Failure> {
        let jid = format!("{username}@{}", self.policy.domain).parse::<BareJid>().ok().filter(|j| j.local().is_some());
        let authzid_ok = match (authzid, &jid) {
            (None, _) => true,
            (Some(a), Some(j)) => a.parse::<BareJid>().is_ok_and(|a| a == *j),
            (Some(_), None) => false,
        };
        if !authzid_ok {
            return Err(Failure::InvalidAuthzid);
        }
        let account = match &jid {
            None => None,
            Some(j) => env.hub.store.account(j).map_err(|e| {
                log::error!("account lookup failed: {e}");
                Failure::TemporaryAuthFailure
            })?,
        };
        Ok((jid, account))
    }

    /// PLAIN (RFC 4616), inside TLS only. An unknown user costs the same PBKDF2 as a
    /// wrong password.
    fn auth_plain(&mut self, payload: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let creds = match parse_plain(payload) {
            Ok(c) => c,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        let (jid, account) = match self.identify(&creds.username, creds.authzid.as_deref(), env) {
            Ok(found) => found,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        if let Err(step) = self.account_may_try(jid.as_ref(), account.is_some(), env, out) {
            return step;
        }
        let password = crate::sasl::normalize_password(&creds.password);
        let (record, password, known) = match (&account, password) {
            (Some(a), Some(p)) => (a.scram.clone(), p, true),
            _ => (ScramRecord::unmatchable(fake_salt(env.secret, &creds.username)), creds.password, false),
        };
        let disabled = account.is_some_and(|a| a.disabled);
        self.phase = Phase::VerifyingPlain(jid.filter(|_| known), disabled);
        Step::Verify(Box::new(PlainCheck { record, password }))
    }

    /// The outcome of a [`PlainCheck`].
    pub fn plain_verified(&mut self, verified: bool, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Phase::VerifyingPlain(jid, disabled) = std::mem::replace(&mut self.phase, Phase::Negotiating) else {
            return Step::Continue;
        };
        match (verified, jid) {
            (true, Some(_)) if disabled => self.sasl_failure(Failure::AccountDisabled, None, env, out),
            (true, Some(jid)) => self.sasl_success_if_current(jid, &[], env, out),
            _ => self.sasl_failure(Failure::NotAuthorized, None, env, out),
        }
    }

    /// SCRAM (RFC 5802): the client-first message.
    fn auth_scram(&mut self, hash: ScramHash, plus: bool, payload: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let first = match parse_client_first(payload) {
            Ok(f) => f,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        let (jid, account) = match self.identify(&first.username, first.authzid.as_deref(), env) {
            Ok(found) => found,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        if let Err(step) = self.account_may_try(jid.as_ref(), account.is_some(), env, out) {
            return step;
        }
        let salt = fake_salt(env.secret, &first.username);
        match ScramServer::start(hash, plus, &first, account.as_ref().map(|a| &a.scram), salt, env.bindings) {
            Ok((server, server_first)) => {
                self.write_challenge(server_first.as_bytes(), out);
                let disabled = account.is_some_and(|a| a.disabled);
                let jid = jid.unwrap_or_else(|| BareJid::from(Domain::clone(&self.policy.domain)));
                self.phase = Phase::Sasl(Box::new(server), jid, disabled);
                Step::Continue
            }
            // RFC 5802 §6, XEP-0440 §4: "y" (the client could bind but thinks
            // the server cannot) while -PLUS is offered is a downgrade; refused,
            // though no credential was tested.
            Err(Failure::NotAuthorized) => {
                let text = "this server offers channel binding: use a -PLUS mechanism (RFC 5802 §6)";
                self.sasl_failure_untested(Failure::NotAuthorized, Some(text), env, out)
            }
            Err(f) => self.sasl_failure(f, None, env, out),
        }
    }

    /// SCRAM: the client-final message.
    fn on_response(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Phase::Sasl(server, jid, disabled) = std::mem::replace(&mut self.phase, Phase::Negotiating) else {
            return Step::Continue;
        };
        let payload = match decode_payload(&el.text()) {
            Ok(p) => p,
            Err(f) => return self.sasl_failure(f, None, env, out),
        };
        match server.finish(&payload) {
            Ok(_) if disabled => self.sasl_failure(Failure::AccountDisabled, None, env, out),
            Ok(server_final) => self.sasl_success_if_current(jid, server_final.as_bytes(), env, out),
            Err(f) => self.sasl_failure(f, None, env, out),
        }
    }

    /// S12: an existing account past its failures this minute is tried only from an
    /// address it logged in from before; others get `temporary-auth-failure`
    /// without a password check.
    fn account_may_try(
        &mut self,
        jid: Option<&BareJid>,
        exists: bool,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Step> {
        self.attempted = jid.filter(|_| exists).cloned();
        let Some(jid) = &self.attempted else { return Ok(()) };
        if env.limiter.account_allowed(jid.as_str(), env.peer, Instant::now()) {
            return Ok(());
        }
        self.attempted = None;
        let text = "too many failed logins for this account from new addresses; wait a minute";
        Err(self.sasl_failure(Failure::TemporaryAuthFailure, Some(text), env, out))
    }

    /// The proof was right for the record read when the exchange began; the account
    /// may have been deleted or disabled since (R3): it is read again.
    fn sasl_success_if_current(&mut self, jid: BareJid, additional: &[u8], env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        match env.hub.store.account(&jid) {
            Ok(Some(account)) if account.disabled => self.sasl_failure(Failure::AccountDisabled, None, env, out),
            Ok(Some(_)) => {
                env.limiter.record_success(jid.as_str(), env.peer, Instant::now());
                self.attempted = None;
                match std::mem::replace(&mut self.exchange, Exchange::Legacy) {
                    Exchange::Legacy => self.sasl_success(jid, additional, out),
                    Exchange::Sasl2(exchange) => self.sasl2_success(jid, additional, *exchange, env, out),
                }
            }
            _ => self.sasl_failure(Failure::NotAuthorized, None, env, out),
        }
    }

    fn sasl_success(&mut self, jid: BareJid, additional: &[u8], out: &mut Vec<u8>) -> Step {
        log::info!("{jid} authenticated (stream {})", self.stream_id);
        write_payload("success", additional, out);
        self.user = Some(jid);
        self.phase = Phase::AwaitingHeader;
        self.header_sent = false;
        Step::Restart
    }

    /// §6.4.5: a failure; the client may retry `max_auth_attempts` times in all,
    /// then the stream ends with `policy-violation`.
    ///
    /// Only a failure that tested a credential (`not-authorized`: a wrong proof,
    /// password or token) counts, here and in the limiter. One that tested none (an
    /// unsupported mechanism or binding type, a malformed message, an abort, the
    /// downgrade signal) does not, so a client that walks its mechanism list gets in
    /// on its first connection; at most [`MAX_UNTESTED_FAILURES`] of those.
    fn sasl_failure(&mut self, failure: Failure, text: Option<&str>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let tested = failure == Failure::NotAuthorized;
        self.sasl_failure_with(failure, text, tested, env, out)
    }

    /// A failure that tested no credential, whatever its condition.
    fn sasl_failure_untested(
        &mut self,
        failure: Failure,
        text: Option<&str>,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        self.sasl_failure_with(failure, text, false, env, out)
    }

    fn sasl_failure_with(
        &mut self,
        failure: Failure,
        text: Option<&str>,
        tested: bool,
        env: &Env<'_>,
        out: &mut Vec<u8>,
    ) -> Step {
        self.phase = Phase::Negotiating;
        self.write_failure(failure, text, out);
        self.exchange = Exchange::Legacy;
        let attempted = self.attempted.take();
        // One line per failed login, for the operator (and fail2ban-style tools).
        let who = attempted.as_ref().map_or("an unknown account", |a| a.as_str());
        if tested {
            log::info!("{}: authentication failed for {who} ({})", env.peer, failure.wire_name());
        } else {
            log::debug!("{}: SASL {} (no credential tested)", env.peer, failure.wire_name());
        }
        let too_many = if tested {
            env.limiter.record_failure(env.peer, Instant::now());
            if let Some(account) = attempted {
                env.limiter.record_account_failure(account.as_str(), Instant::now());
            }
            self.failed_auth += 1;
            self.failed_auth >= self.policy.max_auth_attempts
        } else {
            self.untested_failures += 1;
            self.untested_failures >= MAX_UNTESTED_FAILURES
        };
        if too_many {
            return self.fail(
                StreamError::with_text(StreamCondition::PolicyViolation, "too many failed authentication attempts"),
                out,
            );
        }
        Step::Continue
    }

    /// XEP-0198 §3: `<enable/>`, once per session, after binding.
    fn on_enable(&mut self, el: &Element<'_>, out: &mut Vec<u8>) -> Step {
        let Phase::Bound(session) = &self.phase else { return Step::Continue };
        if session.sm.borrow().is_some() {
            sm::write_failed("unexpected-request", None, out);
            return Step::Continue;
        }
        let resume = matches!(el.attr("resume").as_deref(), Some("true") | Some("1"));
        let session = Rc::clone(session);
        self.enable_sm(&session, resume, out);
        Step::Continue
    }

    /// Writes `<enabled/>` and starts counting (XEP-0198 §3; inline in Bind 2 too).
    fn enable_sm(&self, session: &Rc<Session>, resume: bool, out: &mut Vec<u8>) {
        let resume = resume && self.policy.sm_resume_timeout > 0;
        let id = resume.then(|| crate::stream::header::new_stream_id().into_boxed_str());
        let mut w = XmlWriter::new(out);
        w.start("enabled").attr("xmlns", NS_SM);
        if let Some(id) = &id {
            w.attr("id", id).attr("resume", "true").attr("max", &self.policy.sm_resume_timeout.to_string());
        }
        w.close_empty();
        let mut state = sm::SmState::new(id);
        // What this output held before `<enabled/>` is not counted.
        state.count_from = out.len();
        *session.sm.borrow_mut() = Some(state);
        log::debug!("{}: stream management enabled (resume: {resume})", session.jid);
    }

    /// XEP-0198 §4: the client's `<a h/>`.
    fn on_ack(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Phase::Bound(session) = &self.phase else { return Step::Continue };
        let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else { return Step::Continue };
        match session.sm_ack(h) {
            Ok(batch) => {
                offline_acknowledged(env, session, batch, out);
                Step::Continue
            }
            Err(too_high) => self.too_high(too_high, out),
        }
    }

    /// XEP-0198 §4: an `h` above what was sent ends the stream.
    fn too_high(&mut self, e: sm::TooHigh, out: &mut Vec<u8>) -> Step {
        let mut error = StreamError::with_text(
            StreamCondition::UndefinedCondition,
            format!("you acknowledged {} stanzas; {} were sent", e.h, e.sent),
        );
        error.app = Some(("handled-count-too-high", NS_SM));
        self.fail(error, out)
    }

    /// XEP-0198 §5: `<resume previd h/>` after authentication, instead of binding:
    /// only a session of the account that just authenticated can be resumed.
    fn on_resume(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Some(user) = self.user.clone() else { return Step::Continue };
        let previd = el.attr("previd").unwrap_or_default();
        let h = el.attr("h").and_then(|h| h.parse::<u32>().ok());
        match resumable(&user, &previd, h, env) {
            Err(NotResumable::Unknown) => {
                sm::write_failed("item-not-found", None, out);
                Step::Continue
            }
            Err(NotResumable::TooHigh(e)) => self.too_high(e, out),
            Ok((session, batch)) => {
                write_resumed(&session, &previd, out);
                self.resume_into(Rc::clone(&session), out);
                offline_acknowledged(env, &session, batch, out);
                Step::Continue
            }
        }
    }

    /// Resends everything the client does not have, once, in order (already
    /// counted), and serves the session from this stream on.
    fn resume_into(&mut self, session: Rc<Session>, out: &mut Vec<u8>) {
        if let Some(state) = session.sm.borrow_mut().as_mut() {
            for stanza in state.unacked() {
                out.extend_from_slice(stanza);
            }
            state.count_from = out.len();
        }
        session.move_to_new_connection();
        log::info!("{} resumed (stream {})", session.jid, self.stream_id);
        self.phase = Phase::Bound(session);
    }

    /// RFC 6120 §7: resource binding.
    fn on_bind(&mut self, iq: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Some(user) = self.user.clone() else {
            return Step::Continue;
        };
        let id = iq.attr("id").unwrap_or_default();
        let error = |e: StanzaError, out: &mut Vec<u8>| {
            e.write_reply(iq, user.as_str(), None, out);
            Step::Continue
        };
        if iq.attr("type").as_deref() != Some("set") {
            return error(StanzaError::new(Condition::BadRequest), out);
        }
        let requested = iq
            .child("bind", NS_BIND)
            .and_then(|b| b.child("resource", NS_BIND))
            .map(|r| r.text().into_owned())
            .filter(|r| !r.is_empty());
        let full = match requested {
            Some(r) => match FullJid::new(&user, &r) {
                Ok(f) => f,
                Err(e) => {
                    return error(StanzaError::with_text(Condition::BadRequest, format!("invalid resource: {e}")), out)
                }
            },
            None => match FullJid::new(&user, &format!("wrenhub-{}", &new_stream_id()[..12])) {
                Ok(f) => f,
                Err(_) => return error(StanzaError::new(Condition::InternalServerError), out),
            },
        };
        match env.hub.registry.bind(full) {
            Ok(session) => {
                XmlWriter::new(out)
                    .start("iq")
                    .attr("id", &id)
                    .attr("type", "result")
                    .open()
                    .start("bind")
                    .attr("xmlns", NS_BIND)
                    .open()
                    .start("jid")
                    .open()
                    .text(session.jid.as_str())
                    .end("jid")
                    .end("bind")
                    .end("iq");
                log::info!("{} bound (stream {})", session.jid, self.stream_id);
                self.phase = Phase::Bound(session);
                Step::Continue
            }
            Err(BindError::ResourceConstraint) => error(
                StanzaError::with_text(
                    Condition::ResourceConstraint,
                    "this account has max_resources_per_account sessions",
                ),
                out,
            ),
            Err(BindError::Conflict) => error(StanzaError::new(Condition::Conflict), out),
        }
    }

    /// A stanza on an established stream: `from` checked (§8.1.2.1), then routed.
    fn on_stanza(&mut self, el: &Element<'_>, env: &Env<'_>, out: &mut Vec<u8>) -> Step {
        let Phase::Bound(session) = &self.phase else {
            return Step::Continue;
        };
        if let Some(from) = el.attr("from") {
            let own = match from.parse::<crate::jid::Jid>() {
                Ok(crate::jid::Jid::Full(f)) => f == session.jid,
                Ok(crate::jid::Jid::Bare(b)) => b == session.jid.to_bare(),
                Err(_) => false,
            };
            if !own {
                return self.fail(
                    StreamError::with_text(StreamCondition::InvalidFrom, "'from' is not this session's address"),
                    out,
                );
            }
        }
        let session = Rc::clone(session);
        env.hub.route(&session, el, out);
        Step::Continue
    }

    /// Ends the stream normally (§4.4): the server's closing tag.
    fn close(&mut self, out: &mut Vec<u8>) -> Step {
        if !self.header_sent {
            self.write_error_header(out);
        }
        out.extend_from_slice(b"</stream:stream>");
        self.enter_closed();
        Step::Close
    }

    /// The one place that ends a stream with an error (§4.9.1.1): the opening
    /// header first if none was sent, then the error, then the closing tag.
    pub fn fail(&mut self, error: StreamError, out: &mut Vec<u8>) -> Step {
        if matches!(self.phase, Phase::Closed) {
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
            from: self.policy.domain.as_str(),
            to: None,
            id: &self.stream_id,
            version: Some(Version::V1_0),
        }
        .write(out);
        self.header_sent = true;
    }
}

/// Why `<resume/>` cannot resume.
enum NotResumable {
    /// No live session of this account has that id (or `h` is missing).
    Unknown,
    /// XEP-0198 §4: the client acknowledged more than was sent.
    TooHigh(sm::TooHigh),
}

/// A session resumed with the client's `h` applied, and the offline batch that
/// `h` acknowledged, if any.
type Resumed = (Rc<Session>, Option<String>);

/// The account's session with resumption id `previd`, with the client's `h`
/// applied.
fn resumable(user: &BareJid, previd: &str, h: Option<u32>, env: &Env<'_>) -> Result<Resumed, NotResumable> {
    let found = env.hub.registry.sessions(user).into_iter().find(|s| {
        s.sm.borrow().as_ref().and_then(|sm| sm.id.as_deref()).is_some_and(|id| id == previd) && !s.closing()
    });
    let (Some(session), Some(h)) = (found, h) else { return Err(NotResumable::Unknown) };
    let batch = session.sm_ack(h).map_err(NotResumable::TooHigh)?;
    Ok((session, batch))
}

/// XEP-0198 acknowledged an offline batch (its closing ping): it leaves the store
/// and the next one follows, as when the ping is answered.
fn offline_acknowledged(env: &Env<'_>, session: &Rc<Session>, batch: Option<String>, out: &mut Vec<u8>) {
    if let Some(id) = batch {
        crate::handlers::offline::acknowledged(&env.hub, session, &id, out);
    }
}

/// `<resumed previd h/>` with what the server has handled.
fn write_resumed(session: &Session, previd: &str, out: &mut Vec<u8>) {
    if let Some(state) = session.sm.borrow().as_ref() {
        XmlWriter::new(out)
            .start("resumed")
            .attr("xmlns", NS_SM)
            .attr("previd", previd)
            .attr("h", &state.handled.to_string())
            .close_empty();
    }
}
