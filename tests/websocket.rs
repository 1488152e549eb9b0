//! XMPP over WebSocket (RFC 7395) on the wire: the upgrade, `<open/>` and
//! `<close/>` framing, SASL and bind through the same c2s core as TCP, messages
//! both ways with a TCP client, pings, and the refusals (subprotocol, origin,
//! version, broken frames, oversized messages).

mod common;
use base64::Engine;
use common::*;

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The upgrade request's head (without the blank line).
fn upgrade_head(port: u16, extra: &str) -> String {
    format!(
        "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13{extra}"
    )
}

fn upgraded(server: &Server) -> Client {
    let port = server.http_port.unwrap();
    let mut c = server.https();
    let origin = format!("\r\nSec-WebSocket-Protocol: xmpp\r\nOrigin: https://localhost:{port}");
    let r = c.http(&upgrade_head(port, &origin), b"");
    assert_eq!(r.status, 101, "{r:?}");
    // RFC 6455 §1.3's example key and answer.
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(r.header("sec-websocket-protocol"), Some("xmpp"));
    c
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    wrenhub::http::websocket::encode_masked(opcode, true, payload, [1, 2, 3, 4])
}

fn send_text(c: &mut Client, text: &str) {
    c.send_bytes(&frame(0x1, text.as_bytes()));
}

/// The next server frame: (opcode, payload); server frames are not masked.
fn read_frame(c: &mut Client) -> (u8, Vec<u8>) {
    let head = c.take_bytes(2);
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let l = c.take_bytes(2);
            u16::from_be_bytes([l[0], l[1]]) as usize
        }
        127 => {
            let l = c.take_bytes(8);
            u64::from_be_bytes(l.try_into().unwrap()) as usize
        }
        n => n as usize,
    };
    (head[0] & 0x0f, c.take_bytes(len))
}

/// Text messages until one contains `pattern`; returns them all.
fn read_until_message(c: &mut Client, pattern: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let (op, payload) = read_frame(c);
        assert_eq!(op, 0x1, "a text frame; so far {seen:?}, then {op} {payload:?}");
        let text = String::from_utf8(payload).unwrap();
        let done = text.contains(pattern);
        seen.push(text);
        if done {
            return seen;
        }
    }
}

fn open(c: &mut Client) -> Vec<String> {
    send_text(c, &format!("<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"));
    read_until_message(c, "</stream:features>")
}

