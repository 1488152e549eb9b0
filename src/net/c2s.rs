//! A client connection (RFC 6120 c2s) for the [driver](super::driver): the
//! [`C2sStream`] core, the bound session's queue of routed stanzas, the header,
//! authentication and idle deadlines, keepalive pings, channel bindings.

use super::driver::{ping_deadline, write_ping, Action, Clock, Conn, Due, Exit, Framing, Queue};
use super::transport::Transport;
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::c2s::{C2sStream, Env, Input, Step};
use std::rc::Rc;
use std::time::Instant;

/// A client connection: the [`C2sStream`] core, the session's queue once bound,
/// the channel bindings of its TLS session.
struct Client {
    c2s: C2sStream,
    peer: std::net::IpAddr,
    bindings: crate::sasl::scram::ChannelBindings,
    /// The certificate this connection's handshake presents (Direct TLS started it
    /// in the listener, in the same turn of the executor).
    tls_setup: Option<Rc<crate::tls::TlsSetup>>,
    /// The bound session's connection number when this connection took it: a
    /// resumption elsewhere changes the session's (XEP-0198).
    connection: Option<u32>,
    /// The connection was given up as dead (idle or no answer to a ping): for
    /// stream management, a drop, not a close.
    timed_out: bool,
}

/// Serves one client connection until it closes.
pub async fn serve(server: Rc<Server>, mut transport: Transport, lease: SessionLease) {
    let accepted = Instant::now();
    // Each stage is boxed while it runs, so the task itself stays a few words:
    // what a connection costs is the stage it is in.
    let prefix = if transport.is_tls() {
        Vec::new()
    } else {
        Box::pin(until_header(&server, &mut transport, &lease, accepted)).await
    };
    serve_framed(server, transport, lease, accepted, prefix, Framing::Xml).await
}

/// Serves a client over WebSocket (RFC 7395) after the HTTP upgrade; `already`:
/// the bytes that came after the upgrade request.
pub async fn serve_websocket(server: Rc<Server>, transport: Transport, lease: SessionLease, already: Vec<u8>) {
    let max_message = server.config.xml.max_stanza_size;
    let framing = Framing::WebSocket(Box::new(super::websocket::WsFraming::new(max_message, &already)));
    drop(already);
    serve_framed(server, transport, lease, Instant::now(), Vec::new(), framing).await
}

