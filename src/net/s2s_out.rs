//! The task of one outbound server-to-server link: resolve the remote domain,
//! connect (bounded by `s2s_connect_timeout`), run [`S2sOutStream`] through TLS and
//! authentication, then write the link's queued stanzas and dialback requests
//! until the link is idle for `s2s_idle_timeout`. Whatever could not be sent is
//! bounced to its local sender when the task ends.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::s2s::resolve::{candidates, Candidate};
use crate::s2s::{deliver_bounces, OutLink};
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stanza::Condition;
use crate::stream::s2s_out::{Env, Input, S2sOutStream, Step};
use crate::xml::Framer;
use async_io::{Async, Timer};
use event_listener::EventListener;
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

enum Wake {
    Readable,
    Queue,
    Deadline,
    Shutdown,
}

async fn connect_and_serve(server: &Server, link: &OutLink) -> Ended {
    let config = &server.config;
    let Some(s2s) = server.s2s.as_ref() else { return Ended::Failed("federation is off".into()) };
    let started = Instant::now();
    let auth_deadline = started + config.s2s_connect_timeout;
    let (socket, candidate) = match connect(server, link, auth_deadline).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Ok(_lease): Result<SessionLease, _> = server.pool.acquire(candidate.addr, Kind::S2sOut) else {
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
    let env = Env { secret: &s2s.secret, dialback: config.s2s_dialback };
    let mut framer = Framer::new(config.xml);
    let mut out = Vec::new();
    let mut stream = S2sOutStream::new((*server.domain).clone(), link.remote.clone(), candidate.direct_tls, &mut out);
    let mut last_activity = Instant::now();
    let mut shutdown = server.shutdown.listen();
    let mut queue: Option<EventListener> = None;
    let mut peer_checked = false;
    loop {
        let mut step = Step::Continue;
        if stream.can_verify() {
            for request in link.take_verifies() {
                stream.send_verify(request, &mut out);
            }
        }
        if stream.established() {
            if !link.is_ready() {
                link.set_ready();
                let how = match stream.auth_method() {
                    Some(crate::stream::s2s_out::AuthMethod::SaslExternal) => "SASL EXTERNAL",
                    _ => "dialback",
                };
                log::info!("s2s link to {} established ({how}, via {})", link.remote, candidate.addr);
            }
            if link.has_queued() {
                link.drain_into(&mut out);
                last_activity = Instant::now();
            }
        }
        let wake = if server.is_shutting_down() {
            Some(Wake::Shutdown)
        } else if transport.has_buffered_input() {
            Some(Wake::Readable)
        } else if !out.is_empty() {
            None
        } else {
            // An idle connection holds no buffer of ours: neither input nor output.
            framer.trim();
            out = Vec::new();
            if queue.is_none() {
                match link.listen_if_idle(stream.established(), stream.can_verify()) {
                    Some(l) => queue = Some(l),
                    None => continue,
                }
            }
            let deadline = if stream.established() { last_activity + config.s2s_idle_timeout } else { auth_deadline };
            Some(match super::wait_idle(&transport, &mut queue, deadline, &mut shutdown, None).await {
                Idle::Readable => Wake::Readable,
                Idle::Queue => Wake::Queue,
                Idle::Shutdown | Idle::Evicted => Wake::Shutdown,
                Idle::Deadline => Wake::Deadline,
            })
        };
        match wake {
            None => {}
            Some(Wake::Queue) => queue = None,
            Some(Wake::Readable) => {
                match transport.read_into(&mut framer) {
                    Ok(ReadOutcome::Eof) => {
                        stream.abandon_verifies();
                        return if stream.established() {
                            Ended::Cleanly
                        } else {
                            Ended::Failed(
                                stream.failure.take().unwrap_or_else(|| "the peer closed the connection".into()),
                            )
                        };
                    }
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Data) => last_activity = Instant::now(),
                    Err(e) => {
                        let _ = transport.write_all(&[], config.write_timeout).await;
                        stream.abandon_verifies();
                        return Ended::Failed(format!("read failed: {e}"));
                    }
                }
                // S2: once TLS is up, a peer that must be authenticated by its
                // certificate and is not gets nothing more from us.
                if !peer_checked && transport.tls_ready() {
                    peer_checked = true;
                    let remote = link.remote.as_str();
                    if s2s.trust.must_authenticate(remote)
                        && !transport.peer_certificates().is_some_and(|chain| s2s.trust.authenticates(chain, remote))
                    {
                        stream.abandon_verifies();
                        drop(framer);
                        transport.abandon(&[]);
                        return Ended::Failed(format!(
                            "the certificate of {} at {} does not authenticate it (pinned, or s2s_secure_auth)",
                            remote, candidate.addr
                        ));
                    }
                }
                loop {
                    step = match framer.next_event() {
                        Ok(Some(event)) => stream.handle(Input::Xml(event), &env, &mut out),
                        Ok(None) => break,
                        Err(e) => stream.handle(Input::XmlError(e), &env, &mut out),
                    };
                    match step {
                        Step::Continue => {}
                        Step::Restart => framer.restart(),
                        Step::StartTls | Step::Close => break,
                    }
                }
            }
            Some(Wake::Deadline) if stream.established() => {
                // Idle: the link closes; the next stanza opens a new one. It leaves
                // the table first, so nothing more is queued on it.
                if link.has_queued() || link.has_verifies() {
                    last_activity = Instant::now();
                    continue;
                }
                log::info!("s2s link to {} closed after s2s_idle_timeout", link.remote);
                s2s.remove_idle(link);
                out.extend_from_slice(b"</stream:stream>");
                step = Step::Close;
            }
            Some(Wake::Deadline) => {
                stream.abandon_verifies();
                let _ = transport.write_all(b"</stream:stream>", config.write_timeout).await;
                return Ended::TimedOut;
            }
            Some(Wake::Shutdown) => {
                step = stream.handle(Input::Shutdown, &env, &mut out);
            }
        }
        if let Err(e) = transport.write_all(&out, config.write_timeout).await {
            stream.abandon_verifies();
            return Ended::Failed(format!("write failed: {e}"));
        }
        out.clear();
        match step {
            Step::StartTls => {
                framer.discard_buffered();
                framer.restart();
                if let Err(e) = transport.start_client_tls(server.s2s_client_config(false), name.clone()) {
                    return Ended::Failed(format!("TLS: {e}"));
                }
                stream.restart(&mut out);
            }
            Step::Close => {
                let established = stream.established() || link.is_ready();
                let failure = stream.failure.take();
                drop(framer);
                transport.close(config.write_timeout).await;
                return match failure {
                    Some(why) if !established => Ended::Failed(why),
                    Some(why) => {
                        log::info!("s2s link to {} closed: {why}", link.remote);
                        Ended::Cleanly
                    }
                    None => Ended::Cleanly,
                };
            }
            _ => {}
        }
    }
}
