//! Interop with real client libraries: slixmpp (Python, asyncio), and aioxmpp as a
//! second library for stream management, against the real binary on loopback, TLS
//! verified against the server's local CA.
//!
//! Each check is a script in `tests/interop/`; it exits 0 on success, or prints what
//! failed and slixmpp's XML log. `./scripts/test` installs slixmpp into
//! `target/interop-venv` and points `WRENHUB_PYTHON` at it (default: `python3`).
//! A Python without slixmpp fails these tests; they never skip.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longer than any script's own 20 s timeout: only a stuck interpreter hits it.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Panics, saying how to install them, unless `$WRENHUB_PYTHON` can import slixmpp
/// and aioxmpp.
fn require_slixmpp() {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    let result = VERSION.get_or_init(|| {
        let out = Command::new(python())
            .args(["-c", "import slixmpp, aioxmpp; print(slixmpp.__version__, aioxmpp.__version__)"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
    if let Err(e) = result {
        panic!(
            "`{} -c 'import slixmpp, aioxmpp'` failed: {e}\nThe interop tests need slixmpp and aioxmpp: run ./scripts/test \
             (it installs both into target/interop-venv and sets WRENHUB_PYTHON), or set \
             WRENHUB_PYTHON=$PWD/target/interop-venv/bin/python after running it once.",
            python()
        );
    }
}

/// Runs `tests/interop/SCRIPT` against `server` with `args` after the connection
/// options; panics with the script's output and the server's log unless it exits 0.
fn run_check(server: &Server, script: &str, args: &[&str]) -> String {
    require_slixmpp();
    run_check_with(&python(), server, script, args)
}

/// Debian 12's own Python with its python3-slixmpp 1.8.3 (the library poezio runs
/// on), which ./scripts/test installs.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

fn run_check_with(python: &str, server: &Server, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let ca = server.data_dir().join("tls/ca.pem");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (out_dir.path().join("stdout"), out_dir.path().join("stderr"));
    let mut child = Command::new(python)
        .arg(&path)
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--tls-port", &server.tls_port.to_string(), "--ca"])
        .arg(&ca)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    print!("{stdout}");
    if status.is_none_or(|s| !s.success()) {
        panic!(
            "{script} {args:?} {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
            status.map_or("was killed after 60 s".to_string(), |s| format!("failed: {s}")),
            server.log()
        );
    }
    stdout
}

#[test]
fn slixmpp_starttls_scram_sha256_login_binds_and_pings_the_server() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let out = run_check(&server, "login.py", &["--jid", "juliet@localhost/balcony", "--password", "balcony"]);
    assert!(out.contains("SCRAM-SHA-256 over TLSv1.3 (STARTTLS)"), "{out}");
}

#[test]
fn slixmpp_scram_sha1_login() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    run_check(
        &server,
        "login.py",
        &["--jid", "juliet@localhost/balcony", "--password", "balcony", "--mech", "SCRAM-SHA-1"],
    );
}

#[test]
fn slixmpp_plain_login_inside_tls() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    run_check(&server, "login.py", &["--jid", "juliet@localhost/balcony", "--password", "balcony", "--mech", "PLAIN"]);
}

#[test]
fn slixmpp_direct_tls_login_without_alpn() {
    // slixmpp's own Direct TLS offers no ALPN; the server accepts that.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let out =
        run_check(&server, "login.py", &["--jid", "juliet@localhost/balcony", "--password", "balcony", "--direct-tls"]);
    assert!(out.contains("(Direct TLS)"), "{out}");
}

#[test]
fn slixmpp_direct_tls_login_with_alpn_xmpp_client() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony", "--direct-tls", "--alpn"];
    let out = run_check(&server, "login.py", &args);
    assert!(out.contains("(Direct TLS)"), "{out}");
}

#[test]
fn slixmpp_two_resources_of_one_account_each_receive_at_their_full_jid() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let args = ["--jid", "juliet@localhost/balcony", "--jid2", "juliet@localhost/garden", "--password", "balcony"];
    run_check(&server, "two_resources.py", &args);
}

