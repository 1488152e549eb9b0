//! Accepting connections: `TCP_NODELAY` on every socket, a session slot for each
//! connection, or — when the pool is full — the stream error `resource-constraint`
//! written by a small bounded task that allocates no session.

use super::transport::Transport;
use super::{close_gracefully, write_all_timeout};
use crate::server::{ListenerKind, Server};
use crate::stream::c2s::C2sStream;
use crate::stream::{StreamCondition, StreamError};
use async_io::{Async, Timer};
use smol::LocalExecutor;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

/// At most this many refused connections are being answered at once; beyond that
/// a refused connection is closed without an answer.
const MAX_REFUSING: usize = 16;

/// How long a refused connection may take to receive its error.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts client connections until the server shuts down.
pub async fn accept_clients(
    server: Rc<Server>,
    ex: Rc<LocalExecutor<'static>>,
    listener: Async<TcpListener>,
    kind: ListenerKind,
) {
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (connections
                // that gave way are closing meanwhile), and say so once a second.
                let now = std::time::Instant::now();
                if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                    log::warn!("accept failed: {e}");
                    last_warning = Some(now);
                }
                Timer::after(Duration::from_millis(20)).await;
                continue;
            }
        };
        if server.is_shutting_down() {
            return;
        }
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("{peer}: TCP_NODELAY failed: {e}");
        }
        if server.buffers.exceeded() {
            // S1: the buffers of the connections there are take the memory share.
            refuse(&server, &ex, stream, peer, kind, "the server's buffer memory is in use (max_buffer_memory)");
            continue;
        }
        match server.pool.try_acquire(peer) {
            Some(lease) => {
                log::debug!("{peer}: connected (slot {})", lease.index());
                let direct = kind.direct_tls();
                let config = match kind {
                    ListenerKind::ServerDirectTls => server.s2s_server_config(true),
                    ListenerKind::Https => server.tls_setup().http.clone(),
                    _ => server.tls_config(kind == ListenerKind::ClientDirectTls),
                };
                let transport = if direct {
                    match Transport::direct_tls(stream, config) {
                        Ok(t) => t,
                        Err(e) => {
                            log::warn!("{peer}: cannot start TLS: {e}");
                            continue;
                        }
                    }
                } else {
                    Transport::plain(stream)
                };
                match kind {
                    ListenerKind::Client | ListenerKind::ClientDirectTls => {
                        ex.spawn(super::c2s::serve(Rc::clone(&server), transport, lease)).detach()
                    }
                    ListenerKind::Component | ListenerKind::ComponentDirectTls => {
                        ex.spawn(super::component::serve(Rc::clone(&server), transport, lease)).detach()
                    }
                    ListenerKind::Server | ListenerKind::ServerDirectTls => {
                        ex.spawn(super::s2s_in::serve(Rc::clone(&server), transport, lease)).detach()
                    }
                    ListenerKind::Https | ListenerKind::HttpPlain => {
                        ex.spawn(super::http::serve(Rc::clone(&server), transport, lease)).detach()
                    }
                }
            }
            None => refuse(&server, &ex, stream, peer, kind, "the server is serving its maximum number of sessions"),
        }
    }
}

/// The pool is full: answer with a header and `resource-constraint` (RFC 6120
/// §4.9.3.17), without reading the client's header and without a session slot.
fn refuse(
    server: &Rc<Server>,
    ex: &LocalExecutor<'static>,
    stream: Async<TcpStream>,
    peer: std::net::SocketAddr,
    kind: ListenerKind,
    why: &'static str,
) {
    // A Direct TLS peer expects a handshake first: an answer would cost a TLS
    // session, which is exactly what the pool has no room for.
    // An HTTP client is not sent an XMPP error either.
    if server.refusing.get() >= MAX_REFUSING || kind.direct_tls() || kind == ListenerKind::HttpPlain {
        log::warn!("{peer}: refused ({why}), closed");
        return;
    }
    log::warn!("{peer}: refused ({why})");
    server.refusing.set(server.refusing.get() + 1);
    let mut out = Vec::with_capacity(400);
    let error = StreamError::with_text(StreamCondition::ResourceConstraint, why);
    if kind == ListenerKind::Component {
        crate::stream::component::ComponentStream::default().fail(error, &mut out);
    } else if kind == ListenerKind::Server {
        crate::stream::s2s_in::S2sInStream::new(false).fail(error, &mut out);
    } else {
        C2sStream::new(server.policy.clone(), false).fail(error, &mut out);
    }
    let server = Rc::clone(server);
    ex.spawn(async move {
        if write_all_timeout(&stream, &out, REFUSE_TIMEOUT).await.is_ok() {
            close_gracefully(stream, REFUSE_TIMEOUT).await;
        }
        server.refusing.set(server.refusing.get() - 1);
    })
    .detach();
}
