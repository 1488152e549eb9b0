//! wrenhub-loadgen: the load generator of the benchmarks (`benches/run`). Many
//! client sessions on one thread, each a real login (STARTTLS, SCRAM-SHA-1, bind)
//! over wrenhub's own transport and XML framer, against any XMPP server:
//!
//! - `sessions`: logs in N sessions and keeps them open until stdin closes;
//! - `logins`: M complete logins, C at a time, and the rate;
//! - `messages`: K sender/receiver pairs exchange chat messages for D seconds;
//!   delivered messages per second and the latency percentiles;
//! - `reconnects`: clients that drop their connection and come back, by a full
//!   login, a XEP-0198 resumption inside SASL2, or a XEP-0484 FAST login;
//! - `room`: N sessions in one group chat, S of them sending (XEP-0045);
//! - `wait-login`: retries one login until it succeeds (startup time).
//!
//! Results are one JSON object per line on stdout. SCRAM-SHA-1 because Prosody's
//! hashed storage offers only that; neither the certificate nor the handshake
//! signature is verified (both servers are on loopback, and a cheap client keeps
//! the measurement on the server), and SCRAM's PBKDF2 runs once per account.

mod pep;
mod reconnects;
mod room;

use argh::FromArgs;
use event_listener::Event as Notify;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrenhub::net::transport::{ReadOutcome, Transport};
use wrenhub::xml::{Event, Framer, Limits};

/// Every network wait of a session is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(FromArgs)]
/// Load generator for the wrenhub benchmarks.
struct Args {
    /// server address (host:port of the client port)
    #[argh(option, default = "\"127.0.0.1:5222\".parse().unwrap()")]
    addr: SocketAddr,
    /// the server's domain
    #[argh(option, default = "String::from(\"localhost\")")]
    domain: String,
    /// accounts are PREFIX0 .. PREFIX{users-1}
    #[argh(option, default = "String::from(\"u\")")]
    prefix: String,
    /// how many accounts exist
    #[argh(option, default = "10")]
    users: usize,
    /// the password of every account
    #[argh(option, default = "String::from(\"bench\")")]
    password: String,
    /// skip STARTTLS (for a server with c2s_require_encryption = false: shows
    /// what TLS itself costs)
    #[argh(switch)]
    no_tls: bool,
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Sessions(SessionsCmd),
    Logins(LoginsCmd),
    Messages(MessagesCmd),
    Offline(OfflineCmd),
    Reconnects(reconnects::ReconnectsCmd),
    Hibernate(reconnects::HibernateCmd),
    Room(room::RoomCmd),
    PepStore(pep::PepStoreCmd),
    PepFanout(pep::PepFanoutCmd),
    WaitLogin(WaitLoginCmd),
}

#[derive(FromArgs)]
/// K senders store messages for accounts that are offline, each waiting for the
/// server's answer to a ping after every window (so what is counted is stored);
/// meanwhile one more session pings the server and records the round trips
#[argh(subcommand, name = "offline")]
struct OfflineCmd {
    /// sessions sending at once
    #[argh(option)]
    senders: usize,
    /// messages per sender
    #[argh(option)]
    count: usize,
    /// offline accounts the messages go to (the last TARGETS accounts)
    #[argh(option, default = "40")]
    targets: usize,
    /// messages per window (one ping after each)
    #[argh(option, default = "16")]
    window: usize,
}

#[derive(FromArgs)]
/// log in N sessions, print the result, keep them open until stdin closes
#[argh(subcommand, name = "sessions")]
struct SessionsCmd {
    /// sessions to open
    #[argh(option)]
    count: usize,
    /// logins in progress at once
    #[argh(option, default = "50")]
    concurrency: usize,
}

#[derive(FromArgs)]
/// M complete logins (connect, STARTTLS, SCRAM, bind, close), C at a time
#[argh(subcommand, name = "logins")]
struct LoginsCmd {
    /// logins in all
    #[argh(option)]
    count: usize,
    /// logins in progress at once (1 = sequential)
    #[argh(option, default = "1")]
    concurrency: usize,
}