async fn serve_framed(
    server: Rc<Server>,
    transport: Transport,
    lease: SessionLease,
    accepted: Instant,
    prefix: Vec<u8>,
    framing: Framing,
) {
    let peer = lease.peer().map(|p| p.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let client = Client {
        // A WebSocket on the plain listener came through a reverse proxy that
        // terminated TLS (the admin's word, by configuring that listener).
        c2s: C2sStream::new(server.policy.clone(), transport.is_tls() || matches!(framing, Framing::WebSocket(_))),
        peer,
        bindings: Default::default(),
        tls_setup: transport.is_tls().then(|| server.tls_setup()),
        connection: None,
        timed_out: false,
    };
    let outcome =
        Box::pin(super::driver::drive_framed(&server, transport, client, &lease, accepted, prefix, framing)).await;
    if let Some(session) = outcome {
        Box::pin(hibernate(&server, session)).await;
    }
}

/// The most of a stream header read before the driver starts.
const PREFIX_MAX: usize = 512;

/// Until its stream header is complete a plaintext connection is only its socket
/// and the few bytes it sent (≤ 2 KiB per connection that has not finished its
/// header, issue 13). The driver starts when the header is in, or at the header
/// deadline, an eviction or shutdown, which it then answers.
async fn until_header(server: &Server, transport: &mut Transport, lease: &SessionLease, accepted: Instant) -> Vec<u8> {
    let mut prefix = Vec::new();
    let deadline = accepted + server.config.c2s_header_timeout;
    let mut shutdown = server.shutdown.listen();
    while !header_complete(&prefix) && prefix.len() < PREFIX_MAX && !server.is_shutting_down() {
        match super::wait_idle(transport, true, &mut None, deadline, &mut shutdown, Some(lease)).await {
            super::Idle::Readable => match transport.read_plain(&mut prefix, PREFIX_MAX) {
                // The end or an error: the driver meets it again on its first read.
                Ok(Some(0)) | Err(_) => break,
                Ok(_) => {}
            },
            _ => break,
        }
    }
    prefix
}

/// Has a start tag other than the XML declaration been closed, or did the peer
/// send something that cannot begin a stream header? (Either way the framer
/// takes it from here: the header is in, or it is refused.)
fn header_complete(bytes: &[u8]) -> bool {
    let mut at = 0;
    loop {
        while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        if bytes[at..].starts_with(b"\xEF\xBB\xBF") {
            at += 3;
            continue;
        }
        match (bytes.get(at), bytes.get(at + 1)) {
            (None, _) | (Some(b'<'), None) => return false,
            (Some(b'<'), Some(b'?')) => match bytes[at..].windows(2).position(|w| w == b"?>") {
                Some(end) => at += end + 2,
                None => return false,
            },
            (Some(b'<'), Some(_)) => return bytes[at..].contains(&b'>'),
            (Some(_), _) => return true,
        }
    }
}

/// XEP-0198 §5: a resumable session whose connection dropped stays bound (its
/// presence available, stanzas for it queued within its limit) until it is
/// resumed on another connection, replaced, or `sm_resume_timeout` passes; then
/// it ends like any other, what it never got routed again (offline storage, or
/// back to the senders). On shutdown it ends at once.
async fn hibernate(server: &Server, session: Rc<crate::sessions::Session>) {
    use futures_lite::future::or;
    let mine = session.connection.get();
    session.hibernating.set(true);
    let timeout = server.config.sm_resume_timeout;
    log::info!("{} hibernates for up to {}s", session.jid, timeout.as_secs());
    let deadline = Instant::now() + timeout;
    loop {
        let shutdown = server.shutdown.listen();
        let wake = session.listen();
        if session.connection.get() != mine {
            return; // resumed
        }
        if session.closing() || server.is_shutting_down() || Instant::now() >= deadline {
            break;
        }
        or(or(wake, shutdown), async {
            async_io::Timer::at(deadline).await;
        })
        .await;
    }
    session.hibernating.set(false);
    log::info!("{} was not resumed: its session ends", session.jid);
    end_session(server, &session);
}

impl Client {
    /// The session this connection took was resumed on another one since.
    fn moved(&self) -> bool {
        match (self.c2s.session(), self.connection) {
            (Some(s), Some(mine)) => s.connection.get() != mine,
            _ => false,
        }
    }

    fn step(step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Restart => Action::Restart,
            Step::StartTls => Action::StartTls,
            Step::Close => Action::Close,
            Step::Verify(check) => Action::CheckPassword(check),
        }
    }
}

impl Conn for Client {
    /// A resumable session to keep (the connection dropped).
    type Outcome = Option<Rc<crate::sessions::Session>>;

