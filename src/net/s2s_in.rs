//! The task of one inbound server-to-server connection: read → framer →
//! [`S2sInStream`] → write, with STARTTLS, dialback verifications waiting for the
//! authoritative server, the authentication and idle deadlines, and shutdown.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::s2s::{DialbackWaiter, SendError, Verdict, VerifyRequest};
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::s2s_in::{Env, Input, S2sInStream, Step};
use crate::xml::Framer;
use event_listener::EventListener;
use std::rc::Rc;
use std::time::Instant;

enum Wake {
    Readable,
    Answers,
    Deadline(&'static str),
    Shutdown,
    /// The pool gave this connection's slot to a newer one.
    Evicted,
}

/// Serves one inbound s2s connection until it closes.
pub async fn serve(server: Rc<Server>, mut transport: Transport, lease: SessionLease) {
    let Some(s2s) = server.s2s.as_ref() else { return };
    let config = &server.config;
    let peer = lease.peer();
    let mut framer = Framer::new(config.xml);
    framer.limit_until_authenticated(config.max_preauth_stanza_size);
    let mut framer_lifted = false;
    let mut stream = S2sInStream::new(transport.is_tls());
    let waiter = Rc::new(DialbackWaiter::default());
    let mut out = Vec::new();
    let mut backlogged = false;
    let started = Instant::now();
    let mut last_read = started;
    let mut shutdown = server.shutdown.listen();
    let mut answers: Option<EventListener> = None;
    let serves = |d: &str| server.serves(d);
    loop {
        let mut step = Step::Continue;
        for (domain, verdict) in waiter.take() {
            stream.dialback_answer(&domain, verdict, &mut out);
        }
        let wake = if server.is_shutting_down() {
            Some(Wake::Shutdown)
        } else if transport.has_buffered_input() || std::mem::take(&mut backlogged) {
            Some(Wake::Readable)
        } else if !out.is_empty() {
            None
        } else {
            // An idle connection holds no buffer of ours: neither input nor output.
            framer.trim();
            out = Vec::new();
            if answers.is_none() {
                match waiter.listen_if_idle() {
                    Some(l) => answers = Some(l),
                    None => continue,
                }
            }
            let (deadline, why) = if stream.authenticated() {
                (last_read + config.s2s_idle_timeout, "no data received within s2s_idle_timeout")
            } else {
                (started + config.c2s_auth_timeout, "not authenticated within c2s_auth_timeout")
            };
            Some(match super::wait_idle(&transport, &mut answers, deadline, &mut shutdown, Some(&lease)).await {
                Idle::Readable => Wake::Readable,
                Idle::Queue => Wake::Answers,
                Idle::Shutdown => Wake::Shutdown,
                Idle::Evicted => Wake::Evicted,
                Idle::Deadline => Wake::Deadline(why),
            })
        };
        match wake {
            None => {}
            Some(Wake::Answers) => answers = None,
            Some(Wake::Readable) => {
                match transport.read_into(&mut framer) {
                    Ok(ReadOutcome::Eof) => break,
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Data) => last_read = Instant::now(),
                    Err(e) => {
                        log::debug!("s2s in {peer:?}: read failed: {e}");
                        let _ = transport.write_all(&[], config.write_timeout).await;
                        break;
                    }
                }
                let env = Env {
                    s2s,
                    dialback: config.s2s_dialback,
                    peer_chain: transport.peer_certificates(),
                    serves: &serves,
                    router: server.router(),
                };
                loop {
                    step = match framer.next_event() {
                        Ok(Some(event)) => stream.handle(Input::Xml(event), &env, &mut out),
                        Ok(None) => break,
                        Err(e) => stream.handle(Input::XmlError(e), &env, &mut out),
                    };
                    if stream.authenticated() && !framer_lifted {
                        framer_lifted = true;
                        framer.authenticated();
                        if lease.promote(Kind::S2sIn).is_err() {
                            let error = crate::stream::StreamError::with_text(
                                crate::stream::StreamCondition::ResourceConstraint,
                                "too many server connections (max_s2s_in)",
                            );
                            step = stream.handle(Input::Kill(error), &env, &mut out);
                        }
                    }
                    match step {
                        Step::Verify(domain, key) => {
                            let request = VerifyRequest {
                                stream_id: stream.stream_id().to_string(),
                                key,
                                waiter: Rc::downgrade(&waiter),
                            };
                            if let Err(e) = s2s.request_verify(&domain, request) {
                                log::warn!("s2s in: cannot verify {domain}: {e:?}");
                                let verdict = match e {
                                    SendError::QueueFull | SendError::TooManyLinks => Verdict::Overloaded,
                                };
                                stream.dialback_answer(&domain, verdict, &mut out);
                            }
                            step = Step::Continue;
                        }
                        Step::Restart => framer.restart(),
                        Step::StartTls | Step::Close => break,
                        Step::Continue => {}
                    }
                    // S8: answers to one read wait at most `c2s_queue_size` bytes;
                    // the rest of the input is handled after they are written.
                    if out.len() >= config.c2s_queue_size {
                        backlogged = true;
                        break;
                    }
                }
            }
            Some(Wake::Deadline(why)) => step = handle_other(&server, &mut stream, Input::Timeout(why), &mut out),
            Some(Wake::Shutdown) => step = handle_other(&server, &mut stream, Input::Shutdown, &mut out),
            Some(Wake::Evicted) => {
                step = handle_other(&server, &mut stream, Input::Kill(super::evicted_error()), &mut out)
            }
        }
        if lease.evicted() {
            // One of a flood, most likely: no waiting on it.
            transport.abandon(&out);
            return;
        }
        if let Err(e) = transport.write_all(&out, config.write_timeout).await {
            log::debug!("s2s in {peer:?}: write failed: {e}");
            break;
        }
        out.clear();
        match step {
            Step::StartTls => {
                // RFC 6120 §5.4.3.3: nothing received before the handshake counts.
                framer.discard_buffered();
                framer.restart();
                if let Err(e) = transport.start_tls(server.s2s_server_config(false)) {
                    log::warn!("s2s in {peer:?}: cannot start TLS: {e}");
                    break;
                }
                stream.set_secure();
            }
            Step::Close => {
                drop(framer);
                transport.close(config.write_timeout).await;
                return;
            }
            _ => {}
        }
    }
}

/// Inputs that are not XML (deadline, shutdown) need no peer certificate.
fn handle_other(server: &Server, stream: &mut S2sInStream, input: Input<'_>, out: &mut Vec<u8>) -> Step {
    let Some(s2s) = server.s2s.as_ref() else { return Step::Close };
    let serves = |d: &str| server.serves(d);
    let env =
        Env { s2s, dialback: server.config.s2s_dialback, peer_chain: None, serves: &serves, router: server.router() };
    stream.handle(input, &env, out)
}
