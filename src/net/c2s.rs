//! The task of one client connection: read → framer → [`C2sStream`] → write, with
//! the header, authentication and idle deadlines and the shutdown signal.

use super::{close_gracefully, write_all_timeout, CLOSE_LINGER};
use crate::server::Server;
use crate::session_pool::SessionLease;
use crate::stream::c2s::{C2sStream, Input, Step};
use crate::xml::Framer;
use async_io::{Async, Timer};
use std::io::{self, Read};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Instant;

enum Wake {
    Readable,
    Deadline(&'static str),
    Shutdown,
}

/// Serves one client connection until it closes.
pub async fn serve(server: Rc<Server>, stream: Async<TcpStream>, lease: SessionLease) {
    let config = &server.config;
    let peer = lease.info().map(|i| i.peer);
    let mut framer = Framer::new(config.xml);
    let mut c2s = C2sStream::new(Rc::clone(&server.domain));
    let mut out = Vec::new();
    let started = Instant::now();
    let mut last_read = started;
    let mut shutdown = server.shutdown.listen();
    loop {
        let mut step = Step::Continue;
        let wake = if server.is_shutting_down() {
            Wake::Shutdown
        } else {
            // An idle connection keeps no input buffer while it waits.
            framer.trim();
            let (deadline, why) = deadline(&server, &c2s, started, last_read);
            futures_lite::future::or(
                futures_lite::future::or(
                    async {
                        // An error here shows up again on the read below.
                        let _ = stream.readable().await;
                        Wake::Readable
                    },
                    async {
                        Timer::at(deadline).await;
                        Wake::Deadline(why)
                    },
                ),
                async {
                    (&mut shutdown).await;
                    Wake::Shutdown
                },
            )
            .await
        };
        match wake {
            Wake::Readable => {
                match framer.fill_with(|buf| stream.get_ref().read(buf)) {
                    Ok(0) => {
                        log::debug!("{peer:?}: connection closed by the client");
                        return;
                    }
                    Ok(_) => last_read = Instant::now(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("{peer:?}: read failed: {e}");
                        return;
                    }
                }
                loop {
                    step = match framer.next_event() {
                        Ok(Some(event)) => c2s.handle(Input::Xml(event), &mut out),
                        Ok(None) => break,
                        Err(e) => c2s.handle(Input::XmlError(e), &mut out),
                    };
                    if step == Step::Close {
                        break;
                    }
                }
                lease.set_stream_id(c2s.stream_id());
            }
            Wake::Deadline(why) => step = c2s.handle(Input::Timeout(why), &mut out),
            Wake::Shutdown => step = c2s.handle(Input::Shutdown, &mut out),
        }
        if !out.is_empty() {
            if let Err(e) = write_all_timeout(&stream, &out, config.write_timeout).await {
                log::debug!("{peer:?}: write failed: {e}");
                return;
            }
            out.clear();
            if out.capacity() > 4096 {
                out = Vec::new();
            }
        }
        if step == Step::Close {
            drop(framer);
            close_gracefully(stream, CLOSE_LINGER).await;
            return;
        }
    }
}

/// The earliest deadline that applies now, with the text of its timeout error.
fn deadline(
    server: &Server,
    c2s: &C2sStream,
    started: Instant,
    last_read: Instant,
) -> (Instant, &'static str) {
    let config = &server.config;
    let mut best = (
        last_read + config.c2s_idle_timeout,
        "no data received within c2s_idle_timeout",
    );
    if c2s.phase() == crate::stream::c2s::Phase::AwaitingHeader {
        let header = started + config.c2s_header_timeout;
        if header < best.0 {
            best = (header, "no stream header within c2s_header_timeout");
        }
    }
    if c2s.unauthenticated() {
        let auth = started + config.c2s_auth_timeout;
        if auth < best.0 {
            best = (auth, "not authenticated within c2s_auth_timeout");
        }
    }
    best
}
