//! Board budgets: at a profile's full session pool (authenticated TLS sessions),
//! the server's RSS stays within the memory share the board's `board.toml` states,
//! and one connection more is refused with `resource-constraint`.

mod common;
use common::*;
use std::sync::Arc;

fn board_value(board: &str, key: &str) -> u64 {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards").join(board).join("board.toml");
    let text = std::fs::read_to_string(&path).expect("board.toml");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
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