#[derive(FromArgs)]
/// K pairs exchange messages for D seconds
#[argh(subcommand, name = "messages")]
struct MessagesCmd {
    /// sender/receiver pairs
    #[argh(option)]
    pairs: usize,
    /// seconds of sending
    #[argh(option, default = "10.0")]
    duration: f64,
    /// messages a sender may have in flight
    #[argh(option, default = "16")]
    window: usize,
    /// every session enables stream management (XEP-0198); receivers answer the
    /// server's ack requests
    #[argh(switch)]
    sm: bool,
}

#[derive(FromArgs)]
/// retry one login until it succeeds; print how long that took
#[argh(subcommand, name = "wait-login")]
struct WaitLoginCmd {
    /// give up after this many seconds
    #[argh(option, default = "30.0")]
    timeout: f64,
}

/// SCRAM salted passwords by (user, salt, iterations).
type SaltedCache = HashMap<(String, Vec<u8>, u32), Vec<u8>>;

/// What a session needs to log in.
struct Target {
    addr: SocketAddr,
    domain: String,
    password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// SCRAM salted passwords by (user, salt, iterations): PBKDF2 once per account.
    salted: RefCell<SaltedCache>,
}

/// One received top-level event, owned (the framer's view does not outlive a read).
#[derive(Debug, Default)]
struct Ev {
    end: bool,
    header: bool,
    name: String,
    kind: Option<String>,
    text: String,
    body: Option<String>,
    /// The `id` attribute (XEP-0198 `<enabled id>`), or empty.
    id: String,
    /// The `from` attribute, or empty.
    from: String,
    /// The first child's namespace and its `node` attribute (a disco#info query).
    child_ns: String,
    child_node: Option<String>,
    /// A PEP event's first item id (`<event><items><item id/>`).
    item_id: Option<String>,
}

struct Conn {
    transport: Transport,
    framer: Framer,
}

fn other(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

impl Conn {
    async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let socket = async_io::Async::<TcpStream>::connect(addr).await?;
        socket.get_ref().set_nodelay(true)?;
        let limits = Limits { max_stanza_size: 1 << 20, ..Limits::default() };
        Ok(Conn { transport: Transport::plain(socket), framer: Framer::new(limits) })
    }

    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.transport.write_all(data, IO_TIMEOUT).await
    }

    /// The next top-level event.
    async fn next(&mut self) -> io::Result<Ev> {
        loop {
            match self.framer.next_event() {
                Ok(Some(event)) => return Ok(owned(event)),
                Ok(None) => {}
                Err(e) => return Err(other(format!("XML: {e:?}"))),
            }
            if !self.transport.has_buffered_input() {
                let ready = futures_lite::future::or(async { Some(self.transport.readable().await) }, async {
                    async_io::Timer::after(IO_TIMEOUT).await;
                    None
                })
                .await;
                match ready {
                    None => return Err(io::ErrorKind::TimedOut.into()),
                    Some(r) => r?,
                }
            }
            if self.transport.read_into(&mut self.framer)? == ReadOutcome::Eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // TLS handshake records may want an answer.
            self.send(&[]).await?;
        }
    }

    /// The next element, skipping headers; fails on a stream error or the end.
    async fn element(&mut self) -> io::Result<Ev> {
        loop {
            let ev = self.next().await?;
            if ev.end {
                return Err(other("the server closed the stream"));
            }
            if ev.name == "error" && ev.text.contains("urn:ietf:params:xml:ns:xmpp-streams") {
                return Err(other(format!("stream error {ev:?}")));
            }
            if !ev.header {
                return Ok(ev);
            }
        }
    }

    async fn open_stream(&mut self, domain: &str) -> io::Result<Ev> {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        self.send(header.as_bytes()).await?;
        let features = self.element().await?;
        if features.name != "features" {
            return Err(other(format!("expected features, got {features:?}")));
        }
        Ok(features)
    }
}