#[test]
fn slixmpp_message_between_accounts_to_full_and_bare_jid() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    run_check(&server, "message.py", &[&args[..], &peer[..]].concat());
}

#[test]
fn slixmpp_stream_management_resumes_a_dropped_session_with_nothing_lost() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    run_check(&server, "sm_resume.py", &[&args[..], &peer[..]].concat());
    server.wait_for_log("juliet@localhost/balcony resumed", WAIT);
}

#[test]
fn debian_slixmpp_1_8_with_default_settings_logs_in_on_its_first_connection() {
    // poezio's library binds channels with tls-unique only: its -PLUS tries and
    // the "y" downgrade signal are refused without using up the stream's attempts.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let out = run_check_with(DEBIAN_PYTHON, &server, "default_login.py", &args);
    assert!(out.contains("slixmpp 1.8.3:") && out.contains("on the first connection"), "{out}");
    assert!(out.contains("tried SCRAM-SHA-256-PLUS"), "the walk through the mechanisms: {out}");
}

#[test]
fn debian_poezio_in_tmux_logs_in_on_its_first_connection() {
    // The terminal client itself (issue 19): it used to show policy-violation and
    // need a second connection.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let out = run_check_with(DEBIAN_PYTHON, &server, "poezio_login.py", &args);
    assert!(out.contains("logged in with PLAIN on the first connection (1 TCP connection, no stream error)"), "{out}");
}

#[test]
fn debian_profanity_in_tmux_creates_a_room_and_chats_in_it() {
    // A real terminal client (issue 15): /join creates the room, /room accept
    // unlocks it, and what a second occupant sends shows on Profanity's screen.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let out = run_check_with(DEBIAN_PYTHON, &server, "profanity_muc.py", &[&args[..], &peer[..]].concat());
    assert!(
        out.contains("joined lobby@conference.localhost") && out.contains("sent and received in the room"),
        "{out}"
    );
}

#[test]
fn pypi_slixmpp_with_default_settings_logs_in_on_its_first_connection() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let out = run_check(&server, "default_login.py", &["--jid", "juliet@localhost/balcony", "--password", "balcony"]);
    assert!(out.contains("on the first connection"), "{out}");
}

#[test]
fn slixmpp_creates_configures_and_chats_in_a_group_chat() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let out = run_check(&server, "muc.py", &[&args[..], &peer[..]].concat());
    assert!(
        out.contains("created, configured, joined and chatted") && out.contains("kicked, banned, destroyed"),
        "{out}"
    );
}