#[test]
fn a_websocket_client_logs_in_binds_and_chats_with_a_tcp_client_through_the_same_core() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut ws = upgraded(&server);
    let opened = open(&mut ws);
    assert!(opened[0].starts_with(&format!("<open xmlns='{FRAMING}'")) && opened[0].ends_with("/>"), "{opened:?}");
    assert!(opened[0].contains("from='localhost'") && opened[0].contains("version='1.0'"), "{opened:?}");
    let features = opened.last().unwrap();
    assert!(features.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'"), "{features}");
    assert!(features.contains("<mechanism>PLAIN</mechanism>") && !features.contains("starttls"), "{features}");
    let plain = base64::engine::general_purpose::STANDARD.encode("\0juliet\0pw");
    send_text(&mut ws, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"));
    let success = read_until_message(&mut ws, "<success");
    assert_eq!(success.len(), 1, "{success:?}");
    let features = open(&mut ws);
    assert!(features.last().unwrap().contains("urn:ietf:params:xml:ns:xmpp-bind"), "{features:?}");
    send_text(
        &mut ws,
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>browser</resource></bind></iq>",
    );
    let bound = read_until_message(&mut ws, "id='b'");
    assert!(
        bound[0].starts_with("<iq xmlns='jabber:client'") && bound[0].contains("juliet@localhost/browser"),
        "{bound:?}"
    );

    // A TCP client and the WebSocket one, both ways.
    let mut romeo = server.login("romeo", "pw", "phone");
    romeo.send("<message to='juliet@localhost/browser' type='chat' id='m1'><body>over TCP</body></message>");
    let got = read_until_message(&mut ws, "over TCP");
    let message = got.last().unwrap();
    assert!(message.starts_with("<message xmlns='jabber:client'") && message.contains("from='romeo@localhost/phone'"));
    send_text(
        &mut ws,
        "<message xmlns='jabber:client' to='romeo@localhost/phone' type='chat'><body>over WebSocket</body></message>",
    );
    romeo.read_until("over WebSocket", WAIT);

    // A WebSocket ping gets its pong, in order with the stream.
    ws.send_bytes(&frame(0x9, b"are you there"));
    assert_eq!(read_frame(&mut ws), (0xA, b"are you there".to_vec()));
    send_text(&mut ws, "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
    read_until_message(&mut ws, "id='p'");

    // <close/> is answered with <close/> and a close frame; then the session is gone.
    send_text(&mut ws, &format!("<close xmlns='{FRAMING}'/>"));
    let closed = read_until_message(&mut ws, "<close");
    assert_eq!(closed.last().unwrap(), &format!("<close xmlns='{FRAMING}'/>"));
    assert_eq!(read_frame(&mut ws).0, 0x8, "a close frame");
    // The server closes the connection after the session ended: an iq to it bounces.
    ws.read_to_close(WAIT);
    romeo.send("<iq to='juliet@localhost/browser' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>");
    let bounce = romeo.read_until("id='v'", WAIT) + &romeo.read_until("</iq>", WAIT);
    assert!(bounce.contains("type='error'") && bounce.contains("service-unavailable"), "{bounce}");
}

#[test]
fn upgrades_that_break_the_rules_are_refused_with_their_status() {
    let server = Server::start_with("websocket_origins = 'https://chat.example'\n");
    let port = server.http_port.unwrap();
    let ask = |extra: &str| {
        let mut c = server.https();
        c.http(&upgrade_head(port, extra), b"")
    };
    assert_eq!(ask("").status, 400, "no xmpp subprotocol");
    assert_eq!(ask("\r\nSec-WebSocket-Protocol: chat").status, 400);
    let foreign = ask("\r\nSec-WebSocket-Protocol: xmpp\r\nOrigin: https://evil.example");
    assert_eq!(foreign.status, 403, "{foreign:?}");
    assert_eq!(ask("\r\nSec-WebSocket-Protocol: xmpp\r\nOrigin: https://chat.example").status, 101);
    assert_eq!(ask("\r\nSec-WebSocket-Protocol: xmpp").status, 101, "no Origin: not a browser");
    let mut c = server.https();
    let old = c.http(
        &format!("GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: xmpp"),
        b"",
    );
    assert_eq!((old.status, old.header("sec-websocket-version")), (426, Some("13")));
    let mut c = server.https();
    assert_eq!(c.http("GET /xmpp-websocket HTTP/1.1\r\nHost: localhost", b"").status, 426, "no upgrade");
}

#[test]
fn broken_frames_and_oversized_messages_close_with_their_codes() {
    let server = Server::start_with("max_stanza_size = 4096\nwebsocket_origins = '*'\n");
    // An unmasked frame: 1002.
    let mut ws = upgraded(&server);
    let mut unmasked = frame(0x1, b"<open/>");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    ws.send_bytes(&unmasked);
    let (op, payload) = read_frame(&mut ws);
    assert_eq!((op, u16::from_be_bytes([payload[0], payload[1]])), (0x8, 1002), "{payload:?}");
    // A binary frame: 1003.
    let mut ws = upgraded(&server);
    ws.send_bytes(&frame(0x2, b"<open/>"));
    let (op, payload) = read_frame(&mut ws);
    assert_eq!((op, u16::from_be_bytes([payload[0], payload[1]])), (0x8, 1003));
    // A message longer than max_stanza_size: 1009, refused from its header.
    let mut ws = upgraded(&server);
    let mut huge = frame(0x1, &[b' '; 10]);
    huge[1] = 0x80 | 127;
    huge.splice(2..2, 1_000_000u64.to_be_bytes());
    ws.send_bytes(&huge);
    let (op, payload) = read_frame(&mut ws);
    assert_eq!((op, u16::from_be_bytes([payload[0], payload[1]])), (0x8, 1009));
    // A stanza before <open/> is a stream error, framed like the rest.
    let mut ws = upgraded(&server);
    send_text(&mut ws, "<message xmlns='jabber:client'/>");
    let (op, first) = read_frame(&mut ws);
    assert_eq!(op, 0x1);
    let text = String::from_utf8(first).unwrap();
    assert!(text.starts_with("<open ") || text.contains("stream:error"), "{text}");
}

#[test]
fn behind_a_reverse_proxy_the_plain_listener_serves_websocket_sessions_as_encrypted() {
    let server = Server::start_with("http_plain_listen = ['127.0.0.1:0']\n");
    server.add_user("juliet", "pw");
    let line = server.wait_for_log("listening for plain HTTP on 127.0.0.1:", WAIT);
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let mut ws = Client::connect_port(port);
    let r = ws.http(&upgrade_head(port, "\r\nSec-WebSocket-Protocol: xmpp"), b"");
    assert_eq!(r.status, 101, "{r:?}");
    let features = open(&mut ws);
    let features = features.last().unwrap();
    // The proxy's TLS carried it: no STARTTLS offered, PLAIN allowed.
    assert!(features.contains("<mechanism>PLAIN</mechanism>") && !features.contains("starttls"), "{features}");
    let plain = base64::engine::general_purpose::STANDARD.encode("\0juliet\0pw");
    send_text(&mut ws, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"));
    read_until_message(&mut ws, "<success");
}

#[test]
fn a_websocket_session_waits_for_its_login_in_the_unauthenticated_share_not_the_transfers() {
    // One HTTP slot: sessions upgraded to XMPP do not take it, so a page is served
    // while two wait for their logins; like a TCP connection, the oldest of them gives
    // way when the unauthenticated share is full.
    let server = Server::start_with("http_max_connections = 1\nmax_unauthenticated = 3\n");
    let mut oldest = upgraded(&server);
    open(&mut oldest);
    let mut second = upgraded(&server);
    open(&mut second);
    let mut h = server.https();
    let page = h.http("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close", b"");
    assert_eq!(page.status, 200, "the HTTP share is free: {page:?}");
    h.read_to_close(WAIT);
    let mut third = upgraded(&server);
    open(&mut third);
    // A fourth unauthenticated connection: the share is full, the oldest goes.
    let mut newcomer = server.connect();
    newcomer.send(HEADER);
    newcomer.read_until("</stream:features>", WAIT);
    let mut ended = Vec::new();
    loop {
        let (op, payload) = read_frame(&mut oldest);
        ended.push(String::from_utf8_lossy(&payload).into_owned());
        if op == 0x8 {
            break;
        }
    }
    assert!(ended.iter().any(|m| m.contains("resource-constraint")), "{ended:?}");
    // The others are untouched: their streams go on.
    for c in [&mut second, &mut third] {
        send_text(c, "<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        let got = read_until_message(c, "</stream:error>");
        assert!(got.last().unwrap().contains("not-authorized"), "{got:?}");
    }
}