fn owned(event: Event<'_>) -> Ev {
    match event {
        Event::StreamEnd => Ev { end: true, ..Ev::default() },
        Event::Header(_) => Ev { header: true, ..Ev::default() },
        Event::Element(el) => {
            let mut text = el.text().into_owned();
            if el.name() == "error" || el.name() == "failure" {
                // The condition's namespace and name, for the error message.
                for c in el.children() {
                    text.push_str(&format!(" {{{}}}{}", c.ns(), c.name()));
                }
            }
            if el.name() == "success" {
                // What a SASL2 success carries, as ` child@attr=value` words.
                for c in el.children().chain(el.children().flat_map(|c| c.children())) {
                    text.push_str(&format!(" {}", c.name()));
                    for a in c.attrs() {
                        text.push_str(&format!(" {}@{}={}", c.name(), a.name, a.value()));
                    }
                }
            }
            Ev {
                end: false,
                header: false,
                name: el.name().to_string(),
                kind: el.attr("type").map(|t| t.into_owned()),
                id: el.attr("id").map(|t| t.into_owned()).unwrap_or_default(),
                body: el.children().find(|c| c.name() == "body").map(|b| b.text().into_owned()),
                from: el.attr("from").map(|t| t.into_owned()).unwrap_or_default(),
                child_ns: el.children().next().map(|c| c.ns().to_string()).unwrap_or_default(),
                child_node: el.children().next().and_then(|c| c.attr("node").map(|n| n.into_owned())),
                item_id: el
                    .children()
                    .find(|c| c.name() == "event")
                    .and_then(|e| e.children().next())
                    .and_then(|items| items.children().next())
                    .and_then(|item| item.attr("id").map(|i| i.into_owned())),
                text,
            }
        }
    }
}

fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

fn unb64(text: &str) -> io::Result<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim()).map_err(|e| other(e.to_string()))
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// A full login: STARTTLS, SCRAM-SHA-1 (RFC 5802), bind. Returns the bound stream.
async fn login(target: &Target, user: &str, resource: &str) -> io::Result<Conn> {
    let mut conn = connect_tls(target).await?;

    scram(&mut conn, target, user, None).await?;
    conn.framer.restart();
    conn.open_stream(&target.domain).await?;
    let bind = format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource>\
         </bind></iq>"
    );
    conn.send(bind.as_bytes()).await?;
    let bound = conn.element().await?;
    if bound.name != "iq" || bound.kind.as_deref() != Some("result") {
        return Err(other(format!("bind failed: {bound:?}")));
    }
    Ok(conn)
}

/// A connection with TLS in place (STARTTLS), its features read.
async fn connect_tls(target: &Target) -> io::Result<Conn> {
    let mut conn = Conn::connect(target.addr).await?;
    conn.open_stream(&target.domain).await?;
    if let Some(tls) = &target.tls {
        conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
        let proceed = conn.element().await?;
        if proceed.name != "proceed" {
            return Err(other(format!("STARTTLS refused: {proceed:?}")));
        }
        conn.framer.discard_buffered();
        conn.framer.restart();
        let name = rustls::pki_types::ServerName::try_from(target.domain.clone()).map_err(|e| other(e.to_string()))?;
        conn.transport.start_client_tls(Arc::clone(tls), name)?;
        conn.open_stream(&target.domain).await?;
    }
    Ok(conn)
}

