//! A real browser on the hub (RFC 7395 XMPP over WebSocket, `http_files_dir`):
//! headless Chromium (Debian's `chromium`) loads Converse.js, which the hub itself
//! serves as static files, logs in over wss, and exchanges a message with a slixmpp
//! peer; puppeteer-core checks the page (`tests/interop/browser/run.js`) and the peer
//! checks the wire (`tests/interop/browser/peer.py`, which waits for Converse's
//! delivery receipt of its answer); then Converse sends a file through the hub's
//! XEP-0363 upload service, and the peer downloads it from the link it gets.
//!
//! `./scripts/test` runs `tests/interop/browser/install` (Chromium, and the pinned npm
//! packages `converse.js` and `puppeteer-core` in `target/browser/`); without them
//! this test fails saying so: it never skips.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longer than run.js's and peer.py's own limits: only a stuck process hits it.
const PROCESS_LIMIT: Duration = Duration::from_secs(90);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/browser").join(name)
}

/// Panics, saying how to install them, unless Chromium, Converse.js and
/// puppeteer-core are in place.
fn require_browser() {
    let www = browser_dir().join("www");
    for needed in [
        Path::new("/usr/bin/chromium").to_path_buf(),
        www.join("index.html"),
        www.join("dist/converse.min.js"),
        browser_dir().join("node_modules/puppeteer-core/package.json"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: the browser test needs Chromium, Converse.js and puppeteer-core; run \
             tests/interop/browser/install (./scripts/test does)",
            needed.display()
        );
    }
}

/// Spawns a child with its stdout lines sent to a channel (and kept) and its
/// stderr in a file.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watched {
    fn spawn(mut command: Command) -> Watched {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join("stderr");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched { child, lines, stdout: Vec::new(), stderr, _dir: dir }
    }

    /// Reads stdout until a line contains `text` (true), or the process ends or the
    /// time is up (false).
    fn wait_for_line(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.stdout.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the exit (killing the process after `timeout`); the rest of stdout.
    fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.stdout.push(line);
        }
        status
    }

    fn report(&self, name: &str, status: Option<ExitStatus>) -> String {
        format!(
            "--- {name}: {} ---\n{}\n--- {name} stderr ---\n{}",
            status.map_or("killed after its time".to_string(), |s| s.to_string()),
            self.stdout.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn converse_js_in_headless_chromium_logs_in_over_wss_and_chats_with_a_slixmpp_peer() {
    require_browser();
    let www = browser_dir().join("www");
    let server = Server::start_with(&format!("http_files_dir = {:?}\n", www.display().to_string()));
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let http_port = server.http_port.expect("an HTTPS listener");
    // What Converse uploads (XEP-0363) and the peer downloads again.
    let file = server.dir.path().join("notes.txt");
    let content: String = (0..2000).map(|i| format!("line {i} of the notes\n")).collect();
    std::fs::write(&file, &content).expect("write the file to upload");
    let ca = server.data_dir().join("tls/ca.pem");

    let mut peer_command = Command::new(python());
    peer_command
        .arg(script("peer.py"))
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--tls-port", &server.tls_port.to_string(), "--ca"])
        .arg(&ca)
        .args(["--jid", "romeo@localhost/orchard", "--password", "montague"])
        .args(["--browser-jid", "juliet@localhost", "--expect", "Hello from Converse"])
        .args(["--answer", "Hello from slixmpp", "--timeout", "60", "--expect-file"])
        .arg(&file)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let mut peer = Watched::spawn(peer_command);
    if !peer.wait_for_line("peer.py: online as", Duration::from_secs(30)) {
        let status = peer.finish(Duration::from_secs(1));
        panic!(
            "the slixmpp peer did not come online\n{}\n--- server log ---\n{}",
            peer.report("peer.py", status),
            server.log()
        );
    }

    // The hub's certificate names localhost; the page's origin is the hub's own
    // (https://localhost:PORT), which websocket_origins allows by default.
    let origin = format!("https://localhost:{http_port}");
    let url = format!(
        "{origin}/index.html?jid={}&password={}&websocket_url={}",
        encode("juliet@localhost"),
        encode("balcony"),
        encode(&format!("wss://localhost:{http_port}/xmpp-websocket"))
    );
    let screenshot = server.dir.path().join("converse.png");
    let mut browser_command = Command::new("node");
    browser_command
        .arg(script("run.js"))
        .args([url.as_str(), "romeo@localhost", "Hello from slixmpp", "Hello from Converse"])
        .args(["--timeout", "50", "--screenshot"])
        .arg(&screenshot)
        .arg("--upload")
        .arg(&file)
        .env("WRENHUB_BROWSER_DIR", browser_dir());
    let mut browser = Watched::spawn(browser_command);
    let browser_status = browser.finish(PROCESS_LIMIT);
    let peer_status = peer.finish(Duration::from_secs(15));
    let report = format!(
        "{}\n{}\n--- server log ---\n{}",
        browser.report("run.js", browser_status),
        peer.report("peer.py", peer_status),
        server.log()
    );
    print!("{}\n{}", browser.stdout.join("\n"), peer.stdout.join("\n"));
    assert!(browser_status.is_some_and(|s| s.success()), "the browser's checks failed\n{report}");
    assert!(peer_status.is_some_and(|s| s.success()), "the slixmpp peer's checks failed\n{report}");

    // What each side saw, as the scripts print it.
    let page = browser.stdout.join("\n");
    for step in [
        "page loaded: 200 text/html",
        "Converse loaded from the hub",
        "Converse connected over WebSocket, bound as juliet@localhost/",
        // Browsers have no TLS channel binding: the strongest mechanism without it.
        "logged in with SASL SCRAM-SHA-256",
        "sent \"Hello from Converse\"",
        "received \"Hello from slixmpp\" from romeo@localhost/orchard",
        "Converse sent the delivery receipt",
        "uploaded notes.txt: 201",
        "sent its link (XEP-0066): https://localhost:",
    ] {
        assert!(page.contains(step), "run.js did not report {step:?}\n{report}");
    }
    let wire = peer.stdout.join("\n");
    assert!(wire.contains("received 'Hello from Converse' from juliet@localhost/"), "{report}");
    assert!(wire.contains("acknowledged the answer (receipt)"), "{report}");
    assert!(wire.contains("bytes, as uploaded") && wire.contains(&format!(": {} bytes", content.len())), "{report}");

    // The hub itself served the page and the client, and upgraded a connection.
    let log = server.log();
    for line in ["HTTP Get /index.html", "HTTP Get /dist/converse.min.js", "XMPP over WebSocket", "HTTP Put /"] {
        assert!(log.contains(line), "the server log has no {line:?}\n{log}");
    }
}
