//! The server process: opens the store and TLS, binds the listeners, runs the
//! single-threaded executor, reloads certificates on SIGHUP, and shuts down on
//! SIGTERM/SIGINT (every open stream gets `system-shutdown`, then the process exits
//! 0 within `shutdown_timeout`).

use crate::auth_limiter::AuthLimiter;
use crate::config::{Config, MucConfig};
use crate::jid::Domain;
use crate::session_pool::SessionPool;
use crate::sessions::Registry;
use crate::store::Store;
use crate::stream::c2s::Policy;
use crate::tls::TlsSetup;
use async_io::{Async, Timer};
use async_signal::{Signal, Signals};
use event_listener::Event;
use futures_lite::StreamExt;
use rustls::ServerConfig;
use smol::LocalExecutor;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State shared by every task of the one server thread.
pub struct Server {
    pub config: Config,
    pub domain: Rc<Domain>,
    pub policy: Policy,
    pub pool: Rc<SessionPool>,
    pub store: Arc<Store>,
    pub registry: Registry,
    pub components: crate::components::ComponentRegistry,
    /// Federation (`federation = true`).
    pub s2s: Option<crate::s2s::S2s>,
    /// Group chat (XEP-0045) at `muc_domain`.
    pub muc: Option<crate::services::muc::Muc>,
    /// The user directory (XEP-0055) at `directory_domain`.
    pub directory: Option<crate::services::directory::Directory>,
    pub pep: crate::services::pep::Pep,
    /// The message archive (XEP-0313), unless `archive = false`.
    pub mam: Option<crate::services::mam::Mam>,
    /// The SOCKS5 bytestreams proxy (XEP-0065) at `proxy65_domain`.
    pub proxy65: Option<crate::services::proxy65::Proxy65>,
    /// HTTP file upload (XEP-0363) at `upload_domain`.
    pub upload: Option<crate::services::upload::Upload>,
    /// Where clients reach the HTTPS listener (`https://host:port`).
    pub http_url: String,
    /// The local CA's SHA-256 fingerprint, for the `/` page (none with `tls_cert`).
    pub ca_fingerprint: Option<String>,
    pub limiter: AuthLimiter,
    /// Connection buffers in all (`max_buffer_memory`).
    pub buffers: crate::budget::MemoryBudget,
    /// Password checks (PBKDF2) running at once: one per core.
    pub password_checks: crate::auth_limiter::CheckPermits,
    /// The secret behind fake SCRAM salts for unknown users.
    pub secret: Vec<u8>,
    tls: RefCell<Rc<TlsSetup>>,
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

    /// What the protocol cores use, borrowed from the server.
    pub fn hub(&self) -> crate::hub::Hub<'_> {
        crate::hub::Hub {
            domain: &self.domain,
            store: &self.store,
            registry: &self.registry,
            limits: self.policy.im,
            components: &self.components,
            configured_components: &self.config.components,
            s2s: self.s2s.as_ref(),
            muc: self.muc.as_ref(),
            directory: self.directory.as_ref(),
            pep: &self.pep,
            mam: self.mam.as_ref(),
            upload: self.upload.as_ref(),
            proxy65: self.proxy65.as_ref(),
            external: &self.config.external_services,
        }
    }

    /// The TLS configuration for new connections (STARTTLS or Direct TLS).
    pub fn tls_config(&self, direct: bool) -> Arc<ServerConfig> {
        let tls = self.tls.borrow();
        Arc::clone(if direct { &tls.direct } else { &tls.starttls })
    }

    /// The TLS configuration for inbound s2s (asks for the peer's certificate).
    pub fn s2s_server_config(&self, direct: bool) -> Arc<ServerConfig> {
        let tls = self.tls.borrow();
        Arc::clone(if direct { &tls.s2s_direct } else { &tls.s2s_starttls })
    }

    /// The TLS configuration for outbound s2s (presents our certificate).
    pub fn s2s_client_config(&self, direct: bool) -> Arc<rustls::ClientConfig> {
        let tls = self.tls.borrow();
        Arc::clone(if direct { &tls.s2s_client_direct } else { &tls.s2s_client })
    }

    /// The current TLS setup: a connection keeps the one its handshake used, so a
    /// SIGHUP reload cannot change the certificate its channel binding hashes.
    pub fn tls_setup(&self) -> Rc<crate::tls::TlsSetup> {
        Rc::clone(&self.tls.borrow())
    }

    /// SIGHUP: loads the certificate again; sessions keep their connections.
    fn reload_tls(&self) {
        match crate::tls::load(&self.config) {
            Ok(setup) => {
                for line in crate::tls::describe("server certificate", &setup.cert_path) {
                    log::info!("reloaded {line}");
                }
                *self.tls.borrow_mut() = Rc::new(setup);
            }
            Err(e) => log::error!("certificate reload failed, keeping the old one: {e}"),
        }
    }
}

