//! Board budgets: at a profile's full session pool (authenticated TLS sessions),
//! the server's RSS stays within the memory share the board's `board.toml` states,
//! and one connection more is refused with `resource-constraint`.

mod common;
use common::*;
use std::sync::Arc;

/// A number in `boards/BOARD/FILE` (`board.toml`: the board's facts;
/// `wrenhub.toml`: its profile).
fn board_file_value(board: &str, file: &str, key: &str) -> u64 {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards").join(board).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
}

fn board_value(board: &str, key: &str) -> u64 {
    board_file_value(board, "board.toml", key)
}

fn fill_pool(board: &str, sessions: usize) {
    let budget_kib = board_value(board, "memory_budget_mib") * 1024;
    let config = format!("board = '{board}'\nmax_resources_per_account = {sessions}\n");
    let server = Arc::new(Server::start_with(&config));
    server.add_user("fill", "pw");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                (t..sessions).step_by(4).map(|i| server.login("fill", "pw", &format!("r{i}"))).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut clients: Vec<Client> = threads.into_iter().flat_map(|t| t.join().expect("logins")).collect();
    // Every session is served, the first as well as the last.
    for c in clients.iter_mut().step_by(sessions / 8) {
        c.sync("alive");
    }
    let rss = server.rss_kib();
    eprintln!("{board}: {sessions} TLS sessions, RSS {rss} KiB, budget {budget_kib} KiB");
    assert!(rss < budget_kib, "{board}: RSS {rss} KiB over the budget of {budget_kib} KiB");
    // The pool is full: one more connection is refused, and nothing breaks.
    let got = exchange(&server, HEADER);
    assert_stream_error(&got, "resource-constraint");
}

/// T3, the worst case before authentication: the profile's whole unauthenticated
/// share, each connection holding the largest partial stanza of empty elements its
/// limits allow, stays within the board's memory; and a real login still works.
fn unauthenticated_share_full_of_partial_stanzas(board: &str) {
    let budget_kib = board_value(board, "memory_budget_mib") * 1024;
    let server = Server::start_with(&format!("board = '{board}'\n"));
    server.add_user("real", "pw");
    let profile: toml::Table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards").join(board).join("wrenhub.toml"),
    )
    .unwrap()
    .parse()
    .unwrap();
    let share = profile["max_unauthenticated"].as_integer().unwrap() as usize;
    let limit = profile.get("max_preauth_stanza_size").and_then(|v| v.as_integer()).unwrap_or(8192) as usize;
    // As many `<a/>` as the parsed-table budget (the limit, ~40 bytes a node) allows.
    let partial = format!("<message>{}", "<a/>".repeat(limit / 48));
    let mut held: Vec<Client> = (0..share).map(|_| server.connect()).collect();
    for c in &mut held {
        c.send(HEADER);
        c.send(&partial);
    }
    // Each stanza completed: the server read every partial one (the answer is
    // not-authorized, a stanza before authentication).
    for c in &mut held {
        c.send("</message>");
        assert_stream_error(&c.read_to_close(WAIT), "not-authorized");
    }
    let peak = server.peak_rss_kib();
    eprintln!("{board}: {share} unauthenticated connections × {limit} B partial stanzas, peak RSS {peak} KiB");
    assert!(peak < budget_kib, "{board}: peak RSS {peak} KiB over the budget of {budget_kib} KiB");
    let mut real = server.login("real", "pw", "r");
    real.sync("alive");
}

#[test]
fn openwrt_router_unauthenticated_share_full_of_partial_stanzas_stays_within_budget() {
    unauthenticated_share_full_of_partial_stanzas("openwrt-router");
}

#[test]
fn raspberry_pi_zero_unauthenticated_share_full_of_partial_stanzas_stays_within_budget() {
    unauthenticated_share_full_of_partial_stanzas("raspberry-pi-zero");
}