    fn label(&self) -> &'static str {
        "client"
    }

    fn take_queued(&mut self, server: &Server, _: &mut Clock, out: &mut Vec<u8>) -> Action {
        if self.connection.is_none() {
            self.connection = self.c2s.session().map(|s| s.connection.get());
        }
        if self.moved() {
            // XEP-0198 §5: the session was resumed on another connection.
            let error = crate::stream::StreamError::with_text(
                crate::stream::StreamCondition::Conflict,
                "the session was resumed on another connection",
            );
            return Self::step(self.c2s.handle(Input::Kill(error), &env(server, &self.bindings, self.peer), out));
        }
        // Routed stanzas and kill requests for the bound session.
        match self.c2s.session().and_then(|s| s.take_close_or_drain(out)) {
            Some(error) => {
                Self::step(self.c2s.handle(Input::Kill(error), &env(server, &self.bindings, self.peer), out))
            }
            None => Action::Continue,
        }
    }

    fn sending(&mut self, out: &mut Vec<u8>) {
        if self.moved() {
            return;
        }
        if let Some(session) = self.c2s.session() {
            if session.sm_sending(out) {
                crate::stream::sm::write_request(out);
            }
        }
    }

    fn listen_queue(&self) -> Queue {
        match self.c2s.session().map(|s| s.listen_if_idle()) {
            None => Queue::None,
            Some(Some(listener)) => Queue::Listen(listener),
            Some(None) => Queue::Ready,
        }
    }

    fn input(&mut self, server: &Server, _: &Transport, input: Input<'_>, out: &mut Vec<u8>) -> Action {
        self.timed_out |= matches!(input, Input::Timeout(_));
        let action = Self::step(self.c2s.handle(input, &env(server, &self.bindings, self.peer), out));
        if self.connection.is_none() {
            // Bound or resumed just now: this connection serves the session.
            self.connection = self.c2s.session().map(|s| s.connection.get());
        }
        action
    }

    fn password_checked(&mut self, server: &Server, verified: bool, out: &mut Vec<u8>) -> Action {
        Self::step(self.c2s.plain_verified(verified, &env(server, &self.bindings, self.peer), out))
    }

    fn deadline(&self, server: &Server, clock: &Clock) -> (Instant, Due) {
        let config = &server.config;
        let idle =
            (clock.last_activity + config.c2s_idle_timeout, Due::Timeout("no data received within c2s_idle_timeout"));
        let mut best = idle;
        let mut consider = |at: Instant, due: Due| {
            if at < best.0 {
                best = (at, due);
            }
        };
        // The header deadline covers the first header only (defeats slowloris);
        // restarts after STARTTLS and SASL fall under the authentication deadline.
        if self.c2s.stream_id().is_empty() {
            consider(
                clock.started + config.c2s_header_timeout,
                Due::Timeout("no stream header within c2s_header_timeout"),
            );
        }
        if self.c2s.unauthenticated() {
            consider(
                clock.started + config.c2s_auth_timeout,
                Due::Timeout("not authenticated within c2s_auth_timeout"),
            );
        } else {
            // XEP-0199: a silent bound client is pinged; no answer in time ends it.
            let (at, due) = ping_deadline(server, clock);
            consider(at, due);
            // XEP-0198 §4: stanzas unacknowledged for a while: ask.
            let ack = self
                .c2s
                .session()
                .and_then(|s| s.sm.borrow().as_ref().and_then(|sm| sm.ack_request_due(config.sm_ack_request_delay)));
            if let Some(at) = ack.filter(|_| !self.moved()) {
                consider(at, Due::Idle);
            }
        }
        best
    }

    fn due(&mut self, _: &Server, due: Due, clock: &mut Clock, out: &mut Vec<u8>) -> Action {
        match (due, self.c2s.session()) {
            (Due::Idle, Some(session)) => {
                if let Some(sm) = session.sm.borrow_mut().as_mut() {
                    sm.mark_requested();
                    crate::stream::sm::write_request(out);
                }
            }
            _ => write_ping(out, None, None, clock),
        }
        Action::Continue
    }

    fn authenticated(&self) -> Option<Kind> {
        (!self.c2s.unauthenticated()).then_some(Kind::Client)
    }

    fn read_rate(&self, server: &Server) -> Option<u32> {
        server.config.c2s_read_rate
    }

    fn start_tls(&mut self, server: &Server, transport: &mut Transport, _: &mut Vec<u8>) -> std::io::Result<()> {
        let setup = server.tls_setup();
        let config = std::sync::Arc::clone(&setup.starttls);
        self.tls_setup = Some(setup);
        transport.start_tls(config)?;
        self.c2s.set_secure();
        Ok(())
    }

    fn tls_ready(&mut self, _: &Server, transport: &Transport) -> Result<(), String> {
        if let Some(setup) = &self.tls_setup {
            self.bindings = transport.channel_bindings(&setup.end_entity);
        }
        Ok(())
    }

    fn finish(mut self, server: &Server, exit: Exit) -> Self::Outcome {
        let session = self.c2s.take_session()?;
        // Checked on the session itself: a stream closed with `conflict` no longer
        // reports it as bound.
        if self.connection.is_some_and(|mine| session.connection.get() != mine) {
            return None; // another connection serves it now
        }
        let resumable = session.sm.borrow().as_ref().is_some_and(|sm| sm.id.is_some());
        let dropped = self.timed_out || !matches!(exit, Exit::Closed | Exit::Evicted);
        if resumable && dropped && !session.closing() && !server.is_shutting_down() {
            return Some(session);
        }
        end_session(server, &session);
        None
    }
}

