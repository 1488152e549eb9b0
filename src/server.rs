//! The server process: binds the listeners, runs the single-threaded executor, and
//! shuts down on SIGTERM/SIGINT (every open stream gets `system-shutdown`, then the
//! process exits 0 within `shutdown_timeout`).

use crate::config::Config;
use crate::jid::Domain;
use crate::session_pool::SessionPool;
use async_io::{Async, Timer};
use async_signal::{Signal, Signals};
use event_listener::Event;
use futures_lite::StreamExt;
use smol::LocalExecutor;
use std::cell::Cell;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// State shared by every task of the one server thread.
pub struct Server {
    pub config: Config,
    pub domain: Rc<Domain>,
    pub pool: Rc<SessionPool>,
    /// Notified once when shutdown begins.
    pub shutdown: Event,
    shutting_down: Cell<bool>,
    /// Refused connections being answered right now.
    pub refusing: Cell<usize>,
}

impl Server {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    DataDir(std::path::PathBuf, std::io::Error),
    Bind(SocketAddr, std::io::Error),
    NoListener,
    Signals(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::DataDir(p, e) => write!(f, "cannot create the data directory {}: {e}", p.display()),
            ServeError::Bind(a, e) => write!(f, "cannot listen on {a}: {e} (is another server using the port? set c2s_listen or --c2s-listen)"),
            ServeError::NoListener => write!(f, "no client listener could be opened"),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), ServeError> {
    create_data_dir(&config.data_dir)?;
    // Signals are set up before listening, so a signal right after start is not lost.
    let mut signals = Signals::new([Signal::Term, Signal::Int]).map_err(ServeError::Signals)?;
    let listeners = bind_all(&config)?;
    let server = Rc::new(Server {
        domain: Rc::new(config.domain.clone()),
        pool: SessionPool::new(config.max_sessions),
        config,
        shutdown: Event::new(),
        shutting_down: Cell::new(false),
        refusing: Cell::new(0),
    });
    log::info!(
        "wrenhub {} serving {} (max_sessions {}, data in {})",
        env!("CARGO_PKG_VERSION"),
        server.domain,
        server.pool.capacity(),
        server.config.data_dir.display()
    );
    let ex = Rc::new(LocalExecutor::new());
    let accepters: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            ex.spawn(crate::net::listener::accept_clients(
                Rc::clone(&server),
                Rc::clone(&ex),
                l,
            ))
        })
        .collect();
    futures_lite::future::block_on(ex.run(async {
        let signal = signals.next().await;
        log::info!("received {signal:?}, shutting down");
        server.shutting_down.set(true);
        drop(accepters);
        server.shutdown.notify(usize::MAX);
        let deadline = Instant::now() + server.config.shutdown_timeout;
        loop {
            let open = server.pool.in_use() + server.refusing.get();
            if open == 0 {
                break;
            }
            let waited = futures_lite::future::or(
                async {
                    Timer::after(Duration::from_millis(20)).await;
                    false
                },
                async {
                    // A second signal means: stop now.
                    signals.next().await;
                    true
                },
            )
            .await;
            if waited || Instant::now() >= deadline {
                log::warn!("{open} connection(s) still open at exit");
                break;
            }
        }
    }));
    log::info!("stopped");
    Ok(())
}

fn create_data_dir(dir: &std::path::Path) -> Result<(), ServeError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| ServeError::DataDir(dir.to_path_buf(), e))
}

fn bind_all(config: &Config) -> Result<Vec<Async<TcpListener>>, ServeError> {
    let mut listeners = Vec::new();
    for addr in &config.c2s_listen {
        match Async::<TcpListener>::bind(*addr) {
            Ok(l) => {
                let local = l.get_ref().local_addr().unwrap_or(*addr);
                log::info!("listening for clients on {local}");
                listeners.push(l);
            }
            // The built-in [::1] is skipped on a machine without IPv6.
            Err(e)
                if config.c2s_listen_is_default
                    && e.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                log::warn!("not listening on {addr}: {e}");
            }
            Err(e) => return Err(ServeError::Bind(*addr, e)),
        }
    }
    if listeners.is_empty() {
        return Err(ServeError::NoListener);
    }
    Ok(listeners)
}