/// The store writer (S9): on a blocking thread, commits the offline messages
/// queued since its last batch in one durable transaction, which also persists
/// every effect committed without fsync meanwhile; then tells refused senders.
async fn run_store_writer(server: Rc<Server>) {
    loop {
        if let Some(listener) = server.store.listen_write_queue() {
            listener.await;
        }
        let store = Arc::clone(&server.store);
        let done = blocking::unblock(move || store.commit_queue()).await;
        log::debug!("store writer: {} offline message(s) committed, {} refused", done.stored, done.refused.len());
        for refusal in done.refused {
            deliver_refusal(&server, refusal);
        }
    }
}

/// How often the archives are looked over (retention of archives that receive
/// nothing, the bound on all of them together), and removals per pass.
const ARCHIVE_MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
const ARCHIVE_MAINTENANCE_BUDGET: usize = 2000;

/// The archive's background job: at start, then every minute, on a blocking
/// thread; a pass that stopped at its budget is followed by another at once.
async fn run_archive_maintenance(server: Rc<Server>) {
    loop {
        let store = Arc::clone(&server.store);
        let now = crate::clock::now_unix().saturating_mul(1_000_000);
        let pass = blocking::unblock(move || store.archive_maintenance(now, ARCHIVE_MAINTENANCE_BUDGET)).await;
        match pass {
            Ok(done) if done.removed > 0 => {
                log::info!("archives: {} old message(s) removed, {} bytes kept", done.removed, done.total_bytes);
                if done.more {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => log::error!("archive maintenance: {e}"),
        }
        Timer::after(ARCHIVE_MAINTENANCE_EVERY).await;
    }
}

/// How often uploaded files past `upload_days` are looked for.
const UPLOAD_EXPIRY_EVERY: Duration = Duration::from_secs(3600);

/// The upload service's background job: at start, then hourly, on a blocking
/// thread, removes the files past `upload_days` and gives their room back.
async fn run_upload_expiry(server: Rc<Server>) {
    let Some(upload) = server.upload.as_ref() else { return };
    let keep = upload.config.keep_secs;
    if keep == 0 {
        return;
    }
    loop {
        let dir = upload.dir.clone();
        let before = crate::clock::now_unix().saturating_sub(keep);
        match blocking::unblock(move || dir.remove_where(|m| m.created < before)).await {
            Ok(removed) => {
                for meta in &removed {
                    upload.release(&meta.owner, meta.size);
                }
                if !removed.is_empty() {
                    log::info!("uploads: {} file(s) past upload_days removed", removed.len());
                }
            }
            Err(e) => log::error!("upload expiry: {e}"),
        }
        Timer::after(UPLOAD_EXPIRY_EVERY).await;
    }
}

/// Where clients reach the HTTPS listener: `http_url`, else the domain and the
/// port the first HTTPS (or plain HTTP) listener has.
fn http_url(config: &Config, listeners: &[(ListenerKind, Async<TcpListener>)]) -> String {
    if let Some(url) = &config.http.url {
        return url.clone();
    }
    let port = |kind| {
        listeners.iter().find(|(k, _)| *k == kind).and_then(|(_, l)| l.get_ref().local_addr().ok()).map(|a| a.port())
    };
    match (port(ListenerKind::Https), port(ListenerKind::HttpPlain)) {
        (Some(p), _) => format!("https://{}:{p}", config.domain),
        (None, Some(p)) => format!("http://{}:{p}", config.domain),
        (None, None) => format!("https://{}", config.domain),
    }
}

/// An offline message the quota refused: its sender hears of it.
fn deliver_refusal(server: &Server, refusal: crate::store::writer::Refusal) {
    use crate::store::writer::Refusal;
    match refusal {
        // Written by the stream that waited for it.
        Refusal::Out(_) => {}
        Refusal::To(jid, bytes) => server.hub().send_bytes_to(&jid, bytes),
        Refusal::Remote(domain, bytes) => {
            if let Some(s2s) = server.s2s.as_ref() {
                let _ = s2s.send(&domain, bytes, None);
            }
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    DataDir(std::path::PathBuf, std::io::Error),
    Store(crate::store::StoreError),
    Tls(crate::tls::TlsError),
    Bind(SocketAddr, std::io::Error),
    NoListener,
    Signals(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::DataDir(p, e) => write!(f, "cannot create the data directory {}: {e}", p.display()),
            ServeError::Store(crate::store::StoreError::InUse(p)) => {
                write!(f, "{} is in use: is another wrenhub running with this data directory?", p.display())
            }
            ServeError::Store(e) => write!(f, "cannot open the store: {e}"),
            ServeError::Tls(e) => write!(f, "TLS: {e}"),
            ServeError::Bind(a, e) => write!(
                f,
                "cannot listen on {a}: {e} (is another server using the port? set c2s_listen or --c2s-listen)"
            ),
            ServeError::NoListener => write!(f, "no client listener could be opened"),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// How a listener's connections start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 5222: plaintext, STARTTLS offered.
    Client,
    /// Port 5223: TLS from the first byte (XEP-0368).
    ClientDirectTls,
    /// Port 5347: external components (XEP-0114).
    Component,
    /// External components over Direct TLS.
    ComponentDirectTls,
    /// Port 5269: peer servers, STARTTLS.
    Server,
    /// Peer servers with Direct TLS (XEP-0368, ALPN `xmpp-server`).
    ServerDirectTls,
    /// Port 5443: HTTPS (upload, WebSocket, pages).
    Https,
    /// Plain HTTP, behind a reverse proxy.
    HttpPlain,
}

impl ListenerKind {
    /// TLS from the first byte.
    pub fn direct_tls(self) -> bool {
        matches!(
            self,
            ListenerKind::ClientDirectTls
                | ListenerKind::ComponentDirectTls
                | ListenerKind::ServerDirectTls
                | ListenerKind::Https
        )
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(mut config: Config) -> Result<(), ServeError> {
    crate::clock::mark_started();
    crate::os::private_umask();
    crate::random::check().map_err(|e| ServeError::DataDir(config.data_dir.clone(), std::io::Error::other(e)))?;
    if let Some(fit) = crate::os::raise_fd_limit() {
        if (config.max_sessions as u64) > fit {
            log::warn!(
                "max_sessions {} is more than the open-file limit allows; the pool is cut to {fit} (raise LimitNOFILE)",
                config.max_sessions
            );
            config.max_sessions = fit.max(1) as usize;
        }
    }
    create_data_dir(&config.data_dir)?;
    // Signals are set up before listening, so a signal right after start is not lost.
    let mut signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup]).map_err(ServeError::Signals)?;
    let store = Store::open(&config.data_dir).map_err(ServeError::Store)?;
    crate::os::make_private(&config.data_dir, &crate::store::Store::file(&config.data_dir))
        .map_err(|e| ServeError::DataDir(config.data_dir.clone(), e))?;
    store.set_max_roster_items(config.max_roster_items);
    store.set_archive_limits(config.archive_limits);
    let secret = store.secret("scram-fake-salt").map_err(ServeError::Store)?;
    // Archive ids continue above the newest one stored.
    let newest_archived = store.newest_archive_id().map_err(ServeError::Store)?;
    let archive_prefs = config.archive.then(|| crate::services::mam::AllPrefs::load(&store));
    let s2s = if config.federation {
        let trust = crate::tls::peer::PeerTrust::load(
            config.s2s_ca_file.as_deref(),
            config.s2s_system_roots,
            &config.s2s_peers,
            config.s2s_secure_auth,
        )
        .map_err(ServeError::Tls)?;
        log::info!(
            "federation on: {} trusted root(s), {} pinned peer(s), {} static route(s), dialback {}",
            trust.roots,
            config.s2s_peers.len(),
            config.s2s_routes.len(),
            if config.s2s_dialback { "on" } else { "off" }
        );
        let dialback_secret = store.secret("dialback").map_err(ServeError::Store)?;
        Some(crate::s2s::S2s::new(
            config.domain.clone(),
            config.max_s2s_links,
            config.s2s_queue_size,
            dialback_secret,
            trust,
        ))
    } else {
        None
    };
    let tls = crate::tls::load(&config).map_err(ServeError::Tls)?;
    if config.tls_cert.is_none() {
        let ca = crate::tls::local_ca::LocalCa::in_data_dir(&config.data_dir);
        for line in crate::tls::describe("local CA", &ca.ca_cert) {
            log::info!("{line}");
        }
    }
    for line in crate::tls::describe("server certificate", &tls.cert_path) {
        log::info!("{line}");
    }
    // The control socket exists before any listener is announced, so whoever waits
    // for "listening" can manage accounts right away.
    let control_socket = control_listener(&config.data_dir);
    let listeners = bind_all(&config)?;
    let http_url = http_url(&config, &listeners);
    let (proxy65, proxy65_listeners) = match &config.proxy65 {
        Some(proxy) => {
            let mut bound = Vec::new();
            for addr in &proxy.listen {
                let l = Async::<TcpListener>::bind(*addr).map_err(|e| ServeError::Bind(*addr, e))?;
                log::info!(
                    "listening for file transfers (XEP-0065 proxy) on {}",
                    l.get_ref().local_addr().unwrap_or(*addr)
                );
                bound.push(l);
            }
            let local = bound.first().and_then(|l| l.get_ref().local_addr().ok());
            let host = match (proxy.host.as_str(), local) {
                ("", Some(a)) if !a.ip().is_unspecified() => a.ip().to_string(),
                ("", _) => config.domain.to_string(),
                (h, _) => h.to_string(),
            };
            let port = local.map_or(7777, |a| a.port());
            (Some(crate::services::proxy65::Proxy65::new(proxy.clone(), host, port)), bound)
        }
        None => (None, Vec::new()),
    };
    let upload = match &config.upload {
        Some(upload) => {
            let dir = crate::store::uploads::UploadDir::in_data_dir(&config.data_dir);
            let files = dir.scan().map_err(|e| ServeError::DataDir(config.data_dir.join("uploads"), e))?;
            let upload_secret = store.secret("upload").map_err(ServeError::Store)?;
            log::info!("file upload at {} ({} file(s) stored)", upload.domain, files.len());
            Some(crate::services::upload::Upload::new(upload.clone(), &upload_secret, http_url.clone(), dir, &files))
        }
        None => None,
    };
    let ca_fingerprint = config
        .tls_cert
        .is_none()
        .then(|| std::fs::read(crate::tls::local_ca::LocalCa::in_data_dir(&config.data_dir).ca_cert).ok())
        .flatten()
        .and_then(|pem| crate::tls::first_cert_der(&pem))
        .map(|der| crate::tls::der::fingerprint(&der));
    let domain = Rc::new(config.domain.clone());
    let server = Rc::new(Server {
        policy: Policy {
            domain: Rc::clone(&domain),
            require_encryption: config.c2s_require_encryption,
            sasl_plain: config.c2s_sasl_plain,
            max_auth_attempts: config.c2s_max_auth_attempts,
            sm_resume_timeout: config.sm_resume_timeout.as_secs().min(u64::from(u32::MAX)) as u32,
            fast_token_lifetime: config.fast_token_lifetime.as_secs(),
            fast_clients_per_account: config.fast_clients_per_account,
            im: crate::handlers::ImLimits {
                max_roster_items: config.max_roster_items,
                offline: crate::store::offline::OfflineQuota {
                    per_account: config.max_offline_per_account,
                    total: config.max_offline_total,
                    bytes_per_account: config.max_offline_bytes_per_account,
                    bytes_total: config.max_offline_bytes_total,
                },
                offline_batch_bytes: config.c2s_queue_size / 2,
                max_private_items: config.max_private_items,
                pep: config.pep,
            },
            caps_ver: Rc::from(crate::handlers::disco::server_caps_ver()),
        },
        domain,
        pool: SessionPool::with_shares(crate::session_pool::Shares {
            capacity: config.max_sessions,
            max_unauthenticated: config.max_unauthenticated,
            max_unauthenticated_per_ip: config.max_unauthenticated_per_ip,
            max_s2s_in: config.max_s2s_in,
            max_http: config.http.max_connections,
        }),
        store: Arc::new(store),
        registry: Registry::new(config.max_resources_per_account, config.resource_conflict, config.c2s_queue_size),
        components: crate::components::ComponentRegistry::new(config.component_conflict, config.c2s_queue_size),
        s2s,
        muc: config.muc.clone().map(|muc| crate::services::muc::Muc::new(MucConfig { archive: config.archive, ..muc })),
        directory: config.directory.clone().map(crate::services::directory::Directory::new),
        pep: crate::services::pep::Pep::new(config.pep_caps_cache, config.pep_remote_resources),
        mam: archive_prefs.map(|prefs| crate::services::mam::Mam::new(newest_archived, config.mam, prefs)),
        upload,
        proxy65,
        http_url,
        ca_fingerprint,
        limiter: AuthLimiter::with_account_limit(config.auth_failures_per_ip, config.auth_failures_per_account),
        buffers: crate::budget::MemoryBudget::new(config.max_buffer_memory),
        password_checks: crate::auth_limiter::CheckPermits::new(
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        ),
        secret,
        tls: RefCell::new(Rc::new(tls)),
        config,
        shutdown: Event::new(),
        shutting_down: Cell::new(false),
        refusing: Cell::new(0),
    });
    if let Some(muc) = &server.muc {
        muc.load(&server.store);
    }
    log::info!(
        "wrenhub {} serving {} (max_sessions {}, data in {})",
        env!("CARGO_PKG_VERSION"),
        server.domain,
        server.pool.capacity(),
        server.config.data_dir.display()
    );
    let ex = Rc::new(LocalExecutor::new());
    let control = match control_socket {
        Ok(l) => Some(ex.spawn(serve_control(Rc::clone(&server), Rc::clone(&ex), l))),
        Err(e) => {
            log::warn!("no control socket ({e}): 'wrenhub user' commands cannot reach this server");
            None
        }
    };
    let accepters: Vec<_> = listeners
        .into_iter()
        .map(|(kind, l)| ex.spawn(crate::net::listener::accept_clients(Rc::clone(&server), Rc::clone(&ex), l, kind)))
        .collect();
    let proxies: Vec<_> = proxy65_listeners
        .into_iter()
        .map(|l| ex.spawn(crate::net::proxy65::accept(Rc::clone(&server), Rc::clone(&ex), l)))
        .collect();
    let spawner = server.s2s.is_some().then(|| ex.spawn(spawn_links(Rc::clone(&server), Rc::clone(&ex))));
    server.store.start_writer();
    let writer = ex.spawn(run_store_writer(Rc::clone(&server)));
    let _maintenance = server.mam.is_some().then(|| ex.spawn(run_archive_maintenance(Rc::clone(&server))));
    let _expiry = server.upload.is_some().then(|| ex.spawn(run_upload_expiry(Rc::clone(&server))));
    futures_lite::future::block_on(ex.run(async {
        let signal = loop {
            match signals.next().await {
                Some(Ok(Signal::Hup)) => server.reload_tls(),
                other => break other,
            }
        };
        let name = match signal {
            Some(Ok(Signal::Term)) => "SIGTERM",
            Some(Ok(Signal::Int)) => "SIGINT",
            _ => "a stop signal",
        };
        log::info!("received {name}, shutting down");
        if let Some(muc) = &server.muc {
            muc.shutdown(&server.hub());
        }
        server.shutting_down.set(true);
        drop(accepters);
        drop(proxies);
        drop(control);
        drop(spawner);
        let _ = std::fs::remove_file(crate::control::socket_path(&server.config.data_dir));
        server.shutdown.notify(usize::MAX);
        let deadline = Instant::now() + server.config.shutdown_timeout;
        loop {
            let open = server.pool.in_use() + server.refusing.get();
            if open == 0 {
                break;
            }
            let stop_now = futures_lite::future::or(
                async {
                    Timer::after(Duration::from_millis(20)).await;
                    false
                },
                async {
                    // A second SIGTERM/SIGINT means: stop now.
                    loop {
                        if !matches!(signals.next().await, Some(Ok(Signal::Hup))) {
                            return true;
                        }
                    }
                },
            )
            .await;
            if stop_now || Instant::now() >= deadline {
                log::warn!("{open} connection(s) still open at exit");
                break;
            }
        }
    }));
    drop(writer);
    // Whatever was queued last is committed before the process ends.
    let done = server.store.commit_queue();
    if done.stored > 0 {
        log::info!("{} queued offline message(s) committed at exit", done.stored);
    }
    log::info!("stopped");
    Ok(())
}

/// Starts a connection task for every new outbound s2s link.
async fn spawn_links(server: Rc<Server>, ex: Rc<LocalExecutor<'static>>) {
    let Some(s2s) = server.s2s.as_ref() else { return };
    loop {
        if let Some(listener) = s2s.listen_for_new_links() {
            listener.await;
        }
        for link in s2s.take_new_links() {
            ex.spawn(crate::net::s2s_out::run(Rc::clone(&server), link)).detach();
        }
    }
}

/// Binds the control socket (owner only).
fn control_listener(data_dir: &std::path::Path) -> std::io::Result<Async<std::os::unix::net::UnixListener>> {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::control::socket_path(data_dir);
    // A socket left by a killed server: nobody answers on it any more.
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    let listener = Async::<std::os::unix::net::UnixListener>::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers `wrenhub user …` requests; store writes run off the event loop.
async fn serve_control(
    server: Rc<Server>,
    ex: Rc<LocalExecutor<'static>>,
    listener: Async<std::os::unix::net::UnixListener>,
) {
    use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let server = Rc::clone(&server);
        ex.spawn(async move {
            let mut line = String::new();
            let mut reader = futures_lite::io::BufReader::new(&stream).take(8192);
            let read = futures_lite::future::or(async { reader.read_line(&mut line).await.is_ok() }, async {
                Timer::after(Duration::from_secs(10)).await;
                false
            })
            .await;
            if !read {
                return;
            }
            let answer = match crate::control::read_request(&line) {
                Err(e) => Err(e),
                Ok(request) => {
                    let deleted = match &request {
                        crate::control::Request::Del(j) | crate::control::Request::SetDisabled(j, true) => {
                            Some(j.clone())
                        }
                        _ => None,
                    };
                    // R3: contacts learn that a deleted account is gone: its sessions
                    // go unavailable while its roster still says who to tell.
                    let contacts = match &request {
                        crate::control::Request::Del(j) => {
                            for s in server.registry.sessions(j) {
                                crate::handlers::presence::session_ended(&server.hub(), &s);
                            }
                            server.store.roster_items(j).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    let removed = matches!(request, crate::control::Request::Del(_));
                    let store = Arc::clone(&server.store);
                    let result = blocking::unblock(move || request.apply(&store)).await;
                    if let (Ok(_), Some(jid), true, Some(mam)) = (&result, &deleted, removed, &server.mam) {
                        mam.prefs.forget(jid);
                    }
                    if let (Ok(_), Some(jid), true, Some(upload)) = (&result, &deleted, removed, &server.upload) {
                        // A deleted account's files go with it.
                        let (dir, owner) = (upload.dir.clone(), jid.to_string());
                        match blocking::unblock(move || dir.remove_where(|m| m.owner == owner)).await {
                            Ok(files) => {
                                for meta in &files {
                                    upload.release(&meta.owner, meta.size);
                                }
                                log::info!("account {jid}: {} uploaded file(s) removed", files.len());
                            }
                            Err(e) => log::error!("account {jid}: its uploads could not be removed: {e}"),
                        }
                    }
                    if let (Ok(_), Some(jid)) = (&result, &deleted) {
                        crate::handlers::presence::account_deleted(&server.hub(), jid, &contacts);
                    }
                    if let (Ok(_), Some(jid)) = (&result, deleted) {
                        let ended = server.registry.close_account(
                            &jid,
                            crate::stream::StreamError::with_text(
                                crate::stream::StreamCondition::NotAuthorized,
                                "the account was deleted or disabled",
                            ),
                        );
                        log::info!("account {jid} deleted or disabled, {ended} session(s) ended");
                    }
                    result
                }
            };
            let text = match answer {
                Ok(t) => format!("OK {t}\n"),
                Err(e) => format!("ERR {e}\n"),
            };
            let _ = (&stream).write_all(text.as_bytes()).await;
        })
        .detach();
    }
}

fn create_data_dir(dir: &std::path::Path) -> Result<(), ServeError> {
    crate::store::create_private_dir(dir).map_err(|e| ServeError::DataDir(dir.to_path_buf(), e))
}

fn bind_all(config: &Config) -> Result<Vec<(ListenerKind, Async<TcpListener>)>, ServeError> {
    let mut listeners = Vec::new();
    let groups = [
        (ListenerKind::Client, &config.c2s_listen, config.c2s_listen_is_default, "clients"),
        (
            ListenerKind::ClientDirectTls,
            &config.c2s_direct_tls_listen,
            config.c2s_direct_tls_listen_is_default,
            "clients with Direct TLS",
        ),
        (ListenerKind::Component, &config.component_listen, true, "components"),
        (ListenerKind::ComponentDirectTls, &config.component_tls_listen, false, "components with Direct TLS"),
        (ListenerKind::Server, &config.s2s_listen, false, "servers"),
        (ListenerKind::ServerDirectTls, &config.s2s_direct_tls_listen, false, "servers with Direct TLS"),
        (ListenerKind::Https, &config.http.listen, config.http.listen_is_default, "HTTPS"),
        (ListenerKind::HttpPlain, &config.http.plain_listen, false, "plain HTTP"),
    ];
    // Component listeners open only when components are configured.
    // Component listeners open only when components are configured, s2s
    // listeners only with federation.
    let groups = groups.into_iter().filter(|g| match g.0 {
        ListenerKind::Component | ListenerKind::ComponentDirectTls => !config.components.is_empty(),
        ListenerKind::Server | ListenerKind::ServerDirectTls => config.federation,
        ListenerKind::Client | ListenerKind::ClientDirectTls | ListenerKind::Https | ListenerKind::HttpPlain => true,
    });
    for (kind, addrs, is_default, what) in groups {
        for addr in addrs {
            match Async::<TcpListener>::bind(*addr) {
                Ok(l) => {
                    let local = l.get_ref().local_addr().unwrap_or(*addr);
                    log::info!("listening for {what} on {local}");
                    listeners.push((kind, l));
                }
                // The built-in [::1] is skipped on a machine without IPv6.
                Err(e) if is_default && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    log::warn!("not listening on {addr}: {e}");
                }
                Err(e) => return Err(ServeError::Bind(*addr, e)),
            }
        }
    }
    if !listeners.iter().any(|(k, _)| *k == ListenerKind::Client) {
        return Err(ServeError::NoListener);
    }
    Ok(listeners)
}
