//! The task of one outbound server-to-server link: resolve the remote domain,
//! connect (bounded by `s2s_connect_timeout`), run [`S2sOutStream`] through TLS and
//! authentication, then write the link's queued stanzas and dialback requests
//! until the link is idle for `s2s_idle_timeout`. Whatever could not be sent is
//! bounced to its local sender when the task ends.

use super::driver::{drive, Action, Clock, Conn, Due, Exit, Queue};
use super::transport::Transport;
use crate::s2s::resolve::{candidates, Candidate};
use crate::s2s::{deliver_bounces, OutLink};
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stanza::Condition;
use crate::stream::s2s_out::{Env, Input, S2sOutStream, Step};
use async_io::{Async, Timer};
use rustls::pki_types::ServerName;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Instant;

/// How a link ended, for the bounces of what it still held.
enum Ended {
    /// Closed after being idle, or at shutdown: nothing was lost.
    Cleanly,
    /// Never connected or authenticated: `remote-server-not-found`.
    Failed(String),
    /// The connect/authentication deadline passed: `remote-server-timeout`.
    TimedOut,
    /// No session slot was free: `resource-constraint`.
    NoSlot,
}

/// Runs one outbound link until it ends.
pub async fn run(server: Rc<Server>, link: Rc<OutLink>) {
    let ended = connect_and_serve(&server, &link).await;
    let Some(s2s) = server.s2s.as_ref() else { return };
    let bounces = s2s.remove(&link);
    let (condition, text) = match &ended {
        Ended::Cleanly => (Condition::RemoteServerNotFound, "the link to the remote server closed".to_string()),
        Ended::Failed(why) => {
            log::warn!("s2s link to {} failed: {why}", link.remote);
            (Condition::RemoteServerNotFound, format!("cannot reach {}: {why}", link.remote))
        }
        Ended::TimedOut => {
            log::warn!("s2s link to {} timed out", link.remote);
            (Condition::RemoteServerTimeout, format!("{} did not answer within s2s_connect_timeout", link.remote))
        }
        Ended::NoSlot => (Condition::ResourceConstraint, "the server has no free connection slot".to_string()),
    };
    deliver_bounces(&server.registry, &server.domain, bounces, condition, &text);
}

/// The name the remote certificate is checked against (and SNI for a host name).
fn server_name(domain: &str, addr: std::net::SocketAddr) -> ServerName<'static> {
    let bare = domain.trim_start_matches('[').trim_end_matches(']').to_string();
    ServerName::try_from(bare).unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()))
}

/// Resolves and connects within the deadline; the first candidate that accepts wins.
async fn connect(server: &Server, link: &OutLink, deadline: Instant) -> Result<(Async<TcpStream>, Candidate), Ended> {
    let config = &server.config;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let found = futures_lite::future::or(
        async {
            Some(
                candidates(
                    &config.s2s_routes,
                    config.s2s_dns_server,
                    &link.remote,
                    remaining,
                    config.s2s_private_targets,
                )
                .await,
            )
        },
        async {
            Timer::at(deadline).await;
            None
        },
    )
    .await;
    let Some(found) = found else { return Err(Ended::TimedOut) };
    if found.is_empty() {
        return Err(Ended::Failed(
            "no address found (no s2s_route, SRV or A/AAAA record; private ones need s2s_private_targets)".into(),
        ));
    }
    let mut last_error = String::new();
    for candidate in found {
        let attempt =
            futures_lite::future::or(async { Some(Async::<TcpStream>::connect(candidate.addr).await) }, async {
                Timer::at(deadline).await;
                None
            })
            .await;
        match attempt {
            None => return Err(Ended::TimedOut),
            Some(Ok(stream)) => {
                if let Err(e) = stream.get_ref().set_nodelay(true) {
                    log::debug!("{}: TCP_NODELAY failed: {e}", candidate.addr);
                }
                return Ok((stream, candidate));
            }
            Some(Err(e)) => {
                log::debug!("s2s link to {}: {} refused: {e}", link.remote, candidate.addr);
                last_error = format!("{}: {e}", candidate.addr);
            }
        }
    }
    Err(Ended::Failed(last_error))
}

/// An outbound link once connected: the [`S2sOutStream`] core, the link's queue of
/// stanzas and dialback verifications, the peer's certificate check.
struct Outbound<'l> {
    link: &'l OutLink,
    stream: S2sOutStream,
    candidate: Candidate,
    name: ServerName<'static>,
    /// Connected and authenticated by then, or the link times out.
    auth_deadline: Instant,
    timed_out: bool,
}

async fn connect_and_serve(server: &Server, link: &OutLink) -> Ended {
    let config = &server.config;
    if server.s2s.is_none() {
        return Ended::Failed("federation is off".into());
    }
    let started = Instant::now();
    let auth_deadline = started + config.s2s_connect_timeout;
    let (socket, candidate) = match connect(server, link, auth_deadline).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Ok(lease): Result<SessionLease, _> = server.pool.acquire(candidate.addr, Kind::S2sOut) else {
        return Ended::NoSlot;
    };
    let name = server_name(link.remote.as_str(), candidate.addr);
    let mut transport = Transport::plain(socket);
    if candidate.direct_tls {
        if let Err(e) = transport.start_client_tls(server.s2s_client_config(true), name.clone()) {
            return Ended::Failed(format!("TLS: {e}"));
        }
    }
    log::debug!("s2s link to {}: connected to {}", link.remote, candidate.addr);
    // The stream's header is its first output, written before anything is read.
    let mut header = Vec::new();
    let stream = S2sOutStream::new(link.local.clone(), link.remote.clone(), candidate.direct_tls, &mut header);
    if let Err(e) = transport.write_all(&header, config.write_timeout).await {
        return Ended::Failed(format!("write failed: {e}"));
    }
    let outbound = Outbound { link, stream, candidate, name, auth_deadline, timed_out: false };
    drive(server, transport, outbound, &lease).await
}

