//! The task of one client connection: read → framer → [`C2sStream`] → write, with
//! TLS, the header/authentication/idle deadlines, the session's queue of routed
//! stanzas, and the shutdown signal.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::c2s::{C2sStream, Env, Input, Step};
use crate::xml::Framer;
use event_listener::EventListener;
use std::rc::Rc;
use std::time::Instant;

enum Wake {
    Readable,
    Queue,
    Deadline(&'static str),
    /// Time for a keepalive ping (XEP-0199 §4.2).
    Ping,
    Shutdown,
    /// The pool gave this connection's slot to a newer one.
    Evicted,
}

/// Serves one client connection until it closes.
pub async fn serve(server: Rc<Server>, mut transport: Transport, lease: SessionLease) {
    let config = &server.config;
    let peer = lease.peer();
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut framer = Framer::new(config.xml);
    framer.limit_until_authenticated(config.max_preauth_stanza_size);
    let mut c2s = C2sStream::new(server.policy.clone(), transport.is_tls());
    let mut out = Vec::new();
    let mut backlogged = false;
    let started = Instant::now();
    let mut last_read = started;
    let mut ping_sent: Option<Instant> = None;
    let mut shutdown = server.shutdown.listen();
    let mut queue_listener: Option<EventListener> = None;
    let mut bindings = Default::default();
    let mut bindings_ready = false;
    // The certificate this connection's handshake presents (Direct TLS started it
    // in the listener, in the same turn of the executor).
    let mut tls_setup = transport.is_tls().then(|| server.tls_setup());
    'conn: loop {
        let mut step = Step::Continue;
        // Routed stanzas and kill requests for the bound session.
        if let Some(error) = c2s.session().and_then(|s| s.take_close_or_drain(&mut out)) {
            step = c2s.handle(Input::Kill(error), &env(&server, &bindings, peer_ip), &mut out);
        }
        let wake = if matches!(step, Step::Close) {
            None
        } else if server.is_shutting_down() {
            Some(Wake::Shutdown)
        } else if transport.has_buffered_input() || std::mem::take(&mut backlogged) {
            Some(Wake::Readable)
        } else if !out.is_empty() {
            None
        } else {
            // An idle connection holds no buffer of ours: neither input nor output.
            framer.trim();
            out = Vec::new();
            if let (None, Some(session)) = (&queue_listener, c2s.session()) {
                match session.listen_if_idle() {
                    Some(listener) => queue_listener = Some(listener),
                    None => continue 'conn,
                }
            }
            let (deadline, why) = deadline(&server, &c2s, started, last_read, ping_sent);
            Some(match super::wait_idle(&transport, &mut queue_listener, deadline, &mut shutdown, Some(&lease)).await {
                Idle::Readable => Wake::Readable,
                Idle::Queue => Wake::Queue,
                Idle::Shutdown => Wake::Shutdown,
                Idle::Evicted => Wake::Evicted,
                Idle::Deadline => why.map_or(Wake::Ping, Wake::Deadline),
            })
        };
        match wake {
            None => {}
            Some(Wake::Queue) => queue_listener = None,
            Some(Wake::Readable) => {
                match transport.read_into(&mut framer) {
                    Ok(ReadOutcome::Eof) => {
                        log::debug!("{peer:?}: connection closed by the client");
                        break 'conn;
                    }
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Data) => {
                        last_read = Instant::now();
                        ping_sent = None;
                    }
                    Err(e) => {
                        log::debug!("{peer:?}: read failed: {e}");
                        // A TLS alert may be waiting to go out.
                        let _ = transport.write_all(&[], config.write_timeout).await;
                        break 'conn;
                    }
                }
                if !bindings_ready && transport.tls_ready() {
                    if let Some(setup) = &tls_setup {
                        bindings = transport.channel_bindings(&setup.end_entity);
                    }
                    bindings_ready = true;
                }
                loop {
                    let env = env(&server, &bindings, peer_ip);
                    step = match framer.next_event() {
                        Ok(Some(event)) => c2s.handle(Input::Xml(event), &env, &mut out),
                        Ok(None) => break,
                        Err(e) => c2s.handle(Input::XmlError(e), &env, &mut out),
                    };
                    if let Step::Verify(check) = step {
                        // One check per core at a time (S12); an address that failed
                        // too often while it waited gets no check at all.
                        let permit = server.password_checks.acquire().await;
                        let verified = if server.limiter.allowed(peer_ip, Instant::now()) {
                            blocking::unblock(move || check.run()).await
                        } else {
                            false
                        };
                        drop(permit);
                        step = c2s.plain_verified(verified, &env, &mut out);
                    }
                    if !c2s.unauthenticated() {
                        framer.authenticated();
                        // The pool's client share has room for every slot it has.
                        let _ = lease.promote(Kind::Client);
                    }
                    match step {
                        Step::Continue | Step::Verify(_) => {}
                        Step::Restart => framer.restart(),
                        Step::StartTls | Step::Close => break,
                    }
                    // S8: answers to one read wait at most `c2s_queue_size` bytes;
                    // the rest of the input is handled after they are written.
                    if out.len() >= config.c2s_queue_size {
                        backlogged = true;
                        break;
                    }
                }
            }
            Some(Wake::Ping) => {
                // Any data from the client counts as the answer (the iq result is
                // dropped by the router like every unsolicited result).
                crate::xml::writer::XmlWriter::new(&mut out)
                    .start("iq")
                    .attr("type", "get")
                    .attr("id", "wrenhub-keepalive")
                    .open()
                    .empty_ns("ping", crate::ns::NS_PING)
                    .end("iq");
                ping_sent = Some(Instant::now());
            }
            Some(Wake::Deadline(why)) => {
                step = c2s.handle(Input::Timeout(why), &env(&server, &bindings, peer_ip), &mut out)
            }
            Some(Wake::Shutdown) => step = c2s.handle(Input::Shutdown, &env(&server, &bindings, peer_ip), &mut out),
            Some(Wake::Evicted) => {
                step = c2s.handle(Input::Kill(super::evicted_error()), &env(&server, &bindings, peer_ip), &mut out)
            }
        }
        if lease.evicted() {
            // One of a flood, most likely: no waiting on it.
            transport.abandon(&out);
            return;
        }
        if let Err(e) = transport.write_all(&out, config.write_timeout).await {
            log::debug!("{peer:?}: write failed: {e}");
            break 'conn;
        }
        out.clear();
        match step {
            Step::Continue | Step::Restart | Step::Verify(_) => {}
            Step::StartTls => {
                // RFC 6120 §5.4.3.3: nothing received before the handshake is processed.
                framer.discard_buffered();
                framer.restart();
                let setup = server.tls_setup();
                let config = std::sync::Arc::clone(&setup.starttls);
                tls_setup = Some(setup);
                if let Err(e) = transport.start_tls(config) {
                    log::warn!("{peer:?}: cannot start TLS: {e}");
                    break 'conn;
                }
                c2s.set_secure();
            }
            Step::Close => {
                if let Some(s) = c2s.take_session() {
                    end_session(&server, &s);
                }
                drop(framer);
                transport.close(config.write_timeout).await;
                return;
            }
        }
    }
    if let Some(s) = c2s.take_session() {
        end_session(&server, &s);
    }
}

