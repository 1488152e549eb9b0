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
    let clients: Vec<Client> = threads.into_iter().flat_map(|t| t.join().expect("logins")).collect();
    assert_eq!(clients.len(), sessions);
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