impl Outbound<'_> {
    fn action(step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Restart => Action::Restart,
            Step::StartTls => Action::StartTls,
            Step::Close => Action::Close,
        }
    }
}

impl Conn for Outbound<'_> {
    type Outcome = Ended;
    /// Our own link: the peer's features come before it is authenticated.
    const PREAUTH_LIMIT: bool = false;

    fn label(&self) -> &'static str {
        "s2s out"
    }

    fn take_queued(&mut self, _: &Server, clock: &mut Clock, out: &mut Vec<u8>) -> Action {
        let (link, stream) = (self.link, &mut self.stream);
        if stream.can_verify() {
            for request in link.take_verifies() {
                stream.send_verify(request, out);
            }
        }
        if stream.established() {
            if !link.is_ready() {
                link.set_ready();
                let how = match stream.auth_method() {
                    Some(crate::stream::s2s_out::AuthMethod::SaslExternal) => "SASL EXTERNAL",
                    _ => "dialback",
                };
                log::info!(
                    "s2s link to {} established ({how}, via {}, from {})",
                    link.remote,
                    self.candidate.addr,
                    link.local
                );
            }
            if link.has_queued() {
                link.drain_into(out);
                clock.last_activity = Instant::now();
            }
        }
        Action::Continue
    }

    fn written(&mut self) {
        self.link.written();
    }

    fn listen_queue(&self) -> Queue {
        match self.link.listen_if_idle(self.stream.established(), self.stream.can_verify()) {
            Some(listener) => Queue::Listen(listener),
            None => Queue::Ready,
        }
    }

    fn input(&mut self, server: &Server, _: &Transport, input: Input<'_>, out: &mut Vec<u8>) -> Action {
        let Some(s2s) = server.s2s.as_ref() else { return Action::Close };
        let env = Env { secret: &s2s.secret, dialback: server.config.s2s_dialback };
        Self::action(self.stream.handle(input, &env, out))
    }

    fn deadline(&self, server: &Server, clock: &Clock) -> (Instant, Due) {
        if self.stream.established() {
            (clock.last_activity + server.config.s2s_idle_timeout, Due::Idle)
        } else {
            (self.auth_deadline, Due::Idle)
        }
    }

    fn due(&mut self, server: &Server, _: Due, clock: &mut Clock, out: &mut Vec<u8>) -> Action {
        if !self.stream.established() {
            self.timed_out = true;
            out.extend_from_slice(b"</stream:stream>");
            return Action::Close;
        }
        // Idle: the link closes; the next stanza opens a new one. It leaves the
        // table first, so nothing more is queued on it.
        if self.link.has_queued() || self.link.has_verifies() {
            clock.last_activity = Instant::now();
            return Action::Continue;
        }
        log::info!("s2s link to {} closed after s2s_idle_timeout", self.link.remote);
        if let Some(s2s) = server.s2s.as_ref() {
            s2s.remove_idle(self.link);
        }
        out.extend_from_slice(b"</stream:stream>");
        Action::Close
    }

    fn authenticated(&self) -> Option<Kind> {
        self.stream.established().then_some(Kind::S2sOut)
    }

    fn start_tls(&mut self, server: &Server, transport: &mut Transport, out: &mut Vec<u8>) -> std::io::Result<()> {
        transport.start_client_tls(server.s2s_client_config(false), self.name.clone())?;
        self.stream.restart(out);
        Ok(())
    }

    /// S2: once TLS is up, a peer that must be authenticated by its certificate
    /// and is not gets nothing more from us.
    fn tls_ready(&mut self, server: &Server, transport: &Transport) -> Result<(), String> {
        let Some(s2s) = server.s2s.as_ref() else { return Ok(()) };
        let remote = self.link.remote.as_str();
        if s2s.trust.must_authenticate(remote)
            && !transport.peer_certificates().is_some_and(|chain| s2s.trust.authenticates(chain, remote))
        {
            return Err(format!(
                "the certificate of {remote} at {} does not authenticate it (pinned, within a configured CA's name constraints, or s2s_secure_auth)",
                self.candidate.addr
            ));
        }
        Ok(())
    }

    fn finish(mut self, _: &Server, exit: Exit) -> Ended {
        self.stream.abandon_verifies();
        let established = self.stream.established() || self.link.is_ready();
        let failure = self.stream.failure.take();
        match exit {
            Exit::Closed if self.timed_out => Ended::TimedOut,
            Exit::Closed | Exit::PeerClosed => match failure {
                Some(why) if !established => Ended::Failed(why),
                None if !established => Ended::Failed("the peer closed the connection".into()),
                Some(why) => {
                    log::info!("s2s link to {} closed: {why}", self.link.remote);
                    Ended::Cleanly
                }
                None => Ended::Cleanly,
            },
            Exit::ReadFailed(e) => Ended::Failed(format!("read failed: {e}")),
            Exit::WriteFailed(e) => Ended::Failed(format!("write failed: {e}")),
            Exit::Tls(e) => Ended::Failed(format!("TLS: {e}")),
            Exit::Evicted => Ended::NoSlot,
        }
    }
}