/// A bound session ends: unavailable presence on its behalf (RFC 6121 §4.5), then
/// it leaves the registry.
fn end_session(server: &Server, session: &Rc<crate::sessions::Session>) {
    // A session taken over by a new bind of the same resource says nothing: the
    // new session speaks for that address now.
    let still_bound = server.registry.get(&session.jid).is_some_and(|s| Rc::ptr_eq(&s, session));
    if still_bound {
        crate::handlers::presence::session_ended(&server.services(), session);
    }
    server.registry.unbind(session);
    let account = session.jid.to_bare();
    if server.registry.sessions(&account).is_empty() {
        crate::handlers::last::record_logout(&server.services(), &account);
    }
}

fn env<'a>(server: &'a Server, bindings: &'a crate::sasl::scram::ChannelBindings, peer: std::net::IpAddr) -> Env<'a> {
    Env {
        store: &server.store,
        registry: &server.registry,
        limiter: &server.limiter,
        secret: &server.secret,
        bindings,
        peer,
        components: &server.components,
        configured_components: &server.config.components,
        s2s: server.s2s.as_ref(),
    }
}

/// The earliest deadline that applies now, with the text of its timeout error
/// (`None`: the keepalive ping is due).
fn deadline(
    server: &Server,
    c2s: &C2sStream,
    started: Instant,
    last_read: Instant,
    ping_sent: Option<Instant>,
) -> (Instant, Option<&'static str>) {
    let config = &server.config;
    let mut best = (last_read + config.c2s_idle_timeout, Some("no data received within c2s_idle_timeout"));
    let mut consider = |at: Instant, why: Option<&'static str>| {
        if at < best.0 {
            best = (at, why);
        }
    };
    // The header deadline covers the first header only (defeats slowloris); restarts
    // after STARTTLS and SASL fall under the authentication deadline.
    if c2s.stream_id().is_empty() {
        consider(started + config.c2s_header_timeout, Some("no stream header within c2s_header_timeout"));
    }
    if c2s.unauthenticated() {
        consider(started + config.c2s_auth_timeout, Some("not authenticated within c2s_auth_timeout"));
    } else {
        // XEP-0199: a silent bound client is pinged; no answer in time ends it.
        match ping_sent {
            None => consider(last_read + config.c2s_ping_interval, None),
            Some(at) => {
                consider(at + config.c2s_ping_timeout, Some("no answer to the keepalive ping within c2s_ping_timeout"))
            }
        }
    }
    best
}
