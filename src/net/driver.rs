//! The one connection driver (REVIEW A2): read → framer → protocol core → write,
//! written once for every connection kind. Each kind (client, inbound server,
//! outbound server link, component) is a [`Conn`]: its protocol core plus the few
//! things that differ (its queue, its deadlines, its TLS). Here, once:
//!
//! - the wait: input, the connection's queue, the earliest deadline, shutdown,
//!   eviction from the pool; an idle connection holds no buffer of ours;
//! - bounds: the process-wide buffer budget (S1: past it an unauthenticated peer
//!   that sends more is let go), the pre-authentication stanza limit until the core authenticates,
//!   then promotion in the pool (its kind's share); answers to one read held to
//!   `c2s_queue_size` before the rest of the input is handled (S8); a token-bucket
//!   read rate (S5: reading pauses, nothing is dropped);
//! - keepalive pings and timeouts, as the core asks for them;
//! - STARTTLS (nothing read before the handshake is processed, RFC 6120 §5.4.3.3);
//! - password checks off the loop, one per core at a time (S12);
//! - the end: a clean close, or at once for an evicted connection.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::c2s::PlainCheck;
use crate::stream::Input;
use crate::xml::Framer;
use event_listener::EventListener;
use std::time::{Duration, Instant};

/// Bytes of output buffer a connection keeps between writes; a larger one is
/// given back whole (an idle connection then holds none).
const OUT_KEPT: usize = 1024;

/// Store tickets a stream may hold while it reads ahead (S9), and bytes it may
/// read meanwhile (what it queues for the writer is about as large): past
/// either it waits for the writer before it reads more.
const READ_AHEAD_TICKETS: usize = 128;
const READ_AHEAD_BYTES: usize = 16 * 1024;

/// What the driver does after an input.
pub enum Action {
    /// Write the output and go on.
    Continue,
    /// Write the output; the framer starts a new stream (after SASL success).
    Restart,
    /// Write the output (`<proceed/>`), drop everything buffered, start TLS.
    StartTls,
    /// Check a password off the loop, then [`Conn::password_checked`].
    CheckPassword(Box<PlainCheck>),
    /// Write the output and close the connection.
    Close,
}

/// Why a deadline is set.
#[derive(Clone, Copy, Debug)]
pub enum Due {
    /// It ends the stream with `connection-timeout` and this text.
    Timeout(&'static str),
    /// A keepalive ping is due (XEP-0199 §4.2).
    Ping,
    /// The connection decides ([`Conn::due`]): an idle link, a link not up in time,
    /// a client whose stream-management acks are overdue.
    Idle,
}

/// The times a connection's deadlines are computed from.
pub struct Clock {
    pub started: Instant,
    /// Last data read (or, for a link, last stanza sent).
    pub last_activity: Instant,
    /// When the keepalive ping went out, while it is unanswered.
    pub ping_sent: Option<Instant>,
}

/// How the connection ended, for [`Conn::finish`].
#[derive(Debug)]
pub enum Exit {
    /// The core closed the stream.
    Closed,
    /// The peer closed the connection.
    PeerClosed,
    ReadFailed(String),
    WriteFailed(String),
    /// TLS could not start, or its peer was refused ([`Conn::tls_ready`]).
    Tls(String),
    /// The pool gave its slot to a newer connection.
    Evicted,
}

/// What is waiting in a connection's queue.
pub enum Queue {
    /// The connection has no queue (yet).
    None,
    /// Wait on this for the next item.
    Listen(EventListener),
    /// Something is queued already: do not sleep.
    Ready,
}

/// One kind of connection, as the driver sees it.
pub trait Conn {
    type Outcome;
    /// The pre-authentication stanza limit applies to it (everything but our own
    /// outbound links).
    const PREAUTH_LIMIT: bool = true;
    /// Its answers leave through other connections (an inbound server stream's
    /// go out on our outbound link): holding its own output does not order them
    /// after what it queued for the store, so each stanza that queued something
    /// is durable before the next stanza is handled, and it never reads ahead.
    const ANSWERS_ELSEWHERE: bool = false;
    /// For log lines.
    fn label(&self) -> &'static str;
    /// Moves what others queued for the connection into `out`.
    fn take_queued(&mut self, server: &Server, clock: &mut Clock, out: &mut Vec<u8>) -> Action;
    /// `out` is about to be written (stream management keeps a copy of each
    /// stanza in it until the peer acknowledges it, and may append a request).
    fn sending(&mut self, _out: &mut Vec<u8>) {}
    /// Everything put into `out` so far was written.
    fn written(&mut self) {}
    fn listen_queue(&self) -> Queue;
    /// One input for the protocol core.
    fn input(&mut self, server: &Server, transport: &Transport, input: Input<'_>, out: &mut Vec<u8>) -> Action;
    /// The answer to [`Action::CheckPassword`].
    fn password_checked(&mut self, _server: &Server, _verified: bool, _out: &mut Vec<u8>) -> Action {
        Action::Continue
    }
    /// The earliest deadline now.
    fn deadline(&self, server: &Server, clock: &Clock) -> (Instant, Due);
    /// A [`Due::Ping`] or [`Due::Idle`] deadline passed.
    fn due(&mut self, server: &Server, due: Due, clock: &mut Clock, out: &mut Vec<u8>) -> Action;
    /// The pool kind once the peer is authenticated.
    fn authenticated(&self) -> Option<Kind>;
    /// Bytes per second it may send us (`None`: no limit).
    fn read_rate(&self, _server: &Server) -> Option<u32> {
        None
    }
    /// Starts TLS after [`Action::StartTls`] was written; may write (a new header).
    fn start_tls(&mut self, server: &Server, transport: &mut Transport, out: &mut Vec<u8>) -> std::io::Result<()>;
    /// The TLS handshake completed; `Err` ends the connection (a refused peer).
    fn tls_ready(&mut self, _server: &Server, _transport: &Transport) -> Result<(), String> {
        Ok(())
    }
    /// The connection ended.
    fn finish(self, server: &Server, exit: Exit) -> Self::Outcome;
}

/// A token bucket over bytes read: a burst of one maximal stanza, then `rate`
/// bytes per second. Reading pauses while it is empty; nothing is dropped.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: usize, now: Instant) -> Bucket {
        Bucket { rate: f64::from(rate.max(1)), burst: burst as f64, tokens: burst as f64, at: now }
    }

