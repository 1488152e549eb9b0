//! The wire-test harness: starts the real `wrenhub` binary on 127.0.0.1 port 0 with
//! a temporary data dir, learns its ports from its log, and speaks bytes over TCP or
//! TLS (rustls, trusting the server's own local CA), with a small SCRAM client.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A well-formed client stream header for `localhost`.
pub const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

pub const NS_STREAMS_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server process.
pub struct Server {
    child: Child,
    /// The client port (STARTTLS).
    pub port: u16,
    /// The Direct TLS port (XEP-0368).
    pub tls_port: u16,
    /// The component port (XEP-0114), when components are configured.
    pub component_port: Option<u16>,
    /// The s2s port, when federation is on.
    pub s2s_port: Option<u16>,
    /// The HTTPS port (upload, WebSocket, pages), unless `http_listen = []`.
    pub http_port: Option<u16>,
    /// The served domain (from the "serving" log line).
    pub domain: String,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server with default settings (and debug logging).
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Starts a server with this TOML config file content.
    pub fn start_with(config: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_in(dir, config)
    }

    /// Starts a server on an existing data dir.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Server {
        Server::start_program(&[env!("CARGO_BIN_EXE_wrenhub")], dir, config)
    }

    /// Starts `program` (e.g. an emulator and a cross-built binary) as the server.
    pub fn start_program(program: &[&str], dir: tempfile::TempDir, config: &str) -> Server {
        let config_path = dir.path().join("wrenhub.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut child = Command::new(program[0])
            .args(&program[1..])
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--c2s-listen", "127.0.0.1:0", "--c2s-direct-tls-listen", "127.0.0.1:0"])
            .args(["--component-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--log-level", "debug", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wrenhub");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (kind, marker) in [
                    (0, "listening for clients on 127.0.0.1:"),
                    (1, "listening for clients with Direct TLS on 127.0.0.1:"),
                    (2, "listening for components on 127.0.0.1:"),
                    (4, "listening for servers on 127.0.0.1:"),
                    (5, "listening for HTTPS on 127.0.0.1:"),
                    (3, " serving "),
                ] {
                    if let Some(rest) = line.split(marker).nth(1) {
                        let port = rest.trim().parse::<u16>().ok();
                        let domain = rest.split(' ').next().unwrap_or("").to_string();
                        let _ = tx.send((kind, if kind == 3 { Some(0) } else { port }, domain));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        // The listeners are announced before the "serving" line.
        let (mut port, mut tls_port, mut component_port, mut s2s_port, mut http_port) = (None, None, None, None, None);
        let domain = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok((0, p, _)) => port = p,
                Ok((1, p, _)) => tls_port = p,
                Ok((2, p, _)) => component_port = p,
                Ok((4, p, _)) => s2s_port = p,
                Ok((5, p, _)) => http_port = p,
                Ok((_, _, domain)) => break domain,
                Err(_) => panic!("server did not start; log: {:?}", log.lock().unwrap()),
            }
        };
        let (Some(port), Some(tls_port)) = (port, tls_port) else {
            panic!("server did not report its ports; log: {:?}", log.lock().unwrap())
        };
        Server { child, port, tls_port, component_port, s2s_port, http_port, domain, dir, log }
    }

    /// Waits until the log has a line containing `text`; returns that line.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> String {
        self.wait_for_log_nth(text, 1, timeout)
    }

    /// Waits until the log has `n` lines containing `text`; returns the last.
    pub fn wait_for_log_nth(&self, text: &str, n: usize, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().filter(|l| l.contains(text)).nth(n - 1) {
                return line.clone();
            }
            if std::time::Instant::now() > deadline {
                panic!("no log line with {text:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `wrenhub ARGS --data-dir DIR` with `stdin`; returns (success, output).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wrenhub"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wrenhub");
        // A command that reads no input may exit before this write.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Creates an account through the CLI (the control socket of the running server).
    pub fn add_user(&self, user: &str, password: &str) {
        let jid = if user.contains('@') { user.to_string() } else { format!("{user}@{}", self.domain) };
        let (ok, text) = self.cli(&["user", "add", &jid, "--password-stdin"], &format!("{password}\n"));
        assert!(ok, "user add failed: {text}");
    }

    pub fn connect(&self) -> Client {
        let mut c = Client::plain(TcpStream::connect(("127.0.0.1", self.port)).expect("connect"));
        c.domain = self.domain.clone();
        c
    }

    /// Connects to the Direct TLS port (ALPN `xmpp-client`).
    pub fn connect_direct_tls(&self) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", self.tls_port)).expect("connect");
        let mut c = Client::plain(tcp);
        c.upgrade_tls(&self.ca_pem(), &[b"xmpp-client"]);
        c
    }

    /// The local CA certificate the server made (PEM).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("tls/ca.pem")).expect("the server made a local CA")
    }

    /// Connects, negotiates STARTTLS, and opens the secured stream (features read).
    pub fn connect_tls(&self) -> Client {
        self.starttls_on(self.connect())
    }

    /// Negotiates STARTTLS on a client's fresh connection (e.g. one made from a
    /// chosen source address) and opens the secured stream.
    pub fn starttls_on(&self, c: Client) -> Client {
        starttls(c, &self.ca_pem())
    }

    /// The accounts juliet and romeo (password `pw`) logged in as `…/a` and `…/b`;
    /// juliet has asked for her roster, so she gets roster pushes.
    pub fn juliet_and_romeo(&self) -> (Client, Client) {
        self.add_user("juliet", "pw");
        self.add_user("romeo", "pw");
        let mut j = self.login("juliet", "pw", "a");
        let r = self.login("romeo", "pw", "b");
        j.send("<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>");
        j.read_until("id='roster0'", WAIT);
        (j, r)
    }

    /// STARTTLS, SCRAM-SHA-256, bind `resource`: a client ready for stanzas.
    pub fn login(&self, user: &str, password: &str, resource: &str) -> Client {
        let mut c = self.connect_tls();
        assert!(c.scram(ScramKind::Sha256, user, password), "login failed: {}", c.received());
        c.restart_and_bind(resource);
        c
    }

    /// Stops the server and starts it again on its data dir `days` later by its
    /// clock (libfaketime, which ./scripts/test installs), with `config`.
    pub fn restart_days_later(mut self, days: u32, config: &str) -> Server {
        self.signal("TERM");
        self.wait_exit(WAIT).expect("stopped");
        assert!(
            Command::new("faketime").arg("-f").arg("+0").arg("true").status().is_ok_and(|s| s.success()),
            "faketime is missing: apt-get install faketime"
        );
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let shift = format!("+{days}d");
        Server::start_program(
            &["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", &shift, env!("CARGO_BIN_EXE_wrenhub")],
            dir,
            config,
        )
    }

    /// A TLS connection to the HTTPS listener (ALPN `http/1.1`).
    pub fn https(&self) -> Client {
        let mut c = Client::connect_port(self.http_port.expect("an HTTPS listener"));
        c.upgrade_tls(&self.ca_pem(), &[b"http/1.1"]);
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// VmHWM (peak RSS) of the server process in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// VmRSS of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The byte stream under a client: TCP, or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

/// Which SCRAM the test client runs.
#[derive(Clone, Copy, Debug)]
pub enum ScramKind {
    Sha1,
    Sha256,
}

/// The client side of SCRAM (RFC 5802), for either SASL profile.
pub struct ScramClient {
    pub mechanism: &'static str,
    alg: ring::pbkdf2::Algorithm,
    hmac_alg: ring::hmac::Algorithm,
    digest: &'static ring::digest::Algorithm,
    len: usize,
    gs2: String,
    bare: String,
    cb: Option<Vec<u8>>,
    /// After the final message: the salted-password key and the auth message.
    state: Option<(ring::hmac::Key, String)>,
}

impl ScramClient {
    pub fn new(kind: ScramKind, user: &str, cb: Option<(&str, Vec<u8>)>) -> ScramClient {
        let plus = cb.is_some();
        let (mechanism, alg, hmac_alg, digest, len) = match (kind, plus) {
            (ScramKind::Sha1, p) => (
                if p { "SCRAM-SHA-1-PLUS" } else { "SCRAM-SHA-1" },
                ring::pbkdf2::PBKDF2_HMAC_SHA1,
                ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                20,
            ),
            (ScramKind::Sha256, p) => (
                if p { "SCRAM-SHA-256-PLUS" } else { "SCRAM-SHA-256" },
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                ring::hmac::HMAC_SHA256,
                &ring::digest::SHA256,
                32,
            ),
        };
        let gs2 = match &cb {
            Some((t, _)) => format!("p={t},,"),
            None => "n,,".to_string(),
        };
        ScramClient {
            mechanism,
            alg,
            hmac_alg,
            digest,
            len,
            gs2,
            bare: format!("n={user},r=clientnonce123"),
            cb: cb.map(|(_, d)| d),
            state: None,
        }
    }

    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2, self.bare)
    }

    /// The client-final message for the server-first message.
    pub fn client_final(&mut self, server_first: &str, password: &str) -> String {
        let mut fields = server_first.split(',');
        let nonce = &fields.next().unwrap()[2..];
        let salt = B64.decode(&fields.next().unwrap()[2..]).unwrap();
        let iterations: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let salted = salted_password(self.alg, self.len, iterations, &salt, password);
        let key = ring::hmac::Key::new(self.hmac_alg, &salted);
        let client_key = ring::hmac::sign(&key, b"Client Key");
        let stored = ring::digest::digest(self.digest, client_key.as_ref());
        let mut cbind = self.gs2.as_bytes().to_vec();
        cbind.extend_from_slice(self.cb.as_deref().unwrap_or_default());
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
        let auth = format!("{},{server_first},{without_proof}", self.bare);
        let sig = ring::hmac::sign(&ring::hmac::Key::new(self.hmac_alg, stored.as_ref()), auth.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(sig.as_ref()).map(|(a, b)| a ^ b).collect();
        self.state = Some((key, auth));
        format!("{without_proof},p={}", B64.encode(proof))
    }

    /// Checks the server's signature (`v=…`).
    pub fn assert_server_final(&self, v: &str) {
        let (key, auth) = self.state.as_ref().expect("client_final first");
        let server_key = ring::hmac::sign(key, b"Server Key");
        let expected = ring::hmac::sign(&ring::hmac::Key::new(self.hmac_alg, server_key.as_ref()), auth.as_bytes());
        assert_eq!(v, format!("v={}", B64.encode(expected)), "server signature");
    }
}

/// A raw XMPP client over TCP or TLS.
pub struct Client {
    io: Io,
    received: Vec<u8>,
    /// Bytes consumed by `take_received`.
    mark: usize,
    /// The bound full JID.
    pub jid: String,
    /// The server's domain (stream headers, TLS server name).
    pub domain: String,
}

impl Client {
    /// A plain TCP client to a port on 127.0.0.1.
    pub fn connect_port(port: u16) -> Client {
        Client::plain(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// A client on a connection the test made itself (e.g. from a chosen address).
    pub fn from_stream(stream: TcpStream) -> Client {
        Client::plain(stream)
    }

    fn plain(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("nodelay");
        Client { io: Io::Plain(stream), received: Vec::new(), mark: 0, jid: String::new(), domain: "localhost".into() }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s,
            Io::Tls(t) => &t.sock,
            Io::Gone => panic!("no connection"),
        }
    }

    /// Starts TLS on the connection, trusting `ca_pem`, server name `localhost`.
    pub fn upgrade_tls(&mut self, ca_pem: &[u8], alpn: &[&[u8]]) {
        self.upgrade_tls_with(ca_pem, alpn, rustls::DEFAULT_VERSIONS);
    }

    /// Starts TLS offering only these protocol versions.
    pub fn upgrade_tls_versions(&mut self, ca_pem: &[u8], versions: &[&'static rustls::SupportedProtocolVersion]) {
        self.upgrade_tls_with(ca_pem, &[], versions);
    }

    fn upgrade_tls_with(
        &mut self,
        ca_pem: &[u8],
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(self.domain.clone()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else { panic!("already TLS") };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        self.io = Io::Tls(Box::new(tls));
    }

    /// Starts TLS as a peer server would: trusting `ca_pem` for `server_name`,
    /// presenting a client certificate (PEM chain and key) when given.
    pub fn upgrade_tls_as_server(&mut self, ca_pem: &[u8], server_name: &str, client_cert: Option<(&[u8], &[u8])>) {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain: Vec<_> =
                    rustls::pki_types::CertificateDer::pem_slice_iter(chain).map(|c| c.expect("cert")).collect();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key).expect("key");
                builder.with_client_auth_cert(chain, key).expect("client cert")
            }
        };
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else { panic!("already TLS") };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        self.io = Io::Tls(Box::new(tls));
    }

    /// The negotiated TLS version and ALPN protocol.
    pub fn tls_info(&self) -> (Option<rustls::ProtocolVersion>, Option<Vec<u8>>) {
        match &self.io {
            Io::Tls(t) => (t.conn.protocol_version(), t.conn.alpn_protocol().map(|p| p.to_vec())),
            _ => (None, None),
        }
    }

    /// `tls-server-end-point` channel-binding data (RFC 5929): SHA-256 of the
    /// server's certificate (ECDSA with SHA-256).
    pub fn tls_server_end_point(&self) -> Vec<u8> {
        match &self.io {
            Io::Tls(t) => {
                let cert = &t.conn.peer_certificates().expect("server certificate")[0];
                ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref().to_vec()
            }
            _ => panic!("no TLS"),
        }
    }

    /// `tls-exporter` channel-binding data (RFC 9266).
    pub fn tls_exporter(&self) -> Vec<u8> {
        match &self.io {
            Io::Tls(t) => {
                t.conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None).expect("exporter").to_vec()
            }
            _ => panic!("no TLS"),
        }
    }

    pub fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        let r = match &mut self.io {
            Io::Plain(s) => s.write_all(data),
            Io::Tls(t) => t.write_all(data).and_then(|_| t.flush()),
            Io::Gone => panic!("no connection"),
        };
        r.expect("send");
    }

    /// Writes, ignoring a failure (the server may have closed already).
    pub fn try_send(&mut self, data: &[u8]) -> bool {
        match &mut self.io {
            Io::Plain(s) => s.write_all(data).is_ok(),
            Io::Tls(t) => t.write_all(data).and_then(|_| t.flush()).is_ok(),
            Io::Gone => false,
        }
    }

    /// Sends one byte per write.
    pub fn send_bytewise(&mut self, data: &str) {
        for b in data.as_bytes() {
            self.send_bytes(std::slice::from_ref(b));
        }
    }

    /// Everything received so far, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// What arrived since the last call (for step-by-step exchanges).
    pub fn take_received(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.received[self.mark..]).into_owned();
        self.mark = self.received.len();
        text
    }

    /// Reads until `pattern` appears after the mark; panics with what came after `timeout`.
    pub fn read_until(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let fresh = String::from_utf8_lossy(&self.received[self.mark..]).into_owned();
            if let Some(i) = fresh.find(pattern) {
                let end = self.mark + fresh[..i + pattern.len()].len();
                let text = String::from_utf8_lossy(&self.received[self.mark..end]).into_owned();
                self.mark = end;
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {pattern:?}; received {fresh:?}");
            if self.read_some(left) == 0 {
                panic!("connection closed before {pattern:?}; received {:?}", self.received());
            }
        }
    }

    /// Reads until the server closes the connection; returns everything received.
    pub fn read_to_close(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "server did not close the connection; received {:?}", self.received());
            if self.read_some(left) == 0 {
                return self.received();
            }
        }
    }

    /// Sends a subscription presence (`subscribe`, `subscribed`, ...) to
    /// `user@localhost`, and waits until the server handled it.
    pub fn subscription(&mut self, user: &str, kind: &str) {
        self.send(&format!("<presence to='{user}@localhost' type='{kind}'/>"));
        self.sync("subscription");
    }

    /// A ping through this connection and its answer; returns everything that came
    /// before the answer. The server handles one connection's input in order and
    /// routes synchronously, so whatever an earlier stanza caused for this client
    /// is in what this returns: negative checks look there, not at a silence.
    pub fn sync(&mut self, id: &str) -> String {
        self.send(&format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"));
        self.read_until(&format!("id='{id}' type='result'"), WAIT)
    }

    /// Reads what arrives within `timeout`: bytes read, 0 when closed,
    /// `usize::MAX` when nothing came.
    pub fn read_some(&mut self, timeout: Duration) -> usize {
        self.tcp().set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).expect("timeout");
        let mut buf = [0u8; 65536];
        let r = match &mut self.io {
            Io::Plain(s) => s.read(&mut buf),
            Io::Tls(t) => t.read(&mut buf),
            Io::Gone => return 0,
        };
        match r {
            Ok(n) => {
                self.received.extend_from_slice(&buf[..n]);
                n
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => usize::MAX,
            // A reset, or TLS closed without close_notify, after the server closed.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                0
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Runs SCRAM; true on `<success/>` with a correct server signature.
    pub fn scram(&mut self, kind: ScramKind, user: &str, password: &str) -> bool {
        self.scram_with(kind, user, password, None)
    }

    /// SCRAM with optional channel binding (`tls-exporter`, RFC 9266).
    pub fn scram_with(&mut self, kind: ScramKind, user: &str, password: &str, cb: Option<Vec<u8>>) -> bool {
        self.scram_cb(kind, user, password, cb.map(|d| ("tls-exporter", d)))
    }

    /// SCRAM with optional channel binding of the given type.
    pub fn scram_cb(&mut self, kind: ScramKind, user: &str, password: &str, cb: Option<(&str, Vec<u8>)>) -> bool {
        self.scram_between(kind, user, password, cb, || {})
    }

    /// SCRAM, running `between` after the server's challenge and before the
    /// client's final message (to change the account meanwhile).
    pub fn scram_between(
        &mut self,
        kind: ScramKind,
        user: &str,
        password: &str,
        cb: Option<(&str, Vec<u8>)>,
        between_steps: impl FnOnce(),
    ) -> bool {
        let mut scram = ScramClient::new(kind, user, cb);
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
            scram.mechanism,
            B64.encode(scram.client_first())
        ));
        let got = self.read_until_any(&["</challenge>", "</failure>"]);
        if got.contains("<failure") {
            return false;
        }
        let server_first = String::from_utf8(B64.decode(between(&got, "'>", "</challenge>")).unwrap()).unwrap();
        let client_final = scram.client_final(&server_first, password);
        between_steps();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(client_final)
        ));
        let got = self.read_until_any(&["</success>", "</failure>"]);
        if !got.contains("<success") {
            return false;
        }
        let v = String::from_utf8(B64.decode(between(&got, "'>", "</success>")).unwrap()).unwrap();
        scram.assert_server_final(&v);
        true
    }

    /// PLAIN; true on `<success/>`.
    pub fn plain_auth(&mut self, user: &str, password: &str) -> bool {
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            B64.encode(format!("\0{user}\0{password}"))
        ));
        let got = self.read_until_any(&["<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "</failure>"]);
        got.contains("<success")
    }

    /// Reads until one of the patterns appears; returns the text up to it.
    pub fn read_until_any(&mut self, patterns: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let fresh = String::from_utf8_lossy(&self.received[self.mark..]).into_owned();
            if let Some(end) = patterns.iter().filter_map(|p| fresh.find(p).map(|i| i + p.len())).min() {
                self.mark += fresh[..end].len();
                return fresh[..end].to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {patterns:?}; received {fresh:?}");
            if self.read_some(left) == 0 {
                panic!("connection closed before {patterns:?}; received {:?}", self.received());
            }
        }
    }

    /// After SASL success: restart the stream and bind `resource` ("" = server-chosen).
    /// A client stream header for the server's domain.
    pub fn header(&self) -> String {
        HEADER.replace("to='localhost'", &format!("to='{}'", self.domain))
    }

    pub fn restart_and_bind(&mut self, resource: &str) {
        let header = self.header();
        self.send(&header);
        let features = self.read_until("</stream:features>", WAIT);
        assert!(features.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"), "{features}");
        let res = if resource.is_empty() { String::new() } else { format!("<resource>{resource}</resource>") };
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>"
        ));
        let got = self.read_until("</iq>", WAIT);
        assert!(got.contains("type='result'"), "bind failed: {got}");
        self.jid = between(&got, "<jid>", "</jid>").to_string();
    }
}