/// SCRAM-SHA-1 (RFC 5802): the legacy profile (`sasl2` = None), or SASL2
/// (XEP-0388) with `sasl2` inside `<authenticate/>`. Returns the success.
async fn scram(conn: &mut Conn, target: &Target, user: &str, sasl2: Option<&str>) -> io::Result<Ev> {
    let mut nonce_bytes = [0u8; 18];
    getrandom::fill(&mut nonce_bytes).map_err(|e| other(e.to_string()))?;
    let client_nonce = b64(&nonce_bytes);
    let first_bare = format!("n={user},r={client_nonce}");
    let first = b64(format!("n,,{first_bare}").as_bytes());
    let auth = match sasl2 {
        None => format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{first}</auth>"),
        Some(inline) => format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'><initial-response>{first}\
             </initial-response>{inline}</authenticate>"
        ),
    };
    conn.send(auth.as_bytes()).await?;
    let challenge = conn.element().await?;
    if challenge.name != "challenge" {
        return Err(other(format!("SASL: {challenge:?}")));
    }
    let server_first = String::from_utf8(unb64(&challenge.text)?).map_err(|e| other(e.to_string()))?;
    let field = |k: &str| server_first.split(',').find_map(|p| p.strip_prefix(k)).map(str::to_string);
    let (Some(nonce), Some(salt), Some(iterations)) = (field("r="), field("s="), field("i=")) else {
        return Err(other(format!("bad server-first {server_first}")));
    };
    let salt = unb64(&salt)?;
    let iterations: u32 = iterations.parse().map_err(|_| other("bad iteration count"))?;
    let key = (user.to_string(), salt.clone(), iterations);
    let salted = target.salted.borrow().get(&key).cloned();
    let salted = match salted {
        Some(s) => s,
        None => {
            let mut out = vec![0u8; 20];
            let rounds = std::num::NonZeroU32::new(iterations).ok_or_else(|| other("zero iterations"))?;
            ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA1, rounds, &salt, target.password.as_bytes(), &mut out);
            target.salted.borrow_mut().insert(key, out.clone());
            out
        }
    };
    let client_key = hmac_sha1(&salted, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac_sha1(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(a, b)| a ^ b).collect();
    let ns = if sasl2.is_some() { "urn:xmpp:sasl:2" } else { "urn:ietf:params:xml:ns:xmpp-sasl" };
    let response =
        format!("<response xmlns='{ns}'>{}</response>", b64(format!("{without_proof},p={}", b64(&proof)).as_bytes()));
    conn.send(response.as_bytes()).await?;
    let outcome = conn.element().await?;
    if outcome.name != "success" {
        return Err(other(format!("SASL failed for {user}: {outcome:?}")));
    }
    Ok(outcome)
}

/// Accepts the server's certificate and handshake signature without checking
/// them: the generator must cost as little as possible so that the server, not the
/// client, is what the login rate measures (both servers are on loopback).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Logs in `names` (resource `{resource}{i}`), 50 at a time; the connections in
/// the order of `names`, or the first error.
fn login_all(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    names: &[String],
    resource: &str,
) -> Result<Vec<Conn>, String> {
    let n = names.len();
    let conns: Rc<RefCell<Vec<Option<Conn>>>> = Rc::new(RefCell::new((0..n).map(|_| None).collect()));
    let failed = Rc::new(RefCell::new(None::<String>));
    {
        let (conns, failed, target) = (Rc::clone(&conns), Rc::clone(&failed), Rc::clone(target));
        let (names, resource) = (names.to_vec(), resource.to_string());
        futures_lite::future::block_on(ex.run(run_jobs(ex, n, 50, move |i| {
            let (conns, failed, target, name) =
                (Rc::clone(&conns), Rc::clone(&failed), Rc::clone(&target), names[i].clone());
            let resource = format!("{resource}{i}");
            async move {
                match login(&target, &name, &resource).await {
                    Ok(c) => conns.borrow_mut()[i] = Some(c),
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(format!("{name}: {e}"));
                    }
                }
            }
        })));
    }
    if let Some(e) = failed.borrow().clone() {
        return Err(e);
    }
    let conns = conns.borrow_mut().drain(..).flatten().collect();
    Ok(conns)
}

/// Waits for the bench to say go on (a line on stdin).
fn wait_for_stdin() {
    let _ = io::BufRead::read_line(&mut io::stdin().lock(), &mut String::new());
}

