//! Hostile peers on the LAN, on the wire: floods of idle and oversized
//! unauthenticated connections (REVIEW S1, S4). Bounded in count and time.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection to the server's client port from a chosen loopback address.
fn connect_from(source: &str, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).expect("bind a loopback source address");
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    stream
}

/// The floods run one at a time: two at once on a 2-core machine measure the
/// machine, not the server.
static ONE_FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds `count` connections that sent only a stream header, from `sources` in
/// turn, then logs in and returns how long the login took.
fn login_during_idle_flood(config: &str, sources: &[String], count: usize) -> Duration {
    use std::io::Write;
    let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start_with(config);
    server.add_user("alice", "pw");
    let mut flood = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = connect_from(&sources[i % sources.len()], server.port);
        // A peer the server already let go may refuse the write: that is the point.
        let _ = s.write_all(HEADER.as_bytes());
        flood.push(s);
    }
    let started = Instant::now();
    let mut alice = server.login("alice", "pw", "phone");
    let took = started.elapsed();
    // The session works: a ping through it is answered.
    alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    alice.read_until("id='p1'", WAIT);
    drop(flood);
    took
}

#[test]
fn a_login_succeeds_within_a_second_while_2000_idle_connections_from_one_address_are_held() {
    let took = login_during_idle_flood("", &["127.0.0.1".to_string()], 2000);
    assert!(took < Duration::from_secs(1), "login took {took:?}");
}

#[test]
fn a_login_succeeds_within_a_second_while_2000_idle_connections_from_199_addresses_are_held() {
    // 10 from each address: past `max_unauthenticated_per_ip` (8) each address's
    // oldest gives way, and past `max_unauthenticated` (256) the oldest of all.
    let sources: Vec<String> = (2..=200).map(|i| format!("127.0.0.{i}")).collect();
    let took = login_during_idle_flood("", &sources, 2000);
    assert!(took < Duration::from_secs(1), "login took {took:?}");
}

#[test]
fn the_oldest_unauthenticated_connection_gives_way_with_resource_constraint() {
    let server = Server::start_with("max_unauthenticated = 2");
    let mut first = server.connect();
    first.send(HEADER);
    first.read_until("</stream:features>", WAIT);
    let mut second = server.connect();
    second.send(HEADER);
    second.read_until("</stream:features>", WAIT);
    let mut third = server.connect();
    third.send(HEADER);
    third.read_until("</stream:features>", WAIT);
    let got = first.read_to_close(WAIT);
    assert_stream_error(&got, "resource-constraint");
    assert!(got.contains("gives way"), "{got}");
    // The newer ones are untouched: each still answers on its stream.
    for c in [&mut second, &mut third] {
        c.send(STARTTLS);
        c.read_until("<proceed", WAIT);
    }
}

#[test]
fn a_preauth_stanza_of_empty_elements_is_refused_and_costs_little_memory() {
    // S1: 100 connections each sending `<message>` with 65 000 `<a/>` (256 KiB) took
    // the server from 4.6 MiB to 257 MiB (2.6 MiB each).
    let server = Server::start();
    let before = server.rss_kib();
    let stanza = format!("<message>{}</message>", "<a/>".repeat(65_000));
    let mut clients: Vec<Client> = (0..100).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send(HEADER);
        // The server may stop reading once the limit is passed.
        c.try_send(stanza.as_bytes());
    }
    for c in &mut clients {
        let got = c.read_to_close(WAIT);
        assert_stream_error(&got, "policy-violation");
        assert!(got.contains("max_preauth_stanza_size"), "{got}");
    }
    let grew = server.peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grew} KiB for 100 connections");
    assert!(grew < 100 * 64, "peak RSS grew by {grew} KiB for 100 connections");
}

#[test]
fn after_authentication_a_stanza_of_empty_elements_is_refused_by_its_tree_size() {
    let server = Server::start();
    server.add_user("alice", "pw");
    let mut alice = server.login("alice", "pw", "r");
    let before = server.rss_kib();
    let stanza = format!("<message to='alice@localhost'>{}</message>", "<a/>".repeat(65_000));
    alice.try_send(stanza.as_bytes());
    let got = alice.read_to_close(WAIT);
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("too many parts"), "{got}");
    let grew = server.peak_rss_kib().saturating_sub(before);
    // The input buffer, at most the limit in parsed entries (twice in capacity).
    assert!(grew < 1024, "peak RSS grew by {grew} KiB for one stanza");
}

#[test]
fn answers_to_one_read_are_bounded_and_all_arrive() {
    // S8: 60 vCard gets in one read against a 200 KB vCard were 12 MB in one buffer.
    let server = Server::start_with("c2s_queue_size = 262144");
    server.add_user("alice", "pw");
    let mut alice = server.login("alice", "pw", "r");
    let photo = "A".repeat(200_000);
    alice.send(&format!(
        "<iq type='set' id='v'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard></iq>"
    ));
    alice.read_until("id='v'", WAIT);
    let before = server.rss_kib();
    let gets: String = (0..60).map(|i| format!("<iq type='get' id='g{i}'><vCard xmlns='vcard-temp'/></iq>")).collect();
    alice.send(&gets);
    for i in 0..60 {
        alice.read_until(&format!("id='g{i}'"), WAIT);
        alice.read_until("</iq>", WAIT);
    }
    let grew = server.peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grew} KiB");
    assert!(grew < 4 * 1024, "peak RSS grew by {grew} KiB answering 60 gets of a 200 KB vCard");
}

