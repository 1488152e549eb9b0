//! The task of one external component connection (XEP-0114): read → framer →
//! [`ComponentStream`] → write, with the stanzas routed to the component, the
//! handshake deadline and shutdown.

use super::transport::{ReadOutcome, Transport};
use super::Idle;
use crate::server::Server;
use crate::session_pool::{Kind, SessionLease};
use crate::stream::component::{ComponentStream, Env, Input, Step};
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

fn env(server: &Server, peer: std::net::IpAddr) -> Env<'_> {
    Env {
        configured: &server.config.components,
        components: &server.components,
        router: server.router(),
        limiter: &server.limiter,
        peer,
    }
}

/// Serves one component connection until it closes.
pub async fn serve(server: Rc<Server>, mut transport: Transport, lease: SessionLease) {
    let config = &server.config;
    let peer = lease.peer();
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut framer = Framer::new(config.xml);
    framer.limit_until_authenticated(config.max_preauth_stanza_size);
    let mut stream = ComponentStream::default();
    let mut out = Vec::new();
    let mut backlogged = false;
    let started = Instant::now();
    let mut last_read = started;
    let mut ping_sent: Option<Instant> = None;
    let mut shutdown = server.shutdown.listen();
    let mut queue_listener: Option<EventListener> = None;
    loop {
        let mut step = Step::Continue;
        if let Some(error) = stream.link().and_then(|l| l.take_close_or_drain(&mut out)) {
            step = stream.handle(Input::Kill(error), &env(&server, peer_ip), &mut out);
        }
        let wake = if step == Step::Close {
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
            if let (None, Some(link)) = (&queue_listener, stream.link()) {
                match link.listen_if_idle() {
                    Some(listener) => queue_listener = Some(listener),
                    None => continue,
                }
            }
            // R5: an established component is pinned when quiet (XEP-0199), like a
            // client, instead of being dropped after c2s_idle_timeout.
            let (deadline, why) = match (stream.established(), ping_sent) {
                (false, _) => (started + config.c2s_auth_timeout, Some("no handshake within c2s_auth_timeout")),
                (true, None) => (last_read + config.c2s_ping_interval, None),
                (true, Some(at)) => {
                    (at + config.c2s_ping_timeout, Some("no answer to the keepalive ping within c2s_ping_timeout"))
                }
            };
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
                    Ok(ReadOutcome::Eof) => break,
                    Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Data) => {
                        last_read = Instant::now();
                        ping_sent = None;
                    }
                    Err(e) => {
                        log::debug!("component {peer:?}: read failed: {e}");
                        let _ = transport.write_all(&[], config.write_timeout).await;
                        break;
                    }
                }
                loop {
                    step = match framer.next_event() {
                        Ok(Some(event)) => stream.handle(Input::Xml(event), &env(&server, peer_ip), &mut out),
                        Ok(None) => break,
                        Err(e) => stream.handle(Input::XmlError(e), &env(&server, peer_ip), &mut out),
                    };
                    if stream.established() {
                        framer.authenticated();
                        let _ = lease.promote(Kind::Component);
                    }
                    if step == Step::Close {
                        break;
                    }
                    // S8: answers to one read wait at most `c2s_queue_size` bytes;
                    // the rest of the input is handled after they are written.
                    if out.len() >= config.c2s_queue_size {
                        backlogged = true;
                        break;
                    }
                }
            }
            Some(Wake::Deadline(why)) => step = stream.handle(Input::Timeout(why), &env(&server, peer_ip), &mut out),
            Some(Wake::Ping) => {
                if let Some(link) = stream.link() {
                    crate::xml::writer::XmlWriter::new(&mut out)
                        .start("iq")
                        .attr("type", "get")
                        .attr("id", "wrenhub-keepalive")
                        .attr("from", server.domain.as_str())
                        .attr("to", link.domain.as_str())
                        .open()
                        .empty_ns("ping", crate::ns::NS_PING)
                        .end("iq");
                }
                ping_sent = Some(Instant::now());
            }
            Some(Wake::Shutdown) => step = stream.handle(Input::Shutdown, &env(&server, peer_ip), &mut out),
            Some(Wake::Evicted) => {
                step = stream.handle(Input::Kill(super::evicted_error()), &env(&server, peer_ip), &mut out)
            }
        }
        if lease.evicted() {
            // One of a flood, most likely: no waiting on it.
            transport.abandon(&out);
            return;
        }
        if let Err(e) = transport.write_all(&out, config.write_timeout).await {
            log::debug!("component {peer:?}: write failed: {e}");
            break;
        }
        out.clear();
        if step == Step::Close {
            if let Some(link) = stream.take_link() {
                log::info!("component {} disconnected", link.domain);
                server.components.disconnect(&link);
            }
            drop(framer);
            transport.close(config.write_timeout).await;
            return;
        }
    }
    if let Some(link) = stream.take_link() {
        log::info!("component {} disconnected", link.domain);
        server.components.disconnect(&link);
    }
}