/// A bound session ends: unavailable presence on its behalf (RFC 6121 §4.5), then
/// it leaves the registry.
fn end_session(server: &Server, session: &Rc<crate::sessions::Session>) {
    // A session taken over by a new bind of the same resource says nothing: the
    // new session speaks for that address now.
    let still_bound = server.registry.get(&session.jid).is_some_and(|s| Rc::ptr_eq(&s, session));
    if still_bound {
        crate::handlers::presence::session_ended(&server.hub(), session);
    }
    server.registry.unbind(session);
    // XEP-0198: what the client never acknowledged counts as not delivered.
    let mut items = session.sm_take_unacked();
    items.extend(session.take_all());
    redeliver(server, session, items);
    let account = session.jid.to_bare();
    if server.registry.sessions(&account).is_empty() {
        let status = session.unavailable_status.borrow_mut().take();
        crate::handlers::last::record_logout(&server.hub(), &account, status.as_deref());
    }
}

/// D1: what was routed to the session and not written (a takeover, a disabled
/// account, a dropped connection) is routed again: to another resource, else
/// offline storage, else back to its sender. The items are wrenhub's own
/// re-emitted stanzas, framed again under a client stream header.
fn redeliver(server: &Server, session: &crate::sessions::Session, items: Vec<Box<[u8]>>) {
    if items.is_empty() {
        return;
    }
    let router = server.hub();
    let mut redelivered = 0;
    for item in items {
        crate::xml::for_each_stanza(&item, |e| {
            if !answers_the_session(e) {
                router.redeliver(e);
                redelivered += 1;
            }
        });
    }
    log::debug!("{}: {redelivered} queued stanza(s) routed again", session.jid);
}

/// What only the ended session could use: presence it was sent (a new session
/// gets its own on its initial presence, RFC 6121 §4.2; pending subscription
/// requests stay on the roster, §3.1.3) and answers to its own requests (iq
/// results and errors). A new session on the same resource must not get them.
fn answers_the_session(stanza: &crate::xml::Element<'_>) -> bool {
    match stanza.name() {
        "presence" => true,
        "iq" => matches!(stanza.attr("type").as_deref(), Some("result") | Some("error")),
        _ => false,
    }
}

fn env<'a>(server: &'a Server, bindings: &'a crate::sasl::scram::ChannelBindings, peer: std::net::IpAddr) -> Env<'a> {
    Env { hub: server.hub(), limiter: &server.limiter, secret: &server.secret, bindings, peer }
}

#[cfg(test)]
mod tests {
    use super::header_complete;

    #[test]
    fn a_header_is_complete_at_the_end_of_its_start_tag() {
        assert!(!header_complete(b""));
        assert!(!header_complete(b"<?xml version='1.0'?>"));
        assert!(!header_complete(b"<?xml version='1.0'?><stream:stream to='localhost'"));
        assert!(header_complete(b"<?xml version='1.0'?>\n<stream:stream to='localhost' version='1.0'>"));
        assert!(header_complete(b"<stream:stream>"));
        assert!(!header_complete(b"<?xml version='1.0'"));
        assert!(header_complete(b"garbage"), "not a header: the framer refuses it at once");
        assert!(header_complete(b"<?xml version='1.0'?> x"));
        assert!(!header_complete(b" \xEF\xBB\xBF<"));
    }
}
