//! RFC 6120 §4.2, §4.7: the stream header exchange on the wire.

mod common;
use common::*;

const NS: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

fn open(server: &Server, header: &str) -> (Client, String) {
    let mut c = server.connect();
    c.send(header);
    let got = c.read_until("<stream:features", WAIT);
    (c, got)
}

#[test]
fn good_session_header_exchange() {
    let server = Server::start();
    let (mut c, got) = open(&server, HEADER);
    let h = response_header(&got);
    assert!(got.starts_with("<?xml version='1.0'?><stream:stream "), "{got}");
    assert_eq!(attr(&h, "from"), Some("localhost"));
    assert_eq!(attr(&h, "to"), None, "no 'to' when the client sent no 'from'");
    assert_eq!(attr(&h, "version"), Some("1.0"));
    assert_eq!(attr(&h, "xml:lang"), Some("en"));
    assert_eq!(attr(&h, "xmlns"), Some("jabber:client"));
    assert_eq!(attr(&h, "xmlns:stream"), Some("http://etherx.jabber.org/streams"));
    let id = attr(&h, "id").expect("id");
    assert_eq!(id.len(), 32, "128 random bits in hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    c.read_until("</stream:features>", WAIT);
    // A second connection gets a different id.
    let (_c2, got2) = open(&server, HEADER);
    assert_ne!(attr(&response_header(&got2), "id"), Some(id));
}

#[test]
fn response_to_is_the_clients_from_and_from_is_canonical() {
    let server = Server::start();
    let header = format!("<stream:stream from='Juliet@LocalHost' to='LOCALHOST.' {NS} version='1.0'>");
    let (_c, got) = open(&server, &header);
    let h = response_header(&got);
    assert_eq!(attr(&h, "from"), Some("localhost"), "never an echo of the client's spelling");
    assert_eq!(attr(&h, "to"), Some("juliet@localhost"));
}

#[test]
fn version_is_the_lower_of_both_compared_per_part() {
    let server = Server::start();
    for (client, response) in [("1.0", "1.0"), ("1.10", "1.0"), ("01.0", "1.0"), ("2.0", "1.0"), ("1.5", "1.0")] {
        let header = format!("<stream:stream to='localhost' {NS} version='{client}'>");
        let (_c, got) = open(&server, &header);
        assert_eq!(attr(&response_header(&got), "version"), Some(response), "client version {client}");
    }
}

#[test]
fn missing_version_gets_no_version_and_unsupported_version() {
    let server = Server::start();
    let got = exchange(&server, &format!("<stream:stream to='localhost' {NS}>"));
    assert_eq!(attr(&response_header(&got), "version"), None);
    assert!(!got.contains("<stream:features"));
    assert_stream_error(&got, "unsupported-version");
    assert!(got.contains("1.0"), "the text says 1.0 is required: {got}");
}

#[test]
fn lower_version_is_echoed_then_unsupported_version() {
    let server = Server::start();
    let got = exchange(&server, &format!("<stream:stream to='localhost' {NS} version='0.9'>"));
    assert_eq!(attr(&response_header(&got), "version"), Some("0.9"));
    assert_stream_error(&got, "unsupported-version");
    let got = exchange(&server, &format!("<stream:stream to='localhost' {NS} version='one'>"));
    assert_stream_error(&got, "unsupported-version");
}

#[test]
fn unknown_or_missing_to_is_host_unknown() {
    let server = Server::start();
    let got = exchange(&server, &format!("<stream:stream to='example.org' {NS} version='1.0'>"));
    assert_eq!(attr(&response_header(&got), "from"), Some("localhost"), "from is the served domain");
    assert_stream_error(&got, "host-unknown");
    let got = exchange(&server, &format!("<stream:stream {NS} version='1.0'>"));
    assert_stream_error(&got, "host-unknown");
    let got = exchange(&server, &format!("<stream:stream to='not a domain' {NS} version='1.0'>"));
    assert_stream_error(&got, "host-unknown");
}

#[test]
fn configured_domain_is_served() {
    let server = Server::start_with("domain = 'Hub.LAN'");
    let header = format!("<stream:stream to='hub.lan' {NS} version='1.0'>");
    let (_c, got) = open(&server, &header);
    assert_eq!(attr(&response_header(&got), "from"), Some("hub.lan"));
    let got = exchange(&server, HEADER);
    assert_stream_error(&got, "host-unknown");
}
