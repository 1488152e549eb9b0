//! External components (XEP-0114) on the wire: the handshake and its errors, the
//! conflict policy, routing both ways, `from` checks, disco, a gateway that is down.

mod common;
use common::*;
use std::time::Duration;

const GW: &str = "[[component]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n";

/// Opens a component stream for `domain`; returns the client and the stream id.
fn open(server: &Server, domain: &str) -> (Client, String) {
    component_stream(server, domain)
}

fn connect(server: &Server) -> Client {
    component_client(server, "gw.localhost", "s3cret")
}

#[test]
fn handshake_succeeds_with_the_secret_and_fails_without() {
    let server = Server::start_with(GW);
    let (c, _) = open(&server, "gw.localhost");
    assert!(c.received().contains("from='gw.localhost'") && c.received().contains("xmlns='jabber:component:accept'"));
    drop(c);
    let _ok = connect(&server);
    let (mut bad, _) = open(&server, "gw.localhost");
    bad.send("<handshake>0000000000000000000000000000000000000000</handshake>");
    assert_stream_error(&bad.read_to_close(WAIT), "not-authorized");
}

#[test]
fn unconfigured_domains_and_second_connections_are_refused() {
    let server = Server::start_with(GW);
    let (mut unknown, _) = open(&server, "other.localhost");
    assert_stream_error(&unknown.read_to_close(WAIT), "host-unknown");
    let _first = connect(&server);
    let (mut second, id) = open(&server, "gw.localhost");
    second.send(&format!("<handshake>{}</handshake>", component_handshake(&id, "s3cret")));
    assert_stream_error(&second.read_to_close(WAIT), "conflict");
}

