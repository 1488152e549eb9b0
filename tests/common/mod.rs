//! The wire-test harness: starts the real `wrenhub` binary on 127.0.0.1 port 0 with
//! a temporary data dir, learns the port from its log, and speaks bytes over TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A well-formed client stream header for `localhost`.
pub const HEADER: &str =
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

pub const NS_STREAMS_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// A running server process.
pub struct Server {
    child: Child,
    pub port: u16,
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
        let config_path = dir.path().join("wrenhub.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wrenhub"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args([
                "--c2s-listen",
                "127.0.0.1:0",
                "--log-level",
                "debug",
                "--data-dir",
            ])
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
                if let Some(rest) = line.split("listening for clients on 127.0.0.1:").nth(1) {
                    let _ = tx.send(rest.trim().parse::<u16>().ok());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!(
                    "server did not report its port; log: {:?}",
                    log.lock().unwrap()
                )
            });
        Server {
            child,
            port,
            dir,
            log,
        }
    }

    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            received: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
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

    /// VmRSS of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
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

/// A raw TCP client.
pub struct Client {
    pub stream: TcpStream,
    received: Vec<u8>,
}

impl Client {
    pub fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("send");
    }

    /// Sends one byte per write.
    pub fn send_bytewise(&mut self, data: &str) {
        for b in data.as_bytes() {
            self.stream
                .write_all(std::slice::from_ref(b))
                .expect("send byte");
        }
    }

    /// Everything received so far, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads until `pattern` has been received; panics with what came after `timeout`.
    pub fn read_until(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if self.received().contains(pattern) {
                return self.received();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {pattern:?}; received {:?}",
                self.received()
            );
            if self.read_some(left) == 0 {
                panic!(
                    "connection closed before {pattern:?}; received {:?}",
                    self.received()
                );
            }
        }
    }

    /// Reads until the server closes the connection; returns everything received.
    pub fn read_to_close(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "server did not close the connection; received {:?}",
                self.received()
            );
            if self.read_some(left) == 0 {
                return self.received();
            }
        }
    }

    fn read_some(&mut self, timeout: Duration) -> usize {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.received.extend_from_slice(&buf[..n]);
                n
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                usize::MAX
            }
            // A reset after the server closed counts as closed.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// The attributes of the server's `<stream:stream>` response header.
pub fn response_header(received: &str) -> Vec<(String, String)> {
    let start = received
        .find("<stream:stream")
        .unwrap_or_else(|| panic!("no stream header in {received:?}"));
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
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts the stream ended with exactly this stream error condition, then the
/// closing tag, and that the server closed the connection.
pub fn assert_stream_error(received: &str, condition: &str) {
    let expected = format!("<stream:error><{condition} xmlns='{NS_STREAMS_ERRORS}'");
    assert!(
        received.contains(&expected),
        "expected {condition}, received {received:?}"
    );
    assert_eq!(
        received.matches("<stream:error>").count(),
        1,
        "one error only: {received:?}"
    );
    assert!(
        received.ends_with("</stream:error></stream:stream>"),
        "stream not closed after the error: {received:?}"
    );
}

/// Connects, sends `input`, and returns everything until the server closes.
pub fn exchange(server: &Server, input: &str) -> String {
    let mut c = server.connect();
    c.send(input);
    c.read_to_close(Duration::from_secs(10))
}

pub const WAIT: Duration = Duration::from_secs(10);
