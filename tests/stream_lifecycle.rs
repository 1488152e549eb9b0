//! Stream life on the wire: closing, keepalives, pipelining, chunking, deadlines,
//! the full session pool, and shutdown.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn client_close_gets_the_servers_close() {
    let server = Server::start();
    let got = exchange(&server, &format!("{HEADER}</stream:stream>"));
    assert!(got.contains("</stream:features>"));
    assert!(got.ends_with("</stream:features></stream:stream>"), "{got}");
    assert!(!got.contains("<stream:error>"));
}

#[test]
fn whitespace_keepalives_and_pipelining_are_fine() {
    let server = Server::start();
    let mut c = server.connect();
    // Header, keepalives and the closing tag in one write.
    c.send(&format!("{HEADER} \n \r\n\t </stream:stream>"));
    let got = c.read_to_close(WAIT);
    assert!(got.ends_with("</stream:features></stream:stream>"), "{got}");
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    for _ in 0..3 {
        c.send(" ");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send("</stream:stream>");
    assert!(!c.read_to_close(WAIT).contains("<stream:error>"));
}

#[test]
fn byte_at_a_time_delivery_gives_the_same_answers() {
    let server = Server::start();
    let mut c = server.connect();
    c.send_bytewise(HEADER);
    c.read_until("</stream:features>", WAIT);
    c.send_bytewise("<message to='a@localhost'><body>é 😀 &amp;</body></message>");
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "not-authorized");
}

#[test]
fn connection_timeout_when_no_header_arrives() {
    let server = Server::start_with("c2s_header_timeout = 1");
    let mut c = server.connect();
    let started = Instant::now();
    let got = c.read_to_close(WAIT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(attr(&response_header(&got), "from"), Some("localhost"));
    assert_stream_error(&got, "connection-timeout");
}

#[test]
fn connection_timeout_defeats_a_slowloris_header() {
    let server = Server::start_with("c2s_header_timeout = 1");
    let mut c = server.connect();
    let started = Instant::now();
    // One byte every 200 ms keeps the socket busy but never completes the header.
    for b in HEADER.as_bytes().iter().take(12) {
        if !c.try_send(&[*b]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = c.read_to_close(WAIT);
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_stream_error(&got, "connection-timeout");
}

#[test]
fn connection_timeout_when_idle() {
    let server = Server::start_with("c2s_idle_timeout = 1");
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "connection-timeout");
    assert!(got.contains("c2s_idle_timeout"), "{got}");
}

#[test]
fn resource_constraint_when_the_session_pool_is_full() {
    // A pool full of logged-in sessions refuses; unauthenticated connections would
    // give way instead (tests/hostile.rs).
    let server = Server::start_with("max_sessions = 2");
    server.add_user("juliet", "pw");
    let mut held: Vec<Client> = (0..2).map(|i| server.login("juliet", "pw", &format!("r{i}"))).collect();
    let got = exchange(&server, HEADER);
    assert_eq!(attr(&response_header(&got), "from"), Some("localhost"));
    assert_stream_error(&got, "resource-constraint");
    // A freed slot is usable again.
    let mut first = held.remove(0);
    first.send("</stream:stream>");
    first.read_to_close(WAIT);
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        let mut c = server.connect();
        c.send(HEADER);
        let got = c.read_until_any(&["</stream:error>", "</stream:features>"]);
        if !got.contains("resource-constraint") {
            again = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(again.is_some(), "the freed slot was never reused");
}

#[test]
fn system_shutdown_on_sigterm_and_exit_0() {
    let mut server = Server::start();
    let mut clients: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = server.connect();
            c.send(HEADER);
            c.read_until("</stream:features>", WAIT);
            c
        })
        .collect();
    // One client is mid-stanza.
    clients[2].send("<message><body>half");
    server.signal("TERM");
    for c in &mut clients {
        let got = c.read_to_close(WAIT);
        assert_stream_error(&got, "system-shutdown");
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("server exits");
    assert_eq!(status.code(), Some(0), "log: {}", server.log());
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut server = Server::start();
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    server.signal("INT");
    assert_stream_error(&c.read_to_close(WAIT), "system-shutdown");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_client_that_never_reads_still_lets_shutdown_finish() {
    let mut server = Server::start_with("shutdown_timeout = 2\nwrite_timeout = 1");
    let mut c = server.connect();
    c.send(HEADER);
    server.signal("TERM");
    let started = Instant::now();
    let status = server.wait_exit(Duration::from_secs(10)).expect("server exits");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(c);
}