/// T3: one login with the fullest offline backlog the profile keeps stays within
/// the budget (the backlog comes in batches of half the session's queue).
#[test]
fn openwrt_router_login_with_a_full_offline_backlog_stays_within_budget() {
    let budget_kib = board_value("openwrt-router", "memory_budget_mib") * 1024;
    let server = Server::start_with("board = 'openwrt-router'\n");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "r");
    let body = "x".repeat(2500);
    let mut stored = 0;
    for i in 0..200 {
        romeo.send(&format!("<message to='juliet@localhost' id='o{i}'><body>{body}</body></message>"));
        if romeo.sync(&format!("s{i}")).contains("<service-unavailable ") {
            break;
        }
        stored += 1;
    }
    assert!(stored >= 40, "the profile keeps 128 KiB per account: {stored} messages of 2.5 KB");
    let mut juliet = server.login("juliet", "pw", "r");
    juliet.send("<presence/>");
    let mut received = 0;
    while received < stored {
        let got = juliet.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
        received += got.matches("<body>").count();
        let start = got.rfind("<iq ").unwrap();
        let id = between(&got[start..], "id='", "'").to_string();
        juliet.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    }
    assert_eq!(received, stored);
    let peak = server.peak_rss_kib();
    assert!(peak < budget_kib, "peak RSS {peak} KiB over the budget of {budget_kib} KiB");
}

/// The profile's whole HTTP share in uploads at once (each PUT half-way through its
/// body) stays within the board's memory; one connection more is answered `503`;
/// then every upload completes and reads back whole.
fn http_share_full_of_uploads(board: &str) {
    let budget_kib = board_value(board, "memory_budget_mib") * 1024;
    let share = board_file_value(board, "wrenhub.toml", "http_max_connections") as usize;
    let server = Server::start_with(&format!("board = '{board}'\n"));
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    let body: Vec<u8> = (0..1_048_576u32).map(|i| (i % 241) as u8).collect();
    let mut uploads = Vec::new();
    for i in 0..share {
        let (put, get) = slot(&mut juliet, &format!("f{i}.bin"), body.len() as u64, "application/octet-stream");
        uploads.push((start_put(&server, &put, "application/octet-stream", &body, 65536), get));
    }
    // Once every PUT holds its slot of the share, one request more is refused.
    wait_until(&format!("{board}: the HTTP share full, a request refused with 503"), || {
        let mut probe = server.https();
        probe.http("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close", b"").status == 503
    });
    let rss = server.rss_kib();
    eprintln!("{board}: {share} uploads in flight, RSS {rss} KiB, budget {budget_kib} KiB");
    assert!(rss < budget_kib, "{board}: RSS {rss} KiB over the budget of {budget_kib} KiB");
    for (h, _) in &mut uploads {
        h.send_bytes(&body[65536..]);
        assert_eq!(h.read_http(false).status, 201);
    }
    for (h, get) in &mut uploads {
        let got = h.http(&format!("GET {get} HTTP/1.1\r\nHost: localhost"), b"");
        assert!(got.status == 200 && got.body == body, "{get}: whole");
    }
    let peak = server.peak_rss_kib();
    assert!(peak < budget_kib, "{board}: peak RSS {peak} KiB over the budget of {budget_kib} KiB");
}

#[test]
fn openwrt_router_http_share_full_of_uploads_stays_within_budget() {
    http_share_full_of_uploads("openwrt-router");
}

#[test]
fn raspberry_pi_zero_http_share_full_of_uploads_stays_within_budget() {
    http_share_full_of_uploads("raspberry-pi-zero");
}

#[test]
fn openwrt_router_full_pool_stays_within_its_memory_budget() {
    fill_pool("openwrt-router", 128);
}

#[test]
fn raspberry_pi_zero_full_pool_stays_within_its_memory_budget() {
    fill_pool("raspberry-pi-zero", 256);
}

#[test]
fn cross_toml_covers_every_board_target_and_the_documented_command_names_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cross: toml::Table =
        std::fs::read_to_string(root.join("cross.toml")).unwrap().parse().expect("cross.toml is TOML");
    let targets = cross.get("target").and_then(|t| t.as_table()).expect("[target.*] tables");
    for entry in std::fs::read_dir(root.join("boards")).unwrap() {
        let board = entry.unwrap().path();
        if !board.join("board.toml").exists() {
            continue;
        }
        let name = board.file_name().unwrap().to_str().unwrap().to_string();
        let target = std::fs::read_to_string(board.join("board.toml"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("target = ").map(|t| t.trim_matches('"').to_string()))
            .expect("target in board.toml");
        assert!(targets.contains_key(&target), "cross.toml has no [target.{target}] for {name}");
    }
    let armv6 = targets["arm-unknown-linux-musleabihf"].as_table().unwrap();
    assert!(armv6.contains_key("build-std"), "ARMv6 needs build-std");
    // cross reads Cross.toml unless CROSS_CONFIG names the file: the README says so.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("CROSS_CONFIG=cross.toml cross build --release --target"), "README's cross command");
}