fn print(json: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{json}");
    let _ = out.flush();
}

/// Runs `count` jobs, `concurrency` at a time, on the executor.
async fn run_jobs<F, Fut>(ex: &smol::LocalExecutor<'_>, count: usize, concurrency: usize, job: F)
where
    F: Fn(usize) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let next = Rc::new(Cell::new(0usize));
    let job = Rc::new(job);
    let workers: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let (next, job) = (Rc::clone(&next), Rc::clone(&job));
            ex.spawn(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        break;
                    }
                    next.set(i + 1);
                    job(i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
}

fn main() -> std::process::ExitCode {
    let args: Args = argh::from_env();
    let target = Rc::new(Target {
        addr: args.addr,
        domain: args.domain.clone(),
        password: args.password.clone(),
        tls: (!args.no_tls).then(tls_config),
        salted: RefCell::new(HashMap::new()),
    });
    let users = args.users.max(1);
    let user = move |i: usize| format!("{}{}", args.prefix, i % args.users.max(1));
    let ex = smol::LocalExecutor::new();
    match args.command {
        Command::WaitLogin(cmd) => {
            let started = Instant::now();
            let deadline = started + Duration::from_secs_f64(cmd.timeout);
            let ok = futures_lite::future::block_on(ex.run(async {
                loop {
                    if login(&target, &user(0), "wait").await.is_ok() {
                        return true;
                    }
                    if Instant::now() > deadline {
                        return false;
                    }
                    async_io::Timer::after(Duration::from_millis(5)).await;
                }
            }));
            print(format!("{{\"login_ok\":{ok},\"seconds\":{:.4}}}", started.elapsed().as_secs_f64()));
            if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Command::Sessions(cmd) => {
            let started = Instant::now();
            let kept: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::with_capacity(cmd.count)));
            let failed = Rc::new(Cell::new(0usize));
            let first_error = Rc::new(RefCell::new(None::<String>));
            {
                let (kept, failed, first_error, target) =
                    (Rc::clone(&kept), Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(&target));
                futures_lite::future::block_on(ex.run(run_jobs(&ex, cmd.count, cmd.concurrency, move |i| {
                    let (kept, failed, first_error, target) =
                        (Rc::clone(&kept), Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(&target));
                    let name = user(i);
                    async move {
                        match login(&target, &name, &format!("s{i}")).await {
                            Ok(c) => kept.borrow_mut().push(c),
                            Err(e) => {
                                failed.set(failed.get() + 1);
                                first_error.borrow_mut().get_or_insert(e.to_string());
                            }
                        }
                    }
                })));
            }
            print(format!(
                "{{\"sessions\":{},\"failed\":{},\"seconds\":{:.3},\"error\":{:?}}}",
                kept.borrow().len(),
                failed.get(),
                started.elapsed().as_secs_f64(),
                first_error.borrow().clone().unwrap_or_default()
            ));
            // The sessions stay open (idle, nothing to read) until stdin closes.
            let _ = io::Read::read_to_end(&mut io::stdin(), &mut Vec::new());
            drop(kept);
            std::process::ExitCode::SUCCESS
        }
        Command::Logins(cmd) => {
            let started = Instant::now();
            let failed = Rc::new(Cell::new(0usize));
            let first_error = Rc::new(RefCell::new(None::<String>));
            {
                let (failed, first_error, target) = (Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(&target));
                futures_lite::future::block_on(ex.run(run_jobs(&ex, cmd.count, cmd.concurrency, move |i| {
                    let (failed, first_error, target) =
                        (Rc::clone(&failed), Rc::clone(&first_error), Rc::clone(&target));
                    let name = user(i);
                    async move {
                        match login(&target, &name, &format!("l{i}")).await {
                            Ok(mut c) => {
                                let _ = c.send(b"</stream:stream>").await;
                            }
                            Err(e) => {
                                failed.set(failed.get() + 1);
                                first_error.borrow_mut().get_or_insert(e.to_string());
                            }
                        }
                    }
                })));
            }
            let seconds = started.elapsed().as_secs_f64();
            let ok = cmd.count - failed.get();
            print(format!(
                "{{\"logins\":{ok},\"failed\":{},\"concurrency\":{},\"seconds\":{seconds:.3},\"per_second\":{:.1},\
                 \"error\":{:?}}}",
                failed.get(),
                cmd.concurrency,
                ok as f64 / seconds,
                first_error.borrow().clone().unwrap_or_default()
            ));
            std::process::ExitCode::SUCCESS
        }
        Command::Messages(cmd) => messages(&ex, &target, &user, cmd),
        Command::Offline(cmd) => offline(&ex, &target, &user, users, cmd),
        Command::Reconnects(cmd) => reconnects::run(&ex, &target, &user, cmd),
        Command::Hibernate(cmd) => reconnects::hibernate(&ex, &target, &user, cmd),
        Command::Room(cmd) => room::run(&ex, &target, &user, cmd),
        Command::PepStore(cmd) => pep::store(&ex, &target, &user, cmd),
        Command::PepFanout(cmd) => pep::fanout(&ex, &target, &user, cmd),
    }
}

