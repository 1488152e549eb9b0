//! The I/O shell: sockets, timers and signals around the sans-I/O protocol cores.
//! Everything runs on one `smol::LocalExecutor` thread; a connection is one task.

pub mod c2s;
pub mod component;
pub mod driver;
pub mod http;
pub mod listener;
pub mod proxy65;
pub mod s2s_in;
pub mod s2s_out;

use async_io::{Async, Timer};
use futures_lite::AsyncWriteExt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long a closing connection waits for the peer's `</stream:stream>` or EOF
/// after the server closed its side (RFC 6120 §4.4), reading and discarding.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What woke an idle connection task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// The socket has data.
    Readable,
    /// Its outbound queue has data or a close request.
    Queue,
    /// The deadline passed.
    Deadline,
    /// The server is shutting down.
    Shutdown,
    /// The pool gave the connection's slot to a newer one.
    Evicted,
}

/// Waits, holding no buffer, for the first of: input, the queue, the deadline,
/// shutdown, eviction from the pool. The one wait loop of every connection task.
pub async fn wait_idle(
    transport: &transport::Transport,
    read: bool,
    queue: &mut Option<event_listener::EventListener>,
    deadline: Instant,
    shutdown: &mut event_listener::EventListener,
    lease: Option<&crate::session_pool::SessionLease>,
) -> Idle {
    let queue = async {
        match queue.as_mut() {
            Some(l) => l.await,
            None => std::future::pending::<()>().await,
        }
        Idle::Queue
    };
    let readable = async {
        if !read {
            // Reading is paused (the read rate): the deadline resumes it.
            std::future::pending::<()>().await;
        }
        // An error here shows up again on the read that follows.
        let _ = transport.readable().await;
        Idle::Readable
    };
    let deadline = async {
        Timer::at(deadline).await;
        Idle::Deadline
    };
    let shutdown = async {
        shutdown.await;
        Idle::Shutdown
    };
    let evicted = async {
        match lease {
            Some(lease) => lease.wait_evicted().await,
            None => std::future::pending::<()>().await,
        }
        Idle::Evicted
    };
    let shutdown = futures_lite::future::or(shutdown, evicted);
    // The queue first: when a routed stanza and new input are both waiting, the
    // stanza goes out before the answers to the input, so an answer (a ping's) is
    // proof that everything routed to the connection earlier was written.
    futures_lite::future::or(futures_lite::future::or(queue, readable), futures_lite::future::or(deadline, shutdown))
        .await
}

/// The stream error of a connection that gave way to a newer one (the pool's
/// unauthenticated share was full, REVIEW S4).
pub fn evicted_error() -> crate::stream::StreamError {
    crate::stream::StreamError::with_text(
        crate::stream::StreamCondition::ResourceConstraint,
        "too many unauthenticated connections: the oldest gives way to a newer one",
    )
}

/// Writes all of `out` or fails after `timeout` without progress.
pub async fn write_all_timeout(stream: &Async<TcpStream>, out: &[u8], timeout: Duration) -> io::Result<()> {
    let mut rest = out;
    while !rest.is_empty() {
        let written = futures_lite::future::or(
            async { stream.write_with(|s| io::Write::write(&mut &*s, rest)).await.map(Some) },
            async {
                Timer::after(timeout).await;
                Ok(None)
            },
        )
        .await?;
        match written {
            None => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(n) => rest = &rest[n..],
        }
    }
    Ok(())
}

/// Closes a connection cleanly: our side first, then read and discard whatever the
/// peer still sends until it closes or the linger time ends. Closing a socket with
/// unread input makes the kernel send RST, which can destroy the error we just wrote
/// before the peer reads it.
pub async fn close_gracefully(mut stream: Async<TcpStream>, linger: Duration) {
    let _ = stream.flush().await;
    let _ = stream.get_ref().shutdown(Shutdown::Write);
    let deadline = Instant::now() + linger;
    let mut sink = [0u8; 512];
    loop {
        let read = futures_lite::future::or(
            async { Some(stream.read_with(|s| io::Read::read(&mut &*s, &mut sink)).await) },
            async {
                Timer::at(deadline).await;
                None
            },
        )
        .await;
        match read {
            Some(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
}
pub mod transport;
pub mod websocket;