/// Negotiates STARTTLS (trusting `ca_pem`) and opens the secured stream.
pub fn starttls(mut c: Client, ca_pem: &[u8]) -> Client {
    let header = c.header();
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    c.send(STARTTLS);
    c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", WAIT);
    c.upgrade_tls(ca_pem, &[]);
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    c
}

/// A login like [`Server::login`] to a port on 127.0.0.1, from any thread.
pub fn login_to(port: u16, ca_pem: &[u8], user: &str, password: &str, resource: &str) -> Client {
    let mut c = starttls(Client::connect_port(port), ca_pem);
    assert!(c.scram(ScramKind::Sha256, user, password), "login failed: {}", c.received());
    c.restart_and_bind(resource);
    c
}

/// PBKDF2, cached: many test clients log in to the same account.
fn salted_password(alg: ring::pbkdf2::Algorithm, len: usize, iterations: u32, salt: &[u8], password: &str) -> Vec<u8> {
    type Cache = Mutex<Vec<((usize, u32, Vec<u8>, String), Vec<u8>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let key = (len, iterations, salt.to_vec(), password.to_string());
    if let Some((_, v)) = cache.lock().unwrap().iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let mut salted = vec![0u8; len];
    ring::pbkdf2::derive(alg, iterations.try_into().unwrap(), salt, password.as_bytes(), &mut salted);
    cache.lock().unwrap().push((key, salted.clone()));
    salted
}

/// One HTTP response as the wire tests read it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    /// Sends `head` (request line and headers, without the blank line) and
    /// `body`, and reads the response (`head_only`: a HEAD, no body follows).
    pub fn http(&mut self, head: &str, body: &[u8]) -> HttpResponse {
        let mut bytes = format!("{head}\r\n\r\n").into_bytes();
        bytes.extend_from_slice(body);
        self.send_bytes(&bytes);
        self.read_http(head.starts_with("HEAD "))
    }

    /// The next `n` bytes after the mark (waiting for them).
    pub fn take_bytes(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.received.len() < self.mark + n {
            assert!(Instant::now() < deadline, "{n} bytes did not come; received {:?}", self.received());
            if self.read_some(deadline.saturating_duration_since(Instant::now())) == 0 {
                panic!("closed before {n} more bytes; received {:?}", self.received());
            }
        }
        let bytes = self.received[self.mark..self.mark + n].to_vec();
        self.mark += n;
        bytes
    }

    /// Reads one response after the mark.
    pub fn read_http(&mut self, head_only: bool) -> HttpResponse {
        let deadline = Instant::now() + WAIT;
        let end = loop {
            if let Some(i) = self.received[self.mark..].windows(4).position(|w| w == b"\r\n\r\n") {
                break self.mark + i + 4;
            }
            assert!(Instant::now() < deadline, "no HTTP response head; received {:?}", self.received());
            if self.read_some(deadline.saturating_duration_since(Instant::now())) == 0 {
                panic!("closed before an HTTP response head; received {:?}", self.received());
            }
        };
        let head = String::from_utf8_lossy(&self.received[self.mark..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let len = if head_only || status == 101 || status / 100 == 1 { 0 } else { len };
        while self.received.len() < end + len {
            assert!(Instant::now() < deadline, "HTTP body incomplete; received {:?}", self.received());
            if self.read_some(deadline.saturating_duration_since(Instant::now())) == 0 {
                panic!("closed within an HTTP body; received {:?}", self.received());
            }
        }
        let body = self.received[end..end + len].to_vec();
        self.mark = end + len;
        HttpResponse { status, headers, body }
    }
}

/// The text between two markers.
pub fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s.find(start).map(|i| i + start.len()).unwrap_or_else(|| panic!("no {start:?} in {s:?}"));
    let to = s[from..].find(end).map(|i| from + i).unwrap_or_else(|| panic!("no {end:?} in {s:?}"));
    &s[from..to]
}

/// The attributes of the server's `<stream:stream>` response header.
pub fn response_header(received: &str) -> Vec<(String, String)> {
    let start = received.find("<stream:stream").unwrap_or_else(|| panic!("no stream header in {received:?}"));
    let end = start + received[start..].find('>').expect("header end");
    let mut attrs = Vec::new();
    let mut rest = &received[start + "<stream:stream".len()..end];
    while let Some(eq) = rest.find("='") {
        let name = rest[..eq].trim().to_string();
        let value_end = rest[eq + 2..].find('\'').expect("attribute value end");
        attrs.push((name, rest[eq + 2..eq + 2 + value_end].to_string()));
        rest = &rest[eq + 2 + value_end + 1..];
    }
    attrs
}

pub fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Asserts the stream ended with exactly this stream error condition, then the
/// closing tag.
pub fn assert_stream_error(received: &str, condition: &str) {
    let expected = format!("<stream:error><{condition} xmlns='{NS_STREAMS_ERRORS}'");
    assert!(received.contains(&expected), "expected {condition}, received {received:?}");
    assert_eq!(received.matches("<stream:error>").count(), 1, "one error only: {received:?}");
    assert!(received.ends_with("</stream:error></stream:stream>"), "stream not closed after the error: {received:?}");
}

/// Connects, sends `input`, and returns everything until the server closes.
pub fn exchange(server: &Server, input: &str) -> String {
    let mut c = server.connect();
    c.send(input);
    c.read_to_close(WAIT)
}

/// A test CA and a certificate it signs for `domain`: (cert PEM, key PEM, CA PEM).
pub fn test_identity(domain: &str) -> (String, String, String) {
    test_identity_for(&[domain])
}

/// [`test_identity`] for a certificate naming every one of `names` (the first is
/// its common name).
pub fn test_identity_for(names: &[&str]) -> (String, String, String) {
    let domain = names[0];
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "wrenhub test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, domain);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem(), ca_cert.pem())
}

/// A loopback port that was free a moment ago, for a listener whose port must be
/// known before the server starts (s2s peers route to each other). Picked at random
/// below Linux's ephemeral range (32768–60999), so outgoing connections of other
/// tests cannot take it meanwhile.
pub fn free_port() -> u16 {
    // Never the same port twice in one test binary: two servers of one test (or
    // of two tests at once) would otherwise race for it.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).unwrap();
        let port = 20000 + u16::from_be_bytes(b) % 12000;
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// `$WRENHUB_PYTHON`, else the venv `./scripts/test` made, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("WRENHUB_PYTHON") {
        return p;
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_string()
}

/// A component stream (XEP-0114) opened for `domain`: the client and the stream id.
pub fn component_stream(server: &Server, domain: &str) -> (Client, String) {
    let port = server.component_port.expect("component listener");
    let mut c = Client::connect_port(port);
    c.send(&format!(
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ));
    let header = c.read_until(">", WAIT);
    let id = between(&header, "id='", "'").to_string();
    (c, id)
}

/// The XEP-0114 handshake digest: hex SHA-1 of the stream id and the secret.
pub fn component_handshake(id: &str, secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{id}{secret}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A connected external component (XEP-0114) for `domain` with `secret`.
pub fn component_client(server: &Server, domain: &str, secret: &str) -> Client {
    let (mut c, id) = component_stream(server, domain);
    c.send(&format!("<handshake>{}</handshake>", component_handshake(&id, secret)));
    c.read_until("<handshake/>", WAIT);
    c
}

/// A client's XEP-0115 disco#info with these `+notify` nodes (XEP-0163 §4.3), and
/// its verification string (sha-1).
pub fn caps_of(notify: &[&str]) -> (String, String) {
    let mut features: Vec<String> = vec!["http://jabber.org/protocol/caps".into(), "urn:xmpp:ping".into()];
    features.extend(notify.iter().map(|n| format!("{n}+notify")));
    features.sort();
    let mut s = String::from("client/pc//wrentest<");
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    let ver = B64.encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()).as_ref());
    let mut query = String::from("<identity category='client' type='pc' name='wrentest'/>");
    for f in &features {
        query.push_str(&format!("<feature var='{f}'/>"));
    }
    (ver, query)
}