/// Waits for the answer to the ping just sent; counts error messages before it.
async fn await_pong(conn: &mut Conn, errors: &Cell<u64>) -> io::Result<()> {
    loop {
        let ev = conn.next().await?;
        if ev.end {
            return Err(other("stream closed"));
        }
        if ev.name == "iq" && ev.kind.as_deref() == Some("result") {
            return Ok(());
        }
        if ev.name == "message" && ev.kind.as_deref() == Some("error") {
            errors.set(errors.get() + 1);
        }
    }
}

fn offline(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    users: usize,
    cmd: OfflineCmd,
) -> std::process::ExitCode {
    const PING: &[u8] = b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    let targets: Vec<String> =
        (0..cmd.targets.max(1)).map(|j| format!("{}@{}", user(users - 1 - j), target.domain)).collect();
    let logged_in = futures_lite::future::block_on(ex.run(async {
        let mut senders = Vec::new();
        for i in 0..cmd.senders {
            senders.push(login(target, &user(i), &format!("off{i}")).await?);
        }
        let prober = login(target, &user(cmd.senders), "probe").await?;
        Ok::<_, io::Error>((senders, prober))
    }));
    let (senders, mut prober) = match logged_in {
        Ok(c) => c,
        Err(e) => {
            print(format!("{{\"error\":{:?}}}", e.to_string()));
            return std::process::ExitCode::FAILURE;
        }
    };
    let errors = Rc::new(Cell::new(0u64));
    let stored = Rc::new(Cell::new(0u64));
    let running = Rc::new(Cell::new(cmd.senders));
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut tx)| {
            let (errors, stored, running, targets) =
                (Rc::clone(&errors), Rc::clone(&stored), Rc::clone(&running), targets.clone());
            let window = cmd.window.max(1);
            let count = cmd.count;
            ex.spawn(async move {
                let mut sent = 0;
                let mut batch = Vec::new();
                while sent < count {
                    batch.clear();
                    let n = window.min(count - sent);
                    for k in 0..n {
                        let to = &targets[(i + sent + k) % targets.len()];
                        batch.extend_from_slice(
                            format!("<message to='{to}' type='chat'><body>offline {i} {}</body></message>", sent + k)
                                .as_bytes(),
                        );
                    }
                    batch.extend_from_slice(PING);
                    if tx.send(&batch).await.is_err() || await_pong(&mut tx, &errors).await.is_err() {
                        break;
                    }
                    sent += n;
                    stored.set(stored.get() + n as u64);
                }
                running.set(running.get() - 1);
            })
        })
        .collect();
    let rtts: Rc<RefCell<Vec<u32>>> = Rc::new(RefCell::new(Vec::new()));
    let probe = {
        let (rtts, running, errors) = (Rc::clone(&rtts), Rc::clone(&running), Rc::clone(&errors));
        ex.spawn(async move {
            while running.get() > 0 {
                let t = Instant::now();
                if prober.send(PING).await.is_err() || await_pong(&mut prober, &errors).await.is_err() {
                    break;
                }
                rtts.borrow_mut().push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
        })
    };
    futures_lite::future::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
        probe.await;
    }));
    let seconds = started.elapsed().as_secs_f64();
    let mut r = rtts.borrow_mut();
    r.sort_unstable();
    let p99 = if r.is_empty() { 0.0 } else { r[((r.len() as f64 - 1.0) * 0.99).round() as usize] as f64 / 1000.0 };
    print(format!(
        "{{\"senders\":{},\"stored\":{},\"errors\":{},\"seconds\":{seconds:.3},\"per_second\":{:.1},\
         \"ping_p99_ms\":{p99:.3},\"pings\":{}}}",
        cmd.senders,
        stored.get(),
        errors.get(),
        stored.get() as f64 / seconds,
        r.len()
    ));
    std::process::ExitCode::SUCCESS
}