    /// Takes `n` bytes; when the bucket is overdrawn, the time reading may resume.
    fn take(&mut self, n: usize, now: Instant) -> Option<Instant> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        self.at = now;
        (self.tokens < 0.0).then(|| now + Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// What woke the connection.
enum Wake {
    Readable,
    Queue,
    Due(Due),
    Resume,
    Shutdown,
    Evicted,
}

/// How a connection's bytes carry XML: a stream over TCP/TLS (RFC 6120), or
/// one element per WebSocket message (RFC 7395).
pub enum Framing {
    Xml,
    WebSocket(Box<super::websocket::WsFraming>),
}

impl Framing {
    fn has_pending(&self) -> bool {
        matches!(self, Framing::WebSocket(ws) if ws.has_pending())
    }

    fn memory(&self) -> usize {
        match self {
            Framing::Xml => 0,
            Framing::WebSocket(ws) => ws.memory(),
        }
    }

    fn read(&mut self, transport: &mut Transport, framer: &mut Framer) -> std::io::Result<ReadOutcome> {
        match self {
            Framing::Xml => transport.read_into(framer),
            Framing::WebSocket(_) if framer.room() == 0 => Ok(ReadOutcome::WouldBlock),
            Framing::WebSocket(ws) => ws.read_into(transport, framer),
        }
    }

    /// Writes the core's output in this framing.
    async fn write(&mut self, transport: &mut Transport, out: &[u8], timeout: Duration) -> std::io::Result<()> {
        match self {
            Framing::Xml => transport.write_all(out, timeout).await,
            Framing::WebSocket(ws) => {
                let mut frames = Vec::with_capacity(out.len() + 16);
                ws.frame_output(out, &mut frames);
                transport.write_all(&frames, timeout).await
            }
        }
    }

    /// The output as it goes on the wire, for an abandoned connection.
    fn framed(&mut self, out: &[u8]) -> Vec<u8> {
        match self {
            Framing::Xml => out.to_vec(),
            Framing::WebSocket(ws) => {
                let mut frames = Vec::new();
                ws.frame_output(out, &mut frames);
                frames
            }
        }
    }
}

/// Drives one connection until it ends.
pub async fn drive<C: Conn>(server: &Server, transport: Transport, conn: C, lease: &SessionLease) -> C::Outcome {
    drive_from(server, transport, conn, lease, Instant::now(), Vec::new()).await
}

/// Drives a connection accepted at `accepted` that already sent `prefix` (read
/// before the driver started: the start of its stream header).
pub async fn drive_from<C: Conn>(
    server: &Server,
    transport: Transport,
    conn: C,
    lease: &SessionLease,
    accepted: Instant,
    prefix: Vec<u8>,
) -> C::Outcome {
    drive_framed(server, transport, conn, lease, accepted, prefix, Framing::Xml).await
}

/// [`drive_from`] in a given framing.
pub async fn drive_framed<C: Conn>(
    server: &Server,
    mut transport: Transport,
    mut conn: C,
    lease: &SessionLease,
    accepted: Instant,
    prefix: Vec<u8>,
    mut framing: Framing,
) -> C::Outcome {
    let config = &server.config;
    let mut framer = Framer::new(config.xml);
    if C::PREAUTH_LIMIT {
        framer.limit_until_authenticated(config.max_preauth_stanza_size);
    }
    let mut rest = &prefix[..];
    while !rest.is_empty() {
        let n = framer.feed(rest);
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    let had_prefix = !prefix.is_empty();
    drop(prefix);
    let now = Instant::now();
    let mut clock = Clock { started: accepted, last_activity: now, ping_sent: None };
    let mut bucket = conn.read_rate(server).map(|rate| Bucket::new(rate, framer.limits().max_stanza_size, now));
    let mut paused_until: Option<Instant> = None;
    let mut out = Vec::new();
    // Bytes already in the framer are handled before the first wait.
    let mut backlogged = had_prefix;
    let mut promoted = false;
    // Sent an element after its header (the pool evicts such ones last).
    let mut progressed = false;
    let mut tls_noticed = false;
    let mut shutdown = server.shutdown.listen();
    let mut queue: Option<EventListener> = None;
    let mut charge = server.buffers.charge();
    // Store tickets of the stanzas being handled (S9), waited for before writing,
    // each with where its stanza's answers end in `out`.
    let mut held: Vec<(crate::store::writer::Ticket, usize)> = Vec::new();
    // Bytes read while holding tickets.
    let mut read_ahead = 0usize;
    let exit = 'conn: loop {
        let mut action = conn.take_queued(server, &mut clock, &mut out);
        let wake = if matches!(action, Action::Close) {
            None
        } else if server.is_shutting_down() {
            Some(Wake::Shutdown)
        } else if paused_until.is_none()
            && (transport.has_buffered_input() || framing.has_pending() || std::mem::take(&mut backlogged))
        {
            Some(Wake::Readable)
        } else if !out.is_empty() {
            None
        } else {
            // An idle connection holds no buffer of ours: neither input nor output.
            framer.trim();
            if let Framing::WebSocket(ws) = &mut framing {
                ws.trim();
            }
            out = Vec::new();
            charge.set(framer.memory() + framing.memory());
            if queue.is_none() {
                match conn.listen_queue() {
                    Queue::Ready => continue 'conn,
                    Queue::Listen(l) => queue = Some(l),
                    Queue::None => {}
                }
            }
            let (mut deadline, due) = conn.deadline(server, &clock);
            let mut resume = false;
            if let Some(at) = paused_until {
                if at <= deadline {
                    (deadline, resume) = (at, true);
                }
            }
            let read = paused_until.is_none();
            // Only an unauthenticated connection can be evicted: the others do
            // not listen for it (a listener per wait is an allocation per wake).
            let evictable = (!promoted).then_some(lease);
            Some(match super::wait_idle(&transport, read, &mut queue, deadline, &mut shutdown, evictable).await {
                Idle::Readable => Wake::Readable,
                Idle::Queue => Wake::Queue,
                Idle::Shutdown => Wake::Shutdown,
                Idle::Evicted => Wake::Evicted,
                Idle::Deadline if resume => Wake::Resume,
                Idle::Deadline => Wake::Due(due),
            })
        };
        match wake {
            None => {}
            Some(Wake::Queue) => queue = None,
            Some(Wake::Resume) => {
                paused_until = None;
                backlogged = true;
            }
            Some(Wake::Readable) if !promoted && server.buffers.exceeded() => {
                // S1: past the buffer budget, an unauthenticated peer that sends
                // more is let go (its buffers are what fills the budget); the
                // authenticated go on, each within its own limits.
                let error = crate::stream::StreamError::with_text(
                    crate::stream::StreamCondition::ResourceConstraint,
                    "the server's buffer memory is in use (max_buffer_memory)",
                );
                action = conn.input(server, &transport, Input::Kill(error), &mut out);
            }
            Some(Wake::Readable) => {
                match framing.read(&mut transport, &mut framer) {
                    Ok(ReadOutcome::Eof) => {
                        // A WebSocket close is answered with one.
                        let _ = framing.write(&mut transport, &[], config.write_timeout).await;
                        break 'conn Exit::PeerClosed;
                    }
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Data(n)) => {
                        if !held.is_empty() {
                            read_ahead += n;
                        }
                        let now = Instant::now();
                        clock.last_activity = now;
                        clock.ping_sent = None;
                        paused_until = bucket.as_mut().and_then(|b| b.take(n, now));
                    }
                    Err(e) => {
                        // A TLS alert may be waiting to go out.
                        let _ = transport.write_all(&[], config.write_timeout).await;
                        break 'conn Exit::ReadFailed(e.to_string());
                    }
                }
                if !tls_noticed && transport.tls_ready() {
                    tls_noticed = true;
                    if let Err(why) = conn.tls_ready(server, &transport) {
                        transport.abandon(&[]);
                        return conn.finish(server, Exit::Tls(why));
                    }
                }
                loop {
                    action = match framer.next_event() {
                        Ok(Some(event)) => {
                            if !promoted && !progressed && matches!(event, crate::xml::Event::Element(_)) {
                                progressed = true;
                                lease.progressed();
                            }
                            conn.input(server, &transport, Input::Xml(event), &mut out)
                        }
                        Ok(None) => break,
                        Err(e) => conn.input(server, &transport, Input::XmlError(e), &mut out),
                    };
                    if let Action::CheckPassword(check) = action {
                        // Boxed, like every rare wait: an idle connection's task keeps
                        // the size of its largest wait.
                        action = Box::pin(check_password(server, &mut conn, check, lease, &mut out)).await;
                    }
                    // S9: what this stanza queued for the store writer is held
                    // until it is durable (below, before anything is written).
                    let queued = server.store.has_fresh_tickets();
                    if queued {
                        held.extend(server.store.take_fresh_tickets().into_iter().map(|t| (t, out.len())));
                    }
                    if !promoted {
                        if let Some(kind) = conn.authenticated() {
                            promoted = true;
                            framer.authenticated();
                            if lease.promote(kind).is_err() {
                                let error = crate::stream::StreamError::with_text(
                                    crate::stream::StreamCondition::ResourceConstraint,
                                    "the server serves as many connections of this kind as it may",
                                );
                                action = conn.input(server, &transport, Input::Kill(error), &mut out);
                            }
                        }
                    }
                    match action {
                        Action::Restart => framer.restart(),
                        Action::StartTls | Action::Close => break,
                        Action::Continue | Action::CheckPassword(_) => {}
                    }
                    // S8: answers to one read wait at most `c2s_queue_size` bytes;
                    // the rest of the input is handled after they are written.
                    // (And S9 for answers that leave elsewhere: after the wait.)
                    if out.len() >= config.c2s_queue_size || (queued && C::ANSWERS_ELSEWHERE) {
                        backlogged = true;
                        break;
                    }
                }
                charge.set(framer.memory() + out.capacity() + framing.memory());
            }
            Some(Wake::Due(Due::Timeout(why))) => {
                action = conn.input(server, &transport, Input::Timeout(why), &mut out)
            }
            Some(Wake::Due(due)) => action = conn.due(server, due, &mut clock, &mut out),
            Some(Wake::Shutdown) => action = conn.input(server, &transport, Input::Shutdown, &mut out),
            Some(Wake::Evicted) => {
                action = conn.input(server, &transport, Input::Kill(super::evicted_error()), &mut out)
            }
        }
        if lease.evicted() {
            // One of a flood, most likely: no waiting on it.
            transport.abandon(&framing.framed(&out));
            return conn.finish(server, Exit::Evicted);
        }
        // While the writer commits, the stream reads ahead: its next stanzas are
        // handled and their answers held behind the same tickets, so the writer's
        // next batch fills while it commits this one (rather than every sender
        // pausing for each commit in turn), within READ_AHEAD_TICKETS,
        // READ_AHEAD_BYTES and `c2s_queue_size` held bytes. The durability order
        // holds: nothing is written before every held ticket is done.
        if let Some((newest, _)) = held.last() {
            if matches!(action, Action::Continue)
                && !C::ANSWERS_ELSEWHERE
                && paused_until.is_none()
                && held.len() < READ_AHEAD_TICKETS
                && read_ahead < READ_AHEAD_BYTES
                && out.len() < config.c2s_queue_size
                && !newest.done()
            {
                let more = transport.has_buffered_input()
                    || framing.has_pending()
                    || Box::pin(futures_lite::future::or(
                        async {
                            newest.wait().await;
                            false
                        },
                        async {
                            // An error is the next read's to report.
                            let _ = transport.readable().await;
                            true
                        },
                    ))
                    .await;
                if more {
                    backlogged = true;
                    continue 'conn;
                }
            }
        }
        // S9: nothing is answered before what the stanzas of this read queued for
        // the store writer is durable; the stanzas of one read share the wait (one
        // group commit for a client's burst, not one per stanza), and other
        // connections run on meanwhile.
        // A refusal goes where its stanza's answers went: before those of later
        // stanzas.
        if !held.is_empty() {
            read_ahead = 0;
            let mut bounces = Vec::new();
            for (ticket, at) in held.drain(..) {
                Box::pin(ticket.wait()).await;
                if let Some(bounce) = ticket.take_bounce() {
                    bounces.push((at.min(out.len()), bounce));
                }
            }
            for (at, bounce) in bounces.into_iter().rev() {
                out.splice(at..at, bounce);
            }
        }
        if !out.is_empty() {
            conn.sending(&mut out);
        }
        if let Err(e) = framing.write(&mut transport, &out, config.write_timeout).await {
            break 'conn Exit::WriteFailed(e.to_string());
        }
        conn.written();
        out.clear();
        // A burst (a room's 49 presences on entering, an offline batch) must not
        // leave its buffer behind on every idle connection: that was most of the
        // memory a group-chat occupant cost (issue 15).
        if out.capacity() > OUT_KEPT {
            out = Vec::new();
        }
        match action {
            Action::StartTls => {
                // RFC 6120 §5.4.3.3: nothing received before the handshake is processed.
                framer.discard_buffered();
                framer.restart();
                if let Err(e) = conn.start_tls(server, &mut transport, &mut out) {
                    break 'conn Exit::Tls(e.to_string());
                }
                tls_noticed = false;
            }
            Action::Close => {
                // The session leaves the registry before the close lingers.
                drop(framer);
                let outcome = conn.finish(server, Exit::Closed);
                transport.close(config.write_timeout).await;
                return outcome;
            }
            Action::Continue | Action::Restart | Action::CheckPassword(_) => {}
        }
    };
    let peer = lease.peer().map_or_else(|| "-".to_string(), |p| p.to_string());
    log::debug!("{} {peer}: {exit:?}", conn.label());
    conn.finish(server, exit)
}

/// A password check off the loop, one per core at a time (S12); an address that
/// failed too often while it waited gets no check at all.
async fn check_password<C: Conn>(
    server: &Server,
    conn: &mut C,
    check: Box<PlainCheck>,
    lease: &SessionLease,
    out: &mut Vec<u8>,
) -> Action {
    let permit = server.password_checks.acquire().await;
    let ip = lease.peer().map(|p| p.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let verified =
        if server.limiter.allowed(ip, Instant::now()) { blocking::unblock(move || check.run()).await } else { false };
    drop(permit);
    conn.password_checked(server, verified, out)
}

/// The deadline of a pinged connection (XEP-0199): silent for `interval`, a ping;
/// no answer within `timeout`, the end.
pub fn ping_deadline(server: &Server, clock: &Clock) -> (Instant, Due) {
    let config = &server.config;
    match clock.ping_sent {
        None => (clock.last_activity + config.c2s_ping_interval, Due::Ping),
        Some(at) => {
            (at + config.c2s_ping_timeout, Due::Timeout("no answer to the keepalive ping within c2s_ping_timeout"))
        }
    }
}

/// Writes a keepalive ping (XEP-0199 §4.2); any data from the peer counts as the
/// answer (the iq result is dropped by the router like every unsolicited result).
pub fn write_ping(out: &mut Vec<u8>, from: Option<&str>, to: Option<&str>, clock: &mut Clock) {
    crate::xml::writer::XmlWriter::new(out)
        .start("iq")
        .attr("type", "get")
        .attr("id", "wrenhub-keepalive")
        .attr_opt("from", from)
        .attr_opt("to", to)
        .open()
        .empty_ns("ping", crate::ns::NS_PING)
        .end("iq");
    clock.ping_sent = Some(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, 4000, t0);
        assert_eq!(b.take(4000, t0), None, "one burst at once");
        let resume = b.take(500, t0).expect("overdrawn");
        assert!((resume - t0).as_millis().abs_diff(500) <= 1, "{:?}", resume - t0);
        assert_eq!(b.take(0, t0 + Duration::from_secs(1)), None, "refilled after a second");
    }
}