/// Available presence advertising caps `ver`.
pub fn caps_presence(ver: &str) -> String {
    format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://wrentest' ver='{ver}'/></presence>")
}

/// Reads a server's disco#info query for caps `ver` (from `server`, a domain) and
/// answers it with `answer` (the features).
pub fn answer_caps_query(c: &mut Client, server: &str, ver: &str, answer: &str) {
    let query = c.read_until(&format!("node='https://wrentest#{ver}'"), WAIT);
    let iq = &query[query.rfind("<iq").expect("the server's caps query")..];
    let (id, from) = (between(iq, "id='", "'").to_string(), between(iq, "from='", "'").to_string());
    assert_eq!(from, server, "{query}");
    c.read_until("</iq>", WAIT);
    c.send(&format!(
        "<iq type='result' to='{server}' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info' \
         node='https://wrentest#{ver}'>{answer}</query></iq>"
    ));
}

/// XEP-0223 publish-options carrying these `<field/>`s (nothing when empty).
pub fn publish_options(fields: &str) -> String {
    if fields.is_empty() {
        return String::new();
    }
    format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>{fields}</x></publish-options>"
    )
}

/// XEP-0363's namespace.
pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";

/// The path (and query) of a URL.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    format!("/{}", rest.split_once('/').expect("a path").1)
}