/// Shared state of one sender/receiver pair.
#[derive(Default)]
struct Pair {
    sent: Cell<u64>,
    received: Cell<u64>,
    progress: Notify,
}

impl Pair {
    /// Messages sent and not yet received.
    fn in_flight(&self) -> u64 {
        self.sent.get().saturating_sub(self.received.get())
    }
}

fn messages(
    ex: &smol::LocalExecutor<'static>,
    target: &Rc<Target>,
    user: &dyn Fn(usize) -> String,
    cmd: MessagesCmd,
) -> std::process::ExitCode {
    // Each pair: sender on account 2i, receiver on account 2i+1 (mod users).
    let mut logins = Vec::new();
    for i in 0..cmd.pairs {
        logins.push((user(2 * i), format!("tx{i}"), user(2 * i + 1), format!("rx{i}")));
    }
    let conns = futures_lite::future::block_on(ex.run(async {
        let mut out = Vec::new();
        for (su, sr, ru, rr) in &logins {
            let mut tx = login(target, su, sr).await?;
            let mut rx = login(target, ru, rr).await?;
            if cmd.sm {
                for c in [&mut tx, &mut rx] {
                    c.send(b"<enable xmlns='urn:xmpp:sm:3'/>").await?;
                    // Stanzas from an earlier phase (redelivered to this resource)
                    // may come first.
                    loop {
                        let answer = c.element().await?;
                        match answer.name.as_str() {
                            "enabled" => break,
                            "message" | "presence" | "iq" => continue,
                            _ => return Err(other(format!("stream management: {answer:?}"))),
                        }
                    }
                }
            }
            out.push((tx, rx, format!("{ru}@{}/{rr}", target.domain)));
        }
        Ok::<_, io::Error>(out)
    }));
    let conns = match conns {
        Ok(c) => c,
        Err(e) => {
            print(format!("{{\"error\":{:?}}}", e.to_string()));
            return std::process::ExitCode::FAILURE;
        }
    };
    print("{\"phase\":\"sending\"}".to_string());
    let base = Instant::now();
    let stop_at = base + Duration::from_secs_f64(cmd.duration);
    let latencies: Rc<RefCell<Vec<u32>>> = Rc::new(RefCell::new(Vec::new()));
    let delivered_in_time = Rc::new(Cell::new(0u64));
    let window = cmd.window.max(1) as u64;
    // Messages left from an earlier phase or run (offline storage, stream
    // management redelivery) reach these resources too: only bodies with this
    // run's token are counted.
    let token: Rc<str> = format!(
        "r{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    )
    .into();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(mut tx, mut rx, to)| {
            let pair = Rc::new(Pair::default());
            let sender = {
                let (pair, token) = (Rc::clone(&pair), Rc::clone(&token));
                ex.spawn(async move {
                    let mut seq = 0u64;
                    let mut batch = Vec::new();
                    while Instant::now() < stop_at {
                        while pair.in_flight() >= window {
                            let listener = pair.progress.listen();
                            if pair.in_flight() < window {
                                break;
                            }
                            let woke = futures_lite::future::or(
                                async {
                                    listener.await;
                                    true
                                },
                                async {
                                    async_io::Timer::at(stop_at + Duration::from_secs(5)).await;
                                    false
                                },
                            )
                            .await;
                            if !woke {
                                return;
                            }
                        }
                        // Everything the window allows goes out in one write: one
                        // syscall (and TLS record) for several stanzas keeps the
                        // generator cheaper than the server it measures.
                        let micros = base.elapsed().as_micros();
                        let room = window - pair.in_flight();
                        batch.clear();
                        for _ in 0..room {
                            batch.extend_from_slice(
                                format!("<message to='{to}' type='chat'><body>{token} {seq} {micros}</body></message>")
                                    .as_bytes(),
                            );
                            seq += 1;
                        }
                        // Counted before the write: its await lets the receiver
                        // run, and it must not see more received than sent.
                        pair.sent.set(pair.sent.get() + room);
                        if tx.send(&batch).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(b"</stream:stream>").await;
                })
            };
            let receiver = {
                let (latencies, delivered, token) =
                    (Rc::clone(&latencies), Rc::clone(&delivered_in_time), Rc::clone(&token));
                ex.spawn(async move {
                    let mut handled = 0u64;
                    loop {
                        let done = Instant::now() >= stop_at && pair.received.get() >= pair.sent.get();
                        if done || Instant::now() > stop_at + Duration::from_secs(5) {
                            break;
                        }
                        let ev = futures_lite::future::or(async { Some(rx.next().await) }, async {
                            async_io::Timer::after(Duration::from_millis(200)).await;
                            None
                        })
                        .await;
                        let Some(Ok(ev)) = ev else {
                            continue;
                        };
                        // XEP-0198: the server asks what we have; we count stanzas.
                        if ev.name == "r" {
                            let ack = format!("<a xmlns='urn:xmpp:sm:3' h='{}'/>", handled as u32);
                            let _ = rx.send(ack.as_bytes()).await;
                            continue;
                        }
                        if matches!(ev.name.as_str(), "message" | "presence" | "iq") {
                            handled += 1;
                        }
                        let Some(body) = ev.body else { continue };
                        let mut words = body.split(' ');
                        if words.next() != Some(&*token) {
                            continue;
                        }
                        let Some(sent_at) = words.nth(1).and_then(|m| m.parse::<u128>().ok()) else {
                            continue;
                        };
                        let now = base.elapsed().as_micros();
                        latencies.borrow_mut().push(now.saturating_sub(sent_at).min(u32::MAX as u128) as u32);
                        pair.received.set(pair.received.get() + 1);
                        if Instant::now() <= stop_at {
                            delivered.set(delivered.get() + 1);
                        }
                        pair.progress.notify(1);
                    }
                })
            };
            (sender, receiver)
        })
        .collect();
    futures_lite::future::block_on(ex.run(async {
        for (s, r) in tasks {
            s.await;
            r.await;
        }
    }));
    let mut l = latencies.borrow_mut();
    l.sort_unstable();
    let pct = |p: f64| -> f64 {
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i] as f64 / 1000.0
    };
    print(format!(
        "{{\"pairs\":{},\"seconds\":{},\"delivered\":{},\"received_total\":{},\"per_second\":{:.1},\
         \"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        cmd.pairs,
        cmd.duration,
        delivered_in_time.get(),
        l.len(),
        delivered_in_time.get() as f64 / cmd.duration,
        pct(0.5),
        pct(0.99),
        l.last().map_or(0.0, |m| *m as f64 / 1000.0)
    ));
    std::process::ExitCode::SUCCESS
}
