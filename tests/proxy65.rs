//! The XEP-0065 SOCKS5 bytestreams proxy on the wire: its streamhost through
//! disco and the bytestreams query, two SOCKS5 connections paired by their hash,
//! activation by the initiator only when both are there, bytes both ways, and
//! the refusals (a third connection, a malformed request, no activation in time).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const NS: &str = "http://jabber.org/protocol/bytestreams";

fn sha1_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn proxy_port(server: &Server) -> u16 {
    let line = server.wait_for_log("listening for file transfers (XEP-0065 proxy) on 127.0.0.1:", WAIT);
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// A SOCKS5 connection that asked for `addr`; returns it after the reply.
fn socks5(port: u16, addr: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, 0], "no authentication");
    let mut request = vec![5, 1, 0, 3, addr.len() as u8];
    request.extend_from_slice(addr.as_bytes());
    request.extend_from_slice(&[0, 0]);
    s.write_all(&request).unwrap();
    let mut reply = vec![0u8; 4];
    s.read_exact(&mut reply).unwrap();
    if reply[1] == 0 {
        let mut rest = vec![0u8; 1 + 40 + 2];
        s.read_exact(&mut rest).unwrap();
        reply.extend(rest);
    }
    (s, reply)
}

fn iq(c: &mut Client, id: &str, body: &str) -> String {
    c.send(&format!("<iq to='proxy.localhost' id='{id}' {body}</iq>"));
    c.read_until(&format!("id='{id}'"), WAIT) + &c.read_until("/>", WAIT)
}

#[test]
fn two_connections_paired_by_their_hash_relay_both_ways_once_the_initiator_activates() {
    let server = Server::start_with("proxy65_listen = ['127.0.0.1:0']\n");
    let port = proxy_port(&server);
    let (mut juliet, romeo) = server.juliet_and_romeo();
    let items = {
        juliet.send(
            "<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
        );
        juliet.read_until("id='items'", WAIT) + &juliet.read_until("</iq>", WAIT)
    };
    assert!(items.contains("jid='proxy.localhost'"), "{items}");
    let info = iq(&mut juliet, "info", "type='get'><query xmlns='http://jabber.org/protocol/disco#info'/>");
    let info = info + &juliet.read_until("</iq>", WAIT);
    assert!(info.contains("category='proxy'") && info.contains("type='bytestreams'") && info.contains(NS), "{info}");
    let host = iq(&mut juliet, "host", &format!("type='get'><query xmlns='{NS}'/>"));
    assert!(host.contains(&format!("<streamhost jid='proxy.localhost' host='127.0.0.1' port='{port}'/>")), "{host}");

    let sid = "s5b-1";
    let addr = sha1_hex(&format!("{sid}{}{}", juliet.jid, romeo.jid));
    let (mut target, reply) = socks5(port, &addr);
    assert_eq!(&reply[..5], [5, 0, 0, 3, 40]);
    assert_eq!(&reply[5..45], addr.as_bytes(), "the reply names the hash");
    // Only the target is there: nothing to activate yet.
    let early = iq(
        &mut juliet,
        "early",
        &format!("type='set'><query xmlns='{NS}' sid='{sid}'><activate>{}</activate></query>", romeo.jid),
    );
    let early = early + &juliet.read_until("</iq>", WAIT);
    assert!(early.contains("type='error'") && early.contains("item-not-found"), "{early}");
    let (mut initiator, reply) = socks5(port, &addr);
    assert_eq!(reply[1], 0);
    // A third connection for the same bytestream is refused.
    let (_, third) = socks5(port, &addr);
    assert_eq!(third[1], 2, "not allowed");
    // Someone else's activation (another sid) does not match.
    let wrong = iq(
        &mut juliet,
        "wrong",
        &format!("type='set'><query xmlns='{NS}' sid='other'><activate>{}</activate></query>", romeo.jid),
    );
    let wrong = wrong + &juliet.read_until("</iq>", WAIT);
    assert!(wrong.contains("item-not-found"), "{wrong}");
    let ok = iq(
        &mut juliet,
        "go",
        &format!("type='set'><query xmlns='{NS}' sid='{sid}'><activate>{}</activate></query>", romeo.jid),
    );
    assert!(ok.contains("type='result'"), "{ok}");

    let file: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sender = {
        let file = file.clone();
        let mut initiator = initiator.try_clone().unwrap();
        std::thread::spawn(move || {
            initiator.write_all(&file).unwrap();
            initiator.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    target.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert!(got == file, "the target got the {} bytes sent ({} came)", file.len(), got.len());
    // And the other way, on the same pair.
    target.write_all(b"thanks").unwrap();
    target.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    initiator.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"thanks");
}

#[test]
fn malformed_requests_and_connections_never_activated_are_closed() {
    let server = Server::start_with("proxy65_listen = ['127.0.0.1:0']\nproxy65_idle_timeout = 1\n");
    let port = proxy_port(&server);
    // Not SOCKS5, or no method we take: 0xff and a close.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[5, 1, 2]).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, [5, 0xff]);
    // A CONNECT to something that is not a bytestream's hash.
    let (mut s, reply) = socks5(port, "example.com");
    assert_eq!(reply[1], 2);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    // A pair nobody activates is closed after proxy65_idle_timeout.
    let (mut lonely, reply) = socks5(port, &sha1_hex("x"));
    assert_eq!(reply[1], 0);
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    lonely.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty() && started.elapsed() < Duration::from_secs(5));
    // The proxy still answers the hub's users.
    let (mut juliet, _romeo) = server.juliet_and_romeo();
    let host = iq(&mut juliet, "host", &format!("type='get'><query xmlns='{NS}'/>"));
    assert!(host.contains("streamhost"), "{host}");
}