#[test]
fn users_and_the_gateway_exchange_stanzas() {
    let server = Server::start_with(GW);
    server.add_user("juliet", "pw");
    let mut gw = connect(&server);
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<message to='echo@gw.localhost' id='m1' type='chat'><body>ping</body></message>");
    let got = gw.read_until("</message>", WAIT);
    assert!(
        got.contains("from='juliet@localhost/a'")
            && got.contains("to='echo@gw.localhost'")
            && got.contains("<body>ping</body>"),
        "{got}"
    );
    gw.send("<message from='echo@gw.localhost' to='juliet@localhost/a' type='chat'><body>pong</body></message>");
    let reply = juliet.read_until("</message>", WAIT);
    assert!(reply.contains("from='echo@gw.localhost'") && reply.contains("<body>pong</body>"), "{reply}");
    // The server lists the gateway, and disco#info on it reaches the gateway.
    juliet.send("<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(juliet.read_until("</iq>", WAIT).contains("<item jid='gw.localhost'/>"));
    juliet.send("<iq type='get' id='d' to='gw.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert!(gw.read_until("</iq>", WAIT).contains("id='d'"));
    // A stanza from outside the component's domain ends its stream.
    gw.send("<message from='juliet@localhost' to='juliet@localhost/a'><body>forged</body></message>");
    assert_stream_error(&gw.read_to_close(WAIT), "invalid-from");
    assert!(!juliet.sync("j1").contains("forged"));
}

#[test]
fn a_gateway_that_is_down_is_service_unavailable() {
    let server = Server::start_with(GW);
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<message to='echo@gw.localhost' id='m1'><body>anyone?</body></message>");
    let got = juliet.read_until("</message>", WAIT);
    assert!(got.contains("type='error'") && got.contains("<service-unavailable "), "{got}");
}

/// The example gateway in `examples/`, built by `cargo test` next to this test.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join("echo_gateway")
}

#[test]
fn the_example_echo_gateway_answers_a_user() {
    let server = Server::start_with("[[component]]\ndomain = 'echo.localhost'\nsecret = 'example'\n");
    server.add_user("juliet", "pw");
    let mut gateway = std::process::Command::new(example_binary())
        .args([&format!("127.0.0.1:{}", server.component_port.unwrap()), "echo.localhost", "example"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run examples/echo_gateway: a plain `cargo test` builds it (or `cargo build --example echo_gateway`)");
    let mut juliet = server.login("juliet", "pw", "a");
    // Wait until the gateway is connected.
    let deadline = std::time::Instant::now() + WAIT;
    while !server.log().contains("component echo.localhost connected") {
        assert!(std::time::Instant::now() < deadline, "the gateway did not connect: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    juliet.send("<message to='bot@echo.localhost' type='chat'><body>hi</body></message>");
    let got = juliet.read_until("</message>", WAIT);
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(got.contains("from='bot@echo.localhost'") && got.contains("<body>echo: hi</body>"), "{got}");
}

#[test]
fn components_can_use_direct_tls_and_a_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("gw.secret");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    let config = format!(
        "component_tls_listen = ['127.0.0.1:0']\n[[component]]\ndomain = 'gw.localhost'\nsecret_file = '{}'\n",
        secret_file.display()
    );
    let server = Server::start_with(&config);
    let line = server.log();
    let port: u16 = line
        .split("listening for components with Direct TLS on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|p| p.trim().parse().ok())
        .expect("component TLS port in the log");
    let mut c = Client::connect_port(port);
    c.upgrade_tls(&server.ca_pem(), &[]);
    c.send("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.localhost'>");
    let header = c.read_until(">", WAIT);
    let id = between(&header, "id='", "'").to_string();
    c.send(&format!("<handshake>{}</handshake>", component_handshake(&id, "from-a-file")));
    c.read_until("<handshake/>", WAIT);
}

#[test]
fn a_component_that_closes_its_stream_can_connect_again() {
    let server = Server::start_with(GW);
    server.add_user("juliet", "pw");
    let mut gw = connect(&server);
    gw.send("</stream:stream>");
    gw.read_to_close(WAIT);
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<message to='echo@gw.localhost' id='down'><body>x</body></message>");
    assert!(juliet.read_until("</message>", WAIT).contains("<service-unavailable "));
    let _again = connect(&server);
}

#[test]
fn a_component_stanza_without_to_is_improper_addressing() {
    let server = Server::start_with(GW);
    let mut gw = connect(&server);
    gw.send("<message from='bot@gw.localhost'><body>to nobody</body></message>");
    assert_stream_error(&gw.read_to_close(WAIT), "improper-addressing");
}

#[test]
fn a_quiet_component_is_pinged_and_kept_and_a_dead_one_times_out() {
    // R5: an established component used to be dropped after c2s_idle_timeout.
    let config = format!("c2s_ping_interval = 1\nc2s_ping_timeout = 2\nc2s_idle_timeout = 2\n{GW}");
    let server = Server::start_with(&config);
    let mut gw = connect(&server);
    // Past c2s_idle_timeout: each ping answered, the component stays.
    for _ in 0..3 {
        let ping = gw.read_until("</iq>", WAIT);
        assert!(ping.contains("<ping xmlns='urn:xmpp:ping'/>") && ping.contains("to='gw.localhost'"), "{ping}");
        let id = between(&ping, "id='", "'").to_string();
        gw.send(&format!("<iq type='result' id='{id}' from='gw.localhost' to='localhost'/>"));
    }
    // Still routed to: a client's message reaches it.
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "r");
    juliet.send("<message to='sms@gw.localhost' id='m'><body>still there?</body></message>");
    gw.read_until("still there?", WAIT);
    // A component that stops answering is closed after the ping timeout.
    let got = gw.read_to_close(Duration::from_secs(15));
    assert_stream_error(&got, "connection-timeout");
}

#[test]
fn wrong_component_handshakes_are_limited_per_address() {
    // S19: nothing counted them; with component_tls_listen that is a brute force.
    let server = Server::start_with(&format!("auth_failures_per_ip = 2\n{GW}"));
    for _ in 0..2 {
        let (mut bad, _) = open(&server, "gw.localhost");
        bad.send("<handshake>0000000000000000000000000000000000000000</handshake>");
        assert_stream_error(&bad.read_to_close(WAIT), "not-authorized");
    }
    // Now even the right secret is refused from this address for the window.
    let (mut c, id) = open(&server, "gw.localhost");
    c.send(&format!("<handshake>{}</handshake>", component_handshake(&id, "s3cret")));
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("too many wrong handshakes"), "{got}");
}

/// A ping from the gateway to the server and its answer: whatever the server sent
/// the gateway before is in what this returns.
fn gateway_sync(gw: &mut Client, id: &str) -> String {
    gw.send(&format!("<iq type='get' id='{id}' from='gw.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"));
    gw.read_until(&format!("id='{id}' type='result'"), WAIT)
}

#[test]
fn the_server_answers_a_gateways_disco_and_ping_like_a_remote_servers() {
    // One pipeline (A5): a component gets the handlers remote servers get; before,
    // every iq from a component to the server was service-unavailable.
    let server = Server::start_with(GW);
    let mut gw = connect(&server);
    gw.send("<iq type='get' id='d' from='gw.localhost' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let got = gw.read_until("</iq>", WAIT);
    assert!(
        got.contains("type='result'") && got.contains("to='gw.localhost'") && got.contains("urn:xmpp:ping"),
        "{got}"
    );
    let got = gateway_sync(&mut gw, "p");
    assert!(got.contains("from='localhost'"), "{got}");
}

#[test]
fn a_gateway_contact_subscribes_like_a_remote_one_and_lands_on_the_roster() {
    // The inbound half of a subscription (RFC 6121 §3) runs for gateway contacts
    // too; before, their presence was passed through and no roster changed.
    let server = Server::start_with(GW);
    server.add_user("juliet", "pw");
    let mut gw = connect(&server);
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<presence/>");
    juliet.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    juliet.read_until("id='r0'", WAIT);
    gw.send("<presence type='subscribe' from='echo@gw.localhost' to='juliet@localhost'/>");
    let request = juliet.read_until("type='subscribe'", WAIT);
    assert!(request.contains("from='echo@gw.localhost'"), "{request}");
    juliet.send("<presence to='echo@gw.localhost' type='subscribed'/>");
    let push = juliet.read_until("</iq>", WAIT);
    assert!(push.contains("jid='echo@gw.localhost'") && push.contains("subscription='from'"), "{push}");
    // The gateway hears of the approval, and gets juliet's presence right away.
    let got = gw.read_until("from='juliet@localhost/a'", WAIT);
    assert!(got.contains("type='subscribed'"), "{got}");
    // §3.3.3: when the contact unsubscribes, its roster item loses 'from' and the
    // contact gets unavailable from the user's resources.
    gw.send("<presence type='unsubscribe' from='echo@gw.localhost' to='juliet@localhost'/>");
    let gone = gw.read_until("type='unavailable'", WAIT);
    assert!(gone.contains("from='juliet@localhost/a' to='echo@gw.localhost'"), "{gone}");
    let push = juliet.read_until("</iq>", WAIT);
    assert!(push.contains("jid='echo@gw.localhost'") && push.contains("subscription='none'"), "{push}");
    // A user asking a gateway contact gets pending-out on the roster.
    juliet.send("<presence to='bot@gw.localhost' type='subscribe'/>");
    let push = juliet.read_until("</iq>", WAIT);
    assert!(push.contains("jid='bot@gw.localhost'") && push.contains("ask='subscribe'"), "{push}");
    gw.read_until("to='bot@gw.localhost' type='subscribe'", WAIT);
}

#[test]
fn a_gateway_user_the_account_blocks_is_refused_and_groupchat_to_a_bare_jid_bounces() {
    // XEP-0191 §3.5 and RFC 6121 §8.5.2.1.2 for every origin: before, a gateway's
    // stanzas skipped the recipient's blocklist and groupchat to an account
    // vanished.
    let server = Server::start_with(GW);
    server.add_user("juliet", "pw");
    let mut gw = connect(&server);
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<presence/>");
    juliet.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='spam@gw.localhost'/></block></iq>");
    juliet.read_until("id='b' type='result'", WAIT);
    gw.send("<message from='spam@gw.localhost' to='juliet@localhost' id='s1' type='chat'><body>buy</body></message>");
    gw.send(
        "<message from='room@gw.localhost' to='juliet@localhost' id='g1' type='groupchat'><body>hi</body></message>",
    );
    let got = gateway_sync(&mut gw, "p");
    assert!(got.contains("id='s1' type='error'") && got.contains("<service-unavailable "), "{got}");
    assert!(got.contains("id='g1' type='error'"), "{got}");
    let seen = juliet.sync("j");
    assert!(!seen.contains("<body>buy</body>") && !seen.contains("type='groupchat'"), "{seen}");
}