#[test]
fn a_fast_sender_is_slowed_to_its_read_rate_and_loses_nothing() {
    // S5: no input shaping existed; reading now pauses, nothing is dropped.
    let server = Server::start_with("c2s_read_rate = 50000\nmax_stanza_size = 16384");
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    let mut bob = server.login("bob", "pw", "r");
    let mut alice = server.login("alice", "pw", "r");
    let body = "z".repeat(900);
    let started = Instant::now();
    for i in 0..200 {
        alice.send(&format!("<message to='bob@localhost/r' id='f{i}'><body>{body}</body></message>"));
    }
    alice.send("<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>");
    alice.read_until("id='done' type='result'", Duration::from_secs(30));
    let took = started.elapsed();
    // About 200 KB at 50 KB/s after a 16 KiB burst: at least 3 s.
    assert!(took >= Duration::from_secs(3), "{took:?}: not slowed");
    let got = bob.read_until("id='f199'", WAIT);
    assert_eq!(got.matches("<message ").count(), 200, "every message arrived");
}

#[test]
fn past_the_buffer_budget_new_connections_get_resource_constraint_until_memory_is_free() {
    // S1: nothing bounded the sum of all connections' buffers.
    let server = Server::start_with("max_buffer_memory = 262144\nmax_preauth_stanza_size = 65536");
    let partial = format!("<message><body>{}", "x".repeat(40_000));
    let mut held: Vec<Client> = (0..8).map(|_| server.connect()).collect();
    for c in &mut held {
        c.send(HEADER);
        c.read_until("</stream:features>", WAIT);
        c.send(&partial);
    }
    let probe = || {
        let mut c = server.connect();
        c.send(HEADER);
        c.read_until_any(&["</stream:error>", "</stream:features>"])
    };
    // Once the server holds them all, a newcomer is refused (poll until it is).
    let deadline = Instant::now() + WAIT;
    loop {
        let got = probe();
        if got.contains("<resource-constraint ") {
            assert!(got.contains("max_buffer_memory"), "{got}");
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    // Their memory is given back: connections are served again.
    let deadline = Instant::now() + WAIT;
    loop {
        let got = probe();
        if got.contains("</stream:features>") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PLAIN login (inside STARTTLS) from a chosen loopback address; returns what
/// the server answered to the `<auth/>`.
fn plain_login_from(server: &Server, source: &str, user: &str, password: &str) -> String {
    let mut c = server.starttls_on(Client::from_stream(connect_from(source, server.port)));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("\0{user}\0{password}"))
    ));
    c.read_until_any(&["<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "</failure>"])
}

#[test]
fn guessing_one_password_from_many_addresses_stops_at_new_addresses_and_never_locks_out_the_users_devices() {
    // S12: failures count per account too; past the limit only addresses the
    // account never logged in from are refused (no password check), so an attacker
    // cannot lock the user out.
    let server = Server::start_with("auth_failures_per_account = 3\n");
    server.add_user("juliet", "pw");
    let got = plain_login_from(&server, "127.0.0.9", "juliet", "pw");
    assert!(got.contains("<success"), "her phone logs in: {got}");
    for i in 2..5 {
        let got = plain_login_from(&server, &format!("127.0.0.{i}"), "juliet", "guess");
        assert!(got.contains("<not-authorized/>"), "{got}");
    }
    // The fourth address is refused before any password check, even with the right one.
    let got = plain_login_from(&server, "127.0.0.5", "juliet", "pw");
    assert!(got.contains("<temporary-auth-failure/>") && got.contains("for this account"), "{got}");
    // Her phone's address still logs in; another account is not affected.
    assert!(plain_login_from(&server, "127.0.0.9", "juliet", "pw").contains("<success"));
    server.add_user("romeo", "pw");
    assert!(plain_login_from(&server, "127.0.0.6", "romeo", "pw").contains("<success"));
}

#[test]
fn a_reconnect_storm_leaves_no_residue_and_a_login_gets_in() {
    // Phones coming back all at once, or a script hammering the port: hundreds of
    // connections that open and drop (some mid-header, some after it), and
    // repeated logins taking over one resource. Afterwards the earlier session
    // still works, a login takes under a second, and memory is back near where it
    // was (nothing kept per closed connection).
    use std::io::Write;
    let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start();
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    let mut alice = server.login("alice", "pw", "desk");
    alice.sync("before");
    let before = server.rss_kib();
    let port = server.port;
    let raw: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..300 {
                    let mut s = connect_from(&format!("127.0.0.{}", 2 + (t * 300 + i) % 50), port);
                    let cut = if i % 2 == 0 { 20 } else { HEADER.len() };
                    let _ = s.write_all(&HEADER.as_bytes()[..cut]);
                }
            })
        })
        .collect();
    // The same resource again and again: each login takes the last one over. A
    // login that was in its first round trip when 256 newer connections came can
    // be the one to give way (the pool's policy); a client that tries again gets in.
    let mut retried = 0;
    for _ in 0..40 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = server.port;
            let ca = server.ca_pem();
            let attempt = std::thread::spawn(move || {
                let mut bob = common::login_to(port, &ca, "bob", "pw", "phone");
                bob.sync("b");
            });
            if attempt.join().is_ok() {
                break;
            }
            assert!(attempts < 3, "a login failed three times in a row during the storm");
            retried += 1;
        }
    }
    println!("{retried} login(s) of 40 needed a second try during the storm");
    for t in raw {
        t.join().expect("storm thread");
    }
    let started = Instant::now();
    let mut carol = server.login("alice", "pw", "phone");
    assert!(started.elapsed() < Duration::from_secs(1), "login took {:?}", started.elapsed());
    carol.sync("after");
    alice.sync("still here");
    let after = server.rss_kib();
    assert!(after < before + 4 * 1024, "RSS grew from {before} KiB to {after} KiB");
}
