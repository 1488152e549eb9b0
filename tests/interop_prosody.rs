//! Federation with a real peer server: Debian's Prosody 0.12, started by the test
//! on loopback with its own config, data dir and ports (tests/interop/prosody_peer.py),
//! with slixmpp clients on both sides (tests/interop/federation.py): chat both ways
//! and a presence subscription in each direction, authenticated by certificates
//! (SASL EXTERNAL both ways) and by dialback; group chat in each other's rooms
//! (tests/interop/muc_federation.py); PEP and OMEMO keys both ways
//! (tests/interop/pep_federation.py); message archives with stanza-ids on both
//! sides (tests/interop/mam_federation.py). `./scripts/test` installs prosody and
//! slixmpp; without them these tests fail, they never skip.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs wrenhub (hub.test) against Prosody (prosody.test) in `mode`; returns
/// wrenhub's server for the log checks.
fn federate(mode: &str) -> Server {
    with_prosody("prosody_federation.py", mode).0
}

/// Runs `script` (tests/interop) with wrenhub for hub.test (its group chat at
/// conference.hub.test) and the script's Prosody for prosody.test (with
/// conference.prosody.test, which its certificate names too). Returns wrenhub's
/// server and the script's output.
fn with_prosody(script: &str, mode: &str) -> (Server, String) {
    with_prosody_and(script, mode, "")
}