/// Asks `upload.localhost` for a slot (XEP-0363 §4); returns the stanza answering it.
pub fn ask_slot(c: &mut Client, id: &str, name: &str, size: u64, content_type: &str) -> String {
    c.send(&format!(
        "<iq type='get' id='{id}' to='upload.localhost'><request xmlns='{NS_UPLOAD}' filename='{name}' \
         size='{size}' content-type='{content_type}'/></iq>"
    ));
    let answer = c.read_until(&format!("id='{id}'"), WAIT);
    answer + &c.read_until("</iq>", WAIT)
}

/// A granted slot's PUT and GET paths.
pub fn slot(c: &mut Client, name: &str, size: u64, content_type: &str) -> (String, String) {
    let answer = ask_slot(c, "slot", name, size, content_type);
    assert!(answer.contains("type='result'"), "{answer}");
    let put = between(&answer, "<put url='", "'").replace("&amp;", "&");
    let get = between(&answer, "<get url='", "'").replace("&amp;", "&");
    assert!(put.starts_with("https://localhost:") && get.starts_with("https://localhost:"), "{answer}");
    (path_of(&put), path_of(&get))
}

/// A PUT of `body` to `path` on a new HTTPS connection, of which only the head and
/// the first `sent` bytes are sent: the transfer is in flight.
pub fn start_put(server: &Server, path: &str, content_type: &str, body: &[u8], sent: usize) -> Client {
    let mut h = server.https();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    h.send_bytes(head.as_bytes());
    h.send_bytes(&body[..sent]);
    h
}

/// Polls `holds` every 20 ms until it returns true; panics after `WAIT` saying
/// what never happened.
pub fn wait_until(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !holds() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
