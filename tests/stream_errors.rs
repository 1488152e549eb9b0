//! RFC 6120 §4.9.3 and §11: each stream error condition the server detects, proven
//! on the wire. Each test name says the condition.

mod common;
use common::*;

#[test]
fn invalid_namespace_for_a_wrong_stream_namespace() {
    let server = Server::start();
    let got = exchange(
        &server,
        "<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://wrong.example/streams' version='1.0'>",
    );
    assert_eq!(attr(&response_header(&got), "from"), Some("localhost"));
    assert_stream_error(&got, "invalid-namespace");
}

#[test]
fn invalid_namespace_for_a_content_namespace_other_than_jabber_client() {
    let server = Server::start();
    for ns in ["jabber:server", "urn:nonsense"] {
        let got = exchange(
            &server,
            &format!("<stream:stream to='localhost' xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"),
        );
        assert_stream_error(&got, "invalid-namespace");
    }
    let got = exchange(
        &server,
        "<stream:stream to='localhost' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
    assert_stream_error(&got, "invalid-namespace");
}

#[test]
fn bad_namespace_prefix_for_an_undeclared_prefix() {
    let server = Server::start();
    let got = exchange(&server, &format!("{HEADER}<foo:message to='a@localhost'/>"));
    assert_stream_error(&got, "bad-namespace-prefix");
    let got = exchange(&server, "<stream:stream to='localhost' xmlns='jabber:client' version='1.0'>");
    assert_stream_error(&got, "bad-namespace-prefix");
}

#[test]
fn not_well_formed_for_the_specs_bad_xml_example() {
    let server = Server::start();
    // The product's spec: <message><body>…</message> (body never closed).
    let got = exchange(&server, &format!("{HEADER}<message><body>hello</message>"));
    assert!(got.contains("</stream:features>"));
    assert_stream_error(&got, "not-well-formed");
}

#[test]
fn not_well_formed_for_other_malformed_input() {
    let server = Server::start();
    for bad in [
        "<message a='1' a='2'/>",
        "text outside any element",
        "<message>&#0;</message>",
        "<message>a & b</message>",
        "<message to=unquoted/>",
        "</stream:streamy>",
    ] {
        let got = exchange(&server, &format!("{HEADER}{bad}"));
        assert_stream_error(&got, "not-well-formed");
    }
}

#[test]
fn restricted_xml_for_comments_pis_dtds_and_entities() {
    let server = Server::start();
    for bad in [
        format!("{HEADER}<!-- a comment -->"),
        format!("{HEADER}<message><!-- inside --></message>"),
        format!("{HEADER}<?target data?>"),
        format!("{HEADER}<message><body>&custom;</body></message>"),
        format!("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY lol 'lol'>]>{}", &HEADER[21..]),
        format!("<!-- before -->{}", &HEADER[21..]),
    ] {
        let got = exchange(&server, &bad);
        assert_eq!(attr(&response_header(&got), "from"), Some("localhost"));
        assert_stream_error(&got, "restricted-xml");
    }
}

#[test]
fn unsupported_encoding_for_utf16_other_encodings_and_bad_utf8() {
    let server = Server::start();
    let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(HEADER.encode_utf16().flat_map(|u| u.to_le_bytes())).collect();
    let no_bom: Vec<u8> = HEADER.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let mut bad_utf8 = format!("{HEADER}<message><body>").into_bytes();
    bad_utf8.extend_from_slice(&[0xC3, 0x28, b'<']);
    let latin1 = HEADER.replace("version='1.0'?>", "version='1.0' encoding='ISO-8859-1'?>").into_bytes();
    for input in [utf16, no_bom, bad_utf8, latin1] {
        let mut c = server.connect();
        c.send_bytes(&input);
        let got = c.read_to_close(WAIT);
        assert_eq!(attr(&response_header(&got), "from"), Some("localhost"));
        assert_stream_error(&got, "unsupported-encoding");
    }
}

#[test]
fn policy_violation_for_a_2mb_stanza_names_the_limit() {
    let server = Server::start();
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    let big = format!("<message to='a@localhost'><body>{}</body></message>", "x".repeat(2 * 1024 * 1024));
    // The server closes mid-way; a failed write after that is expected.
    c.try_send(big.as_bytes());
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "policy-violation");
    // Before authentication the smaller limit applies (REVIEW S1).
    assert!(got.contains("max_preauth_stanza_size"), "{got}");
}

#[test]
fn policy_violation_for_a_2mb_stanza_after_login_names_max_stanza_size() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.login("juliet", "pw", "r");
    let big = format!("<message to='a@localhost'><body>{}</body></message>", "x".repeat(2 * 1024 * 1024));
    c.try_send(big.as_bytes());
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("(limit max_stanza_size)"), "{got}");
}

#[test]
fn policy_violation_for_10000_nested_elements_names_the_limit() {
    let server = Server::start();
    let mut c = server.connect();
    c.send(HEADER);
    c.try_send("<a>".repeat(10_000).as_bytes());
    let got = c.read_to_close(WAIT);
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("max_xml_depth"), "{got}");
}

#[test]
fn policy_violation_for_too_many_attributes_or_namespaces() {
    let server = Server::start_with("max_xml_attributes = 4\nmax_xml_namespaces = 2");
    let got = exchange(&server, &format!("{HEADER}<message a='1' b='2' c='3' d='4' e='5'/>"));
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("max_xml_attributes"), "{got}");
    let got = exchange(&server, &format!("{HEADER}<message xmlns:a='1' xmlns:b='2' xmlns:c='3'/>"));
    assert_stream_error(&got, "policy-violation");
    assert!(got.contains("max_xml_namespaces"), "{got}");
}

#[test]
fn not_authorized_for_stanzas_before_authentication() {
    let server = Server::start();
    for stanza in [
        "<message to='a@localhost'><body>hi</body></message>",
        "<presence/>",
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
    ] {
        let got = exchange(&server, &format!("{HEADER}{stanza}"));
        assert_stream_error(&got, "not-authorized");
    }
    let log = server.log();
    assert!(!log.contains("<body>"), "the stanza was not processed");
}

#[test]
fn unsupported_stanza_type_for_an_unknown_first_level_element() {
    let server = Server::start();
    for el in ["<foo/>", "<message xmlns='jabber:server'/>", "<bar xmlns='urn:x'><baz/></bar>"] {
        let got = exchange(&server, &format!("{HEADER}{el}"));
        assert_stream_error(&got, "unsupported-stanza-type");
    }
}

#[test]
fn error_before_the_header_still_opens_the_stream() {
    let server = Server::start();
    let got = exchange(&server, "garbage");
    let h = response_header(&got);
    assert_eq!(attr(&h, "from"), Some("localhost"));
    assert_eq!(attr(&h, "version"), Some("1.0"));
    assert_stream_error(&got, "not-well-formed");
}