/// [`with_prosody`] with more top-level lines in wrenhub's config (`config`, each
/// ending in a newline; they go before its `[[s2s_route]]` tables).
fn with_prosody_and(script: &str, mode: &str, config: &str) -> (Server, String) {
    let work = tempfile::tempdir().unwrap();
    let (cert, key, ca) = test_identity_for(&["prosody.test", "conference.prosody.test"]);
    let (cert_path, key_path, ca_path) =
        (work.path().join("prosody.pem"), work.path().join("prosody.key"), work.path().join("prosody-ca.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&ca_path, ca).unwrap();
    let (prosody_c2s, prosody_s2s) = (free_port(), free_port());
    let trust = if mode == "external" { format!("s2s_ca_file = '{}'\n", ca_path.display()) } else { String::new() };
    let server = Server::start_with(&format!(
        "domain = 'hub.test'\nfederation = true\ns2s_listen = ['127.0.0.1:0']\ns2s_system_roots = false\n{trust}\
         {config}[[s2s_route]]\ndomain = 'prosody.test'\naddress = '127.0.0.1:{prosody_s2s}'\n\
         [[s2s_route]]\ndomain = 'conference.prosody.test'\naddress = '127.0.0.1:{prosody_s2s}'\n"
    ));
    server.add_user("romeo", "montague");
    server.add_user("benvolio", "cousin");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let hub_ca = server.data_dir().join("tls/ca.pem");
    let mut child = Command::new(python())
        .arg(&path)
        .args(["--work"])
        .arg(work.path())
        .args(["--mode", mode, "--hub-domain", "hub.test"])
        .args(["--hub-c2s", &server.port.to_string()])
        .args(["--hub-s2s", &server.s2s_port.expect("s2s port").to_string()])
        .arg("--hub-ca")
        .arg(&hub_ca)
        .args(["--prosody-c2s", &prosody_c2s.to_string(), "--prosody-s2s", &prosody_s2s.to_string()])
        .arg("--prosody-cert")
        .arg(&cert_path)
        .arg("--prosody-key")
        .arg(&key_path)
        .arg("--prosody-ca")
        .arg(&ca_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    // The script bounds every wait itself; this only catches a stuck interpreter.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} ({mode}) failed:\n{text}\n--- wrenhub log ---\n{}", server.log());
    println!("{mode}: {}", text.lines().rev().find(|l| l.starts_with("prosody:")).unwrap_or(""));
    (server, text)
}

#[test]
fn prosody_federates_with_certificates_sasl_external_both_ways() {
    let server = federate("external");
    server.wait_for_log("s2s link to prosody.test established (SASL EXTERNAL", WAIT);
    server.wait_for_log("prosody.test authenticated by certificate (SASL EXTERNAL)", WAIT);
}

#[test]
fn prosody_federates_with_dialback_both_ways() {
    let server = federate("dialback");
    server.wait_for_log("s2s link to prosody.test established (dialback", WAIT);
    server.wait_for_log("prosody.test authenticated by dialback", WAIT);
}

#[test]
fn a_prosody_user_joins_a_wrenhub_room_and_a_wrenhub_user_a_prosody_room_with_certificates() {
    // The group-chat service speaks for its own domain over s2s (its own link,
    // authenticated by the name the hub's certificate carries for it).
    let (server, _) = with_prosody("prosody_muc_federation.py", "external");
    server.wait_for_log("s2s link to prosody.test established (SASL EXTERNAL", WAIT);
    server.wait_for_log("from conference.hub.test)", WAIT);
    server.wait_for_log("conference.prosody.test authenticated by certificate", WAIT);
}

#[test]
fn a_prosody_user_joins_a_wrenhub_room_and_a_wrenhub_user_a_prosody_room_with_dialback() {
    let (server, _) = with_prosody("prosody_muc_federation.py", "dialback");
    server.wait_for_log("from conference.hub.test)", WAIT);
    server.wait_for_log("conference.prosody.test authenticated by dialback", WAIT);
}

#[test]
fn prosody_and_wrenhub_users_fetch_each_others_omemo_keys_and_hear_pep_events() {
    // XEP-0163 with OMEMO's nodes (XEP-0384) across servers: a stranger fetches the
    // other's open device list and bundle, both ways; then, as mutual contacts with
    // devicelist+notify in their caps, each hears the other's new device list. The
    // last needs wrenhub to keep a remote contact's presence and caps.
    let (server, out) = with_prosody("prosody_pep_federation.py", "external");
    for part in ["part 1: OK", "part 2: OK", "part 3a: OK", "part 3b: OK"] {
        assert!(out.lines().any(|l| l.starts_with(part)), "no {part:?} line in:\n{out}");
    }
    server.wait_for_log("s2s link to prosody.test established (SASL EXTERNAL", WAIT);
    server.wait_for_log("prosody.test authenticated by certificate (SASL EXTERNAL)", WAIT);
}

#[test]
fn a_prosody_users_messages_are_archived_with_wrenhubs_stanza_ids_and_a_forged_one_is_taken_out() {
    // XEP-0313 and XEP-0359 across servers, the archive on: what a Prosody user
    // sends a wrenhub user reaches him with his archive's stanza-id, the id of the
    // message in his archive, which has his answers too; a stanza-id by his account
    // that she sends reaches neither him nor his archive (a third party's beside it
    // does: it crossed s2s). Prosody runs mod_mam: it archived both directions for
    // her, with its own stanza-ids on his answers.
    let (server, out) = with_prosody_and("prosody_mam_federation.py", "external", "archive = true\n");
    for line in [
        "live: 3 messages from juliet@prosody.test reached romeo@hub.test with his stanza-id (all different, \
         the forged one taken out, the witness's kept); 3 reached juliet@prosody.test with none by him, with hers",
        "disco: romeo@hub.test has urn:xmpp:mam:2",
        "archive: romeo@hub.test has all 6 messages with juliet@prosody.test in order",
        "peer archive: juliet@prosody.test has all 6 messages with romeo@hub.test in order",
        "prosody: mod_mam archived 3 message(s) to romeo@hub.test and 3 from him",
    ] {
        assert!(out.lines().any(|l| l.starts_with(line)), "no line starting {line:?} in:\n{out}");
    }
    server.wait_for_log("s2s link to prosody.test established (SASL EXTERNAL", WAIT);
    server.wait_for_log("prosody.test authenticated by certificate (SASL EXTERNAL)", WAIT);
}