#[test]
fn slixmpp_pep_avatars_bookmarks_omemo_keys_items_and_displayed_markers() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    server.add_user("nurse", "angelica");
    let args = ["--jid", "juliet@localhost/balcony", "--jid2", "juliet@localhost/garden", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let nurse = ["--nurse-jid", "nurse@localhost/kitchen", "--nurse-password", "angelica"];
    let out = run_check(&server, "pep.py", &[&args[..], &peer[..], &nurse[..]].concat());
    for line in [
        "roster: juliet@localhost and romeo@localhost subscribed both ways",
        "avatar: published and seen",
        "bookmarks: garden@conference.localhost added, notified to garden, retrieved there; refused to romeo",
        "omemo: device 1234 and its bundle read by a stranger, axolotl and omemo:2",
        "items: max_items=2 gave the last two of three; the retraction reached romeo",
        "mds: marker for romeo@localhost reached garden; romeo refused",
        "bookmarks (XEP-0048): private storage shows garden@conference.localhost; balcony@conference.localhost stored",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn slixmpp_pages_through_the_message_archive_forward_and_back_from_the_newest_with_stanza_ids() {
    // XEP-0313 with slixmpp's xep_0313 plugin: 30 messages both ways (and one with
    // <no-store/>, one from a third account), paged with a `with` filter in RSM
    // pages of 10 from the oldest and from the newest; each result's id is the
    // XEP-0359 stanza-id the message was delivered with.
    let server = Server::start_with("archive = true\n");
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    server.add_user("nurse", "angelica");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let nurse = ["--nurse-jid", "nurse@localhost/kitchen", "--nurse-password", "angelica"];
    let paging = ["--messages", "30", "--page", "10"];
    let out = run_check(&server, "mam.py", &[&args[..], &peer[..], &nurse[..], &paging[..]].concat());
    for line in [
        "live: 16 messages received by juliet@localhost carried her stanza-id, all different; the no-store one \
         none; 15 received by romeo@localhost carried his",
        "disco: juliet@localhost has urn:xmpp:mam:2",
        "forward: 30 messages with romeo@localhost in pages of 10, 10, 10, in order, complete on the last",
        "backward: 30 messages with romeo@localhost from the newest page back, newest first, the same ids",
        "all: 31 messages archived for juliet@localhost, the nurse's too, the no-store one not",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn aioxmpp_resumes_a_dropped_session_and_nothing_is_lost_or_doubled() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let out = run_check(&server, "aioxmpp_sm_resume.py", &[&args[..], &peer[..]].concat());
    assert!(out.contains("OK (aioxmpp"), "{out}");
    server.wait_for_log("juliet@localhost/balcony resumed", WAIT);
}

#[test]
fn slixmpp_wrong_password_fails_with_not_authorized() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        let args = ["--jid", "juliet@localhost/balcony", "--password", "nurse", "--mech", mech];
        run_check(&server, "wrong_password.py", &args);
    }
}

/// One external component (XEP-0114) for `gw.localhost` with the secret `s3cret`.
const GW: &str = "[[component]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n";

/// The server's component port, as the scripts' `--component-port`.
fn component_port(server: &Server) -> String {
    server.component_port.expect("the server listens for components").to_string()
}

#[test]
fn slixmpp_component_echoes_a_client_message_back_through_the_server() {
    let server = Server::start_with(GW);
    server.add_user("juliet", "balcony");
    let port = component_port(&server);
    let component = ["--component-port", &port, "--domain", "gw.localhost", "--secret", "s3cret"];
    let client = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    run_check(&server, "component_echo.py", &[&component[..], &client[..]].concat());
}

#[test]
fn slixmpp_component_with_a_wrong_secret_gets_stream_error_not_authorized() {
    let server = Server::start_with(GW);
    let port = component_port(&server);
    let args = ["--component-port", &port, "--domain", "gw.localhost", "--secret", "wrong"];
    run_check(&server, "component_wrong_secret.py", &args);
}

#[test]
fn slixmpp_second_component_for_a_domain_gets_conflict_and_the_first_keeps_relaying() {
    let server = Server::start_with(GW);
    server.add_user("juliet", "balcony");
    let port = component_port(&server);
    let component = ["--component-port", &port, "--domain", "gw.localhost", "--secret", "s3cret"];
    let client = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    run_check(&server, "component_conflict.py", &[&component[..], &client[..]].concat());
}

#[test]
fn slixmpp_http_upload_puts_a_file_and_gets_it_back() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let out = run_check(&server, "upload.py", &[&args[..], &peer[..]].concat());
    assert!(out.contains("the same 204800 bytes"), "{out}");
}

#[test]
fn slixmpp_socks5_bytestream_sends_a_file_through_the_proxy() {
    let server = Server::start_with("proxy65_listen = ['127.0.0.1:0']\n");
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let args = ["--jid", "juliet@localhost/balcony", "--password", "balcony"];
    let peer = ["--peer-jid", "romeo@localhost/orchard", "--peer-password", "montague"];
    let out = run_check(&server, "socks5.py", &[&args[..], &peer[..]].concat());
    assert!(out.contains("streamhost-used proxy.localhost"), "{out}");
    assert!(out.contains("the same 307200 bytes through proxy.localhost"), "{out}");
}
