//! What the server sets up with the OS at start: private files (REVIEW S13) and
//! enough file descriptors for its pool (S20).

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_existing_data_dir_is_made_private_and_so_is_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_in(dir, "");
    assert_eq!(mode(&server.data_dir()), 0o700);
    assert_eq!(mode(&server.data_dir().join("wrenhub.redb")), 0o600);
    assert_eq!(mode(&server.data_dir().join("tls").join("server.key")), 0o600);
    server.wait_for_log("had mode 755; set to 700", WAIT);
}

/// Starts the server under `sh` with a `ulimit` first.
fn start_with_ulimit(ulimit: &str) -> Server {
    let script = format!("ulimit {ulimit} && exec \"$0\" \"$@\"");
    let program = ["sh", "-c", script.as_str(), env!("CARGO_BIN_EXE_wrenhub")];
    Server::start_program(&program, tempfile::tempdir().unwrap(), "max_sessions = 1024")
}

#[test]
fn max_sessions_is_clamped_to_the_hard_open_file_limit_with_a_warning() {
    let server = start_with_ulimit("-n 256");
    server.wait_for_log("the pool is cut to 192", WAIT);
    let serving = server.wait_for_log(" serving ", WAIT);
    assert!(serving.contains("max_sessions 192"), "the pool is sized to what fits: {serving}");
}

#[test]
fn a_low_soft_open_file_limit_is_raised_to_the_hard_one() {
    let server = start_with_ulimit("-Sn 128");
    // The start is logged after the limit was handled: no clamp means it was raised.
    let serving = server.wait_for_log(" serving ", WAIT);
    assert!(serving.contains("max_sessions 1024"), "{serving}");
    assert!(!server.log().contains("open-file limit allows"), "{}", server.log());
}

#[test]
fn more_connections_than_file_descriptors_do_not_lock_out_a_login() {
    // S20 on the wire: 400 connections against 256 descriptors. The pool is cut to
    // what fits, the unauthenticated ones give way, and a login still gets in.
    let server = start_with_ulimit("-n 256");
    server.add_user("alice", "pw");
    let mut flood = Vec::new();
    for _ in 0..400 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", server.port)) {
            use std::io::Write;
            let _ = s.write_all(HEADER.as_bytes());
            flood.push(s);
        }
    }
    let mut alice = server.login("alice", "pw", "r");
    alice.sync("alive");
    drop(flood);
}
