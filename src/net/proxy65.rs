//! The SOCKS5 side of the XEP-0065 proxy (RFC 1928 as XEP-0065 §6.3.2 narrows
//! it): no authentication, CONNECT to a 40-character domain name (the
//! bytestream's hash), port 0. Each connection waits, holding only its socket,
//! for its pair's activation within `proxy65_idle_timeout`; then it relays what
//! it reads to the other, `CHUNK` bytes at a time, at most `proxy65_rate` bytes
//! per second. At most `proxy65_max_connections` connections are open at once;
//! past that a new one is closed at once.

use crate::server::Server;
use crate::services::proxy65::{Pair, Proxy65};
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::LocalExecutor;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes relayed at a time, each way.
const CHUNK: usize = 8 * 1024;

/// Accepts SOCKS5 connections until the server shuts down.
pub async fn accept(server: Rc<Server>, ex: Rc<LocalExecutor<'static>>, listener: Async<TcpListener>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            Timer::after(Duration::from_millis(20)).await;
            continue;
        };
        let Some(proxy) = server.proxy65.as_ref() else { return };
        if server.is_shutting_down() {
            return;
        }
        if proxy.open.get() >= proxy.config.max_connections {
            log::warn!("{peer}: proxy65 refused (proxy65_max_connections)");
            continue;
        }
        let _ = stream.get_ref().set_nodelay(true);
        proxy.open.set(proxy.open.get() + 1);
        let server = Rc::clone(&server);
        ex.spawn(async move {
            if let Some(proxy) = server.proxy65.as_ref() {
                let stream = Rc::new(stream);
                if let Err(e) = serve(&server, proxy, &stream).await {
                    log::debug!("{peer}: proxy65: {e}");
                }
                // The socket closes when the other direction is done with it too.
                proxy.open.set(proxy.open.get() - 1);
            }
        })
        .detach();
    }
}

/// Reads exactly `buf.len()` bytes before `deadline`.
async fn read_exact(stream: &Async<TcpStream>, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    futures_lite::future::or(async { (&*stream).read_exact(buf).await }, async {
        Timer::at(deadline).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "too slow"))
    })
    .await
}

/// One SOCKS5 connection: the handshake, the wait for activation, the relay.
async fn serve(server: &Server, proxy: &Proxy65, stream: &Rc<Async<TcpStream>>) -> std::io::Result<()> {
    let idle = proxy.config.idle_timeout;
    let deadline = Instant::now() + idle;
    let bad = |why: &'static str| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    // RFC 1928 §3: version 5 and the methods offered; "no authentication" is ours.
    let mut greeting = [0u8; 2];
    read_exact(stream, &mut greeting, deadline).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    read_exact(stream, &mut methods, deadline).await?;
    if greeting[0] != 5 || !methods.contains(&0) {
        let _ = (&**stream).write_all(&[5, 0xff]).await;
        return Err(bad("not SOCKS5 without authentication"));
    }
    (&**stream).write_all(&[5, 0]).await?;
    // §4: CONNECT, a domain name of 40 hex characters, port 0 (XEP-0065 §6.3.2).
    let mut request = [0u8; 5];
    read_exact(stream, &mut request, deadline).await?;
    let mut addr = vec![0u8; usize::from(request[4]) + 2];
    read_exact(stream, &mut addr, deadline).await?;
    addr.truncate(addr.len() - 2);
    let hex = String::from_utf8(addr).unwrap_or_default().to_ascii_lowercase();
    let well_formed = request[..4] == [5, 1, 0, 3] && hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let pair = if well_formed { proxy.join(&hex, Rc::clone(stream)) } else { None };
    let Some(pair) = pair else {
        // Reply 2: "connection not allowed by ruleset".
        let _ = (&**stream).write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return Err(bad("a malformed CONNECT, or a bytestream already paired"));
    };
    let mut reply = vec![5, 0, 0, 3, 40];
    reply.extend_from_slice(hex.as_bytes());
    reply.extend_from_slice(&[0, 0]);
    if let Err(e) = (&**stream).write_all(&reply).await {
        proxy.leave(&hex, &pair, stream);
        return Err(e);
    }
    // §6.3.3: the initiator activates it (or it times out, or the peer leaves).
    let activated = futures_lite::future::or(
        async {
            loop {
                if pair.activated.get() {
                    return true;
                }
                let listener = pair.wake.listen();
                if pair.activated.get() {
                    return true;
                }
                listener.await;
            }
        },
        async {
            let mut shutdown = server.shutdown.listen();
            futures_lite::future::or(
                async {
                    Timer::at(deadline).await;
                },
                async {
                    (&mut shutdown).await;
                },
            )
            .await;
            false
        },
    )
    .await;
    if !activated {
        proxy.leave(&hex, &pair, stream);
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "not activated in time"));
    }
    let other = pair.streams.borrow().iter().find(|s| !Rc::ptr_eq(s, stream)).cloned();
    let Some(other) = other else { return Ok(()) };
    relay(server, proxy, &pair, stream, &other).await
}

/// Copies what `from` sends to `to` until either ends or the pair is idle.
async fn relay(
    server: &Server,
    proxy: &Proxy65,
    pair: &Pair,
    from: &Async<TcpStream>,
    to: &Async<TcpStream>,
) -> std::io::Result<()> {
    let idle = proxy.config.idle_timeout;
    let rate = proxy.config.rate;
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        if server.is_shutting_down() {
            break;
        }
        let deadline = pair.last_activity.get() + idle;
        let read = futures_lite::future::or(async { Some((&*from).read(&mut buf).await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        let n = match read {
            // Quiet this way: idle only when quiet the other way too.
            None if pair.last_activity.get() + idle > Instant::now() => continue,
            None => break,
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        pair.last_activity.set(Instant::now());
        (&*to).write_all(&buf[..n]).await?;
        sent += n as u64;
        if rate > 0 {
            // Ahead of the rate: wait until the bytes sent are due.
            let due = started + Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if due > Instant::now() {
                Timer::at(due).await;
            }
        }
    }
    // The other way may still have data: end only ours.
    let _ = to.get_ref().shutdown(Shutdown::Write);
    Ok(())
}
