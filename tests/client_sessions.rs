//! Client sessions on the wire (RFC 6120 §5–§8): STARTTLS, Direct TLS, SASL, binding,
//! routing, over real TLS with the server's own local CA.

mod common;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use std::time::Duration;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn failure(condition: &str) -> String {
    format!("<failure xmlns='{SASL}'><{condition}/>")
}

fn auth(mechanism: &str, payload: &[u8]) -> String {
    format!("<auth xmlns='{SASL}' mechanism='{mechanism}'>{}</auth>", B64.encode(payload))
}

#[test]
fn scram_sha256_login_and_bind() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let c = server.login("juliet", "balcony", "home");
    assert_eq!(c.jid, "juliet@localhost/home");
}

#[test]
fn starttls_is_required_and_offered_alone_before_tls() {
    let server = Server::start();
    let mut c = server.connect();
    c.send(HEADER);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(
        features.contains("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
        "{features}"
    );
    // SASL before TLS: encryption-required, and the stream stays open.
    c.send(&auth("PLAIN", b"\0juliet\0balcony"));
    assert!(c.read_until("</failure>", WAIT).contains(&failure("encryption-required")));
    c.send(STARTTLS);
    c.read_until("<proceed", WAIT);
}

#[test]
fn optional_tls_offers_sasl_without_plain_before_tls() {
    let server = Server::start_with("c2s_require_encryption = false");
    let mut c = server.connect();
    c.send(HEADER);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(features.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), "{features}");
    assert!(features.contains("<mechanism>SCRAM-SHA-256</mechanism>"), "{features}");
    assert!(!features.contains("PLAIN") && !features.contains("-PLUS"), "{features}");
}

#[test]
fn plaintext_sent_after_starttls_is_never_processed_inside_tls() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    // The STARTTLS command-injection class: commands pipelined after <starttls/>.
    let injected = format!("{STARTTLS}{}", auth("PLAIN", b"\0juliet\0balcony"));
    c.send(&injected);
    c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", WAIT);
    c.upgrade_tls(&server.ca_pem(), &[]);
    c.send(HEADER);
    let after = c.read_until("</stream:features>", WAIT);
    assert!(!after.contains("<success"), "the injected <auth/> was processed: {after}");
    assert!(after.contains("<mechanisms"), "not authenticated, SASL offered again: {after}");
}

#[test]
fn the_stream_restarts_with_a_fresh_id_after_tls_and_after_sasl() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect();
    c.send(HEADER);
    let id1 = attr(&response_header(&c.read_until("</stream:features>", WAIT)), "id").unwrap().to_string();
    c.send(STARTTLS);
    c.read_until("<proceed", WAIT);
    c.upgrade_tls(&server.ca_pem(), &[]);
    c.send(HEADER);
    let id2 = attr(&response_header(&c.read_until("</stream:features>", WAIT)), "id").unwrap().to_string();
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"));
    c.send(HEADER);
    let features = c.read_until("</stream:features>", WAIT);
    let id3 = attr(&response_header(&features), "id").unwrap().to_string();
    assert!(id1 != id2 && id2 != id3 && id1 != id3);
    assert!(features.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"), "{features}");
    assert!(
        features.contains("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"),
        "{features}"
    );
}

#[test]
fn mechanisms_after_tls_include_plus_variants_and_channel_binding_types() {
    let server = Server::start();
    let c = server.connect_tls();
    let features = c.received();
    for m in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        assert!(features.contains(&format!("<mechanism>{m}</mechanism>")), "{m}: {features}");
    }
    assert!(
        features.contains("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/>")
    );
    let scram_only = Server::start_with("c2s_sasl_plain = false");
    assert!(!scram_only.connect_tls().received().contains("PLAIN"));
}

#[test]
fn every_mechanism_logs_in() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    assert!(c.scram(ScramKind::Sha1, "juliet", "balcony"));
    let mut c = server.connect_tls();
    let cb = c.tls_exporter();
    assert!(c.scram_with(ScramKind::Sha256, "juliet", "balcony", Some(cb)), "{}", c.received());
    let mut c = server.connect_tls();
    let cb = c.tls_exporter();
    assert!(c.scram_with(ScramKind::Sha1, "juliet", "balcony", Some(cb)));
    let mut c = server.connect_tls();
    assert!(c.plain_auth("juliet", "balcony"));
    c.restart_and_bind("");
    assert!(c.jid.starts_with("juliet@localhost/"), "server-generated resource: {}", c.jid);
}

#[test]
fn channel_binding_with_wrong_data_is_not_authorized() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    assert!(!c.scram_with(ScramKind::Sha256, "juliet", "balcony", Some(vec![0; 32])));
    assert!(c.received().contains(&failure("not-authorized")));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut a = server.connect_tls();
    assert!(!a.scram(ScramKind::Sha256, "juliet", "wrong"));
    let mut b = server.connect_tls();
    assert!(!b.scram(ScramKind::Sha256, "nobody", "wrong"));
    let tail = |c: &Client| c.received().rsplit("<challenge").next().unwrap().split_once('>').unwrap().1.to_string();
    assert_eq!(tail(&a).rsplit("</challenge>").next(), tail(&b).rsplit("</challenge>").next());
    assert!(a.received().ends_with(&format!("{}</failure>", failure("not-authorized"))));
    let mut p = server.connect_tls();
    assert!(!p.plain_auth("nobody", "x"));
    let mut q = server.connect_tls();
    assert!(!q.plain_auth("juliet", "x"));
    assert!(p.received().ends_with(&format!("{}</failure>", failure("not-authorized"))));
    assert!(q.received().ends_with(&format!("{}</failure>", failure("not-authorized"))));
}

#[test]
fn sasl_failure_conditions() {
    let server = Server::start_with("c2s_max_auth_attempts = 20");
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    let expect = |c: &mut Client, send: String, condition: &str| {
        c.send(&send);
        let got = c.read_until("</failure>", WAIT);
        assert!(got.contains(&failure(condition)), "{condition}: {got}");
    };
    expect(&mut c, auth("DIGEST-MD5", b""), "invalid-mechanism");
    expect(&mut c, format!("<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>!!notbase64</auth>"), "incorrect-encoding");
    expect(&mut c, auth("SCRAM-SHA-256", b"garbage"), "malformed-request");
    expect(&mut c, auth("PLAIN", b"romeo@localhost\0juliet\0balcony"), "invalid-authzid");
    expect(&mut c, auth("SCRAM-SHA-256", b"n,a=romeo@localhost,n=juliet,r=abc"), "invalid-authzid");
    expect(&mut c, format!("<response xmlns='{SASL}'/>"), "malformed-request");
    c.send(&auth("SCRAM-SHA-256", b"n,,n=juliet,r=abc"));
    c.read_until("</challenge>", WAIT);
    expect(&mut c, format!("<abort xmlns='{SASL}'/>"), "aborted");
    // The stream is still usable after failures.
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"));
    let weak = Server::start_with("c2s_sasl_plain = false");
    weak.add_user("juliet", "balcony");
    let mut c = weak.connect_tls();
    expect(&mut c, auth("PLAIN", b"\0juliet\0balcony"), "mechanism-too-weak");
}

#[test]
fn failed_attempts_are_bounded_then_policy_violation() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    for _ in 0..2 {
        assert!(!c.plain_auth("juliet", "nope"));
    }
    c.send(&auth("PLAIN", b"\0juliet\0nope"));
    let got = c.read_to_close(WAIT);
    assert!(got.contains(&failure("not-authorized")));
    assert_stream_error(&got, "policy-violation");
}

#[test]
fn failures_that_test_no_credential_do_not_count_so_a_client_walking_its_mechanisms_gets_in() {
    // What slixmpp 1.8 (poezio) does: -PLUS with tls-unique (not offered), then
    // SCRAM without binding but the "y" flag, then a mechanism that works.
    let server = Server::start_with("auth_failures_per_ip = 2");
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        c.send(&auth(mech, b"p=tls-unique,,n=juliet,r=abc"));
        let got = c.read_until("</failure>", WAIT);
        assert!(got.contains(&failure("malformed-request")), "{got}");
    }
    c.send(&auth("SCRAM-SHA-256", b"y,,n=juliet,r=abc"));
    let got = c.read_until("</failure>", WAIT);
    assert!(got.contains(&failure("not-authorized")) && got.contains("-PLUS"), "the downgrade is refused: {got}");
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>");
    c.read_until("</failure>", WAIT);
    // Four failures on this stream, none of which tested a password: it goes on.
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"), "{}", c.received());
    // Nor did they count against the address (auth_failures_per_ip = 2).
    let mut again = server.connect_tls();
    assert!(again.plain_auth("juliet", "balcony"));
}

#[test]
fn failed_logins_are_rate_limited_per_address() {
    let server = Server::start_with("auth_failures_per_ip = 2");
    server.add_user("juliet", "balcony");
    for _ in 0..2 {
        let mut c = server.connect_tls();
        assert!(!c.plain_auth("juliet", "nope"));
    }
    let mut c = server.connect_tls();
    c.send(&auth("PLAIN", b"\0juliet\0balcony"));
    let got = c.read_until("</failure>", WAIT);
    assert!(got.contains(&failure("temporary-auth-failure")), "{got}");
}

#[test]
fn direct_tls_negotiates_alpn_xmpp_client_and_offers_sasl() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_direct_tls();
    assert_eq!(c.tls_info().1.as_deref(), Some(&b"xmpp-client"[..]));
    c.send(HEADER);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(!features.contains("starttls") && features.contains("<mechanisms"), "{features}");
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"));
    c.restart_and_bind("phone");
    assert_eq!(c.jid, "juliet@localhost/phone");
}

#[test]
fn tls_1_2_and_1_3_are_both_accepted() {
    let server = Server::start();
    let c = server.connect_tls();
    assert_eq!(c.tls_info().0, Some(rustls::ProtocolVersion::TLSv1_3));
    // A TLS 1.2-only client (no tls-exporter then: only tls-server-end-point).
    let mut raw = server.connect();
    raw.send(HEADER);
    raw.read_until("</stream:features>", WAIT);
    raw.send(STARTTLS);
    raw.read_until("<proceed", WAIT);
    raw.upgrade_tls_versions(&server.ca_pem(), &[&rustls::version::TLS12]);
    assert_eq!(raw.tls_info().0, Some(rustls::ProtocolVersion::TLSv1_2));
    raw.send(HEADER);
    let features = raw.read_until("</stream:features>", WAIT);
    assert!(features.contains("<channel-binding type='tls-server-end-point'/>"), "{features}");
    assert!(!features.contains("tls-exporter"), "{features}");
}

#[test]
fn two_resources_of_one_account_and_a_message_between_accounts() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let mut home = server.login("juliet", "balcony", "home");
    let mut work = server.login("juliet", "balcony", "work");
    let mut romeo = server.login("romeo", "montague", "phone");
    romeo.send("<message to='juliet@localhost/work' id='m1' type='chat'><body>to work</body></message>");
    let got = work.read_until("</message>", WAIT);
    assert!(got.contains("from='romeo@localhost/phone'") && got.contains("<body>to work</body>"), "{got}");
    romeo.send("<message to='juliet@localhost/home' type='chat'><body>to home</body></message>");
    assert!(home.read_until("</message>", WAIT).contains("<body>to home</body>"));
    // A message to the bare JID goes to the available resources with the highest priority.
    home.send("<presence><priority>5</priority></presence>");
    home.sync("p1");
    work.send("<presence><priority>1</priority></presence>");
    work.sync("p2");
    romeo.send("<message to='juliet@localhost' type='chat'><body>bare</body></message>");
    romeo.sync("m1");
    assert!(home.read_until("</message>", WAIT).contains("<body>bare</body>"));
    let got = work.sync("w1");
    assert!(!got.contains("<body>bare</body>"), "the lower priority resource got it: {got}");
}

#[test]
fn from_is_stamped_and_a_forged_from_is_invalid_from() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let mut juliet = server.login("juliet", "balcony", "home");
    let mut romeo = server.login("romeo", "montague", "phone");
    // A from equal to one's own bare JID is fine and gets the full JID stamped.
    romeo.send("<message from='romeo@localhost' to='juliet@localhost/home'><body>x</body></message>");
    assert!(juliet.read_until("</message>", WAIT).contains("from='romeo@localhost/phone'"));
    romeo.send("<message from='tybalt@localhost' to='juliet@localhost/home'><body>forged</body></message>");
    assert_stream_error(&romeo.read_to_close(WAIT), "invalid-from");
    // Romeo's stream ended at the forged stanza; juliet's ping answer comes after
    // anything it could have caused.
    assert!(!juliet.sync("j1").contains("forged"), "the forged stanza was delivered");
}

#[test]
fn iq_always_gets_exactly_one_answer() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    let got = c.read_until_any(&["/>", "</iq>"]);
    assert!(got.contains("id='p1' type='result'"), "{got}");
    c.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(c.read_until_any(&["/>"]).contains("id='p2' type='result'"));
    c.send("<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:unknown'/></iq>");
    let got = c.read_until("</iq>", WAIT);
    assert!(got.contains("id='q1'") && got.contains("<service-unavailable"), "{got}");
    c.send("<iq type='set' id='session1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    assert!(c.read_until_any(&["/>"]).contains("id='session1' type='result'"));
    c.send("<iq type='get' id='bad'/>");
    assert!(c.read_until("</iq>", WAIT).contains("<bad-request"));
    let rest = c.sync("one");
    assert!(!rest.contains("id='bad'"), "more than one answer: {rest}");
}

#[test]
fn routing_errors_for_unknown_accounts_resources_and_domains() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let mut c = server.login("juliet", "balcony", "home");
    let cases = [
        ("<message to='nobody@localhost' id='a'><body>x</body></message>", "service-unavailable"),
        (
            "<iq to='romeo@localhost/nowhere' type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>",
            "service-unavailable",
        ),
        ("<message to='romeo@localhost' id='c' type='groupchat'><body>x</body></message>", "service-unavailable"),
        ("<message to='someone@example.org' id='d'><body>x</body></message>", "remote-server-not-found"),
        ("<message to='bad@@jid' id='e'><body>x</body></message>", "jid-malformed"),
        ("<message to='localhost' id='f'><body>x</body></message>", "service-unavailable"),
    ];
    for (stanza, condition) in cases {
        c.send(stanza);
        let name = if stanza.starts_with("<iq") { "</iq>" } else { "</message>" };
        let got = c.read_until(name, WAIT);
        assert!(got.contains("type='error'") && got.contains(&format!("<{condition} ")), "{stanza}: {got}");
    }
    // An error stanza never gets an error back.
    c.send("<message to='nobody@localhost' type='error'><body>x</body></message>");
    assert!(!c.sync("e1").contains("<message"), "an error answered an error");
}

#[test]
fn bind_limits_and_conflicts() {
    let server = Server::start_with("max_resources_per_account = 2");
    server.add_user("juliet", "balcony");
    let mut first = server.login("juliet", "balcony", "a");
    let _second = server.login("juliet", "balcony", "b");
    let mut third = server.connect_tls();
    assert!(third.scram(ScramKind::Sha256, "juliet", "balcony"));
    third.send(HEADER);
    third.read_until("</stream:features>", WAIT);
    third.send(
        "<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>c</resource></bind></iq>",
    );
    let got = third.read_until("</iq>", WAIT);
    assert!(got.contains("type='error'") && got.contains("<resource-constraint"), "{got}");
    // Takeover (the default): binding a connected resource ends the old stream with conflict.
    third.send(
        "<iq type='set' id='b4'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a</resource></bind></iq>",
    );
    assert!(third.read_until("</iq>", WAIT).contains("<jid>juliet@localhost/a</jid>"));
    assert_stream_error(&first.read_to_close(WAIT), "conflict");
    let refusing = Server::start_with("resource_conflict = 'refuse'");
    refusing.add_user("juliet", "balcony");
    let _held = refusing.login("juliet", "balcony", "a");
    let mut again = refusing.connect_tls();
    assert!(again.scram(ScramKind::Sha256, "juliet", "balcony"));
    again.send(HEADER);
    again.read_until("</stream:features>", WAIT);
    again.send(
        "<iq type='set' id='b5'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a</resource></bind></iq>",
    );
    assert!(again.read_until("</iq>", WAIT).contains("<conflict"));
}

#[test]
fn stanzas_before_bind_are_not_authorized() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"));
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    c.send("<message to='juliet@localhost'><body>x</body></message>");
    assert_stream_error(&c.read_to_close(WAIT), "not-authorized");
}

/// `n` of a message `id='m<n>'`.
fn message_number(stanza: &str) -> Option<usize> {
    let start = stanza.find("id='m")? + 5;
    stanza[start..].split('\'').next()?.parse().ok()
}

#[test]
fn a_full_queue_bounces_new_stanzas_and_the_slow_reader_stays_connected_with_nothing_lost() {
    // S5: a sender used to be able to disconnect any recipient, and the stanzas
    // already queued for it vanished.
    let server = Server::start_with("c2s_queue_size = 8192\nwrite_timeout = 60");
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let mut romeo = server.login("romeo", "montague", "stalled");
    let mut juliet = server.login("juliet", "balcony", "home");
    let body = "x".repeat(1000);
    let mut sent = 0;
    'flood: for batch in 0..80 {
        for i in batch * 500..(batch + 1) * 500 {
            juliet.send(&format!("<message to='romeo@localhost/stalled' id='m{i}'><body>{body}</body></message>"));
            sent = i + 1;
        }
        juliet.send(&format!("<iq type='get' id='sync{batch}'><ping xmlns='urn:xmpp:ping'/></iq>"));
        juliet.read_until(&format!("id='sync{batch}'"), WAIT);
        if juliet.received().contains("<resource-constraint ") {
            break 'flood;
        }
    }
    let bounced: std::collections::BTreeSet<usize> = juliet
        .received()
        .split("<message ")
        .filter(|m| m.contains("type='error'") && m.contains("<resource-constraint "))
        .filter_map(message_number)
        .collect();
    assert!(!bounced.is_empty(), "no stanza was bounced after {sent} messages");
    // Romeo was never disconnected: he reads everything queued, then his ping.
    romeo.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>");
    let got = romeo.read_until("id='alive'", Duration::from_secs(60));
    let delivered: std::collections::BTreeSet<usize> = got.split("<message ").filter_map(message_number).collect();
    for i in 0..sent {
        assert!(
            delivered.contains(&i) != bounced.contains(&i),
            "message m{i}: delivered {} bounced {}; romeo got {} messages, tail {:?}",
            delivered.contains(&i),
            bounced.contains(&i),
            delivered.len(),
            &got[got.len().saturating_sub(600)..]
        );
    }
    assert!(!got.contains("<stream:error>"), "romeo's stream was ended");
}

#[test]
fn deleting_an_account_ends_its_sessions() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    let (ok, text) = server.cli(&["user", "del", "juliet"], "");
    assert!(ok, "{text}");
    assert_stream_error(&c.read_to_close(WAIT), "not-authorized");
    let mut again = server.connect_tls();
    assert!(!again.scram(ScramKind::Sha256, "juliet", "balcony"));
}

#[test]
fn deleting_an_account_removes_all_its_data_and_tells_its_contacts() {
    // R3: a re-created account inherited the old roster, offline messages, vCard;
    // contacts kept `both` with an account that no longer existed.
    let server = Server::start();
    let (mut j, mut r) = server.juliet_and_romeo();
    j.subscription("romeo", "subscribe");
    r.subscription("juliet", "subscribed");
    r.send("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard></iq>");
    r.read_until("id='v'", WAIT);
    j.sync("past");
    let (ok, text) = server.cli(&["user", "del", "romeo"], "");
    assert!(ok, "{text}");
    assert_stream_error(&r.read_to_close(WAIT), "not-authorized");
    // Juliet's item for romeo lost its subscription, and she was told.
    let push = j.read_until("</iq>", WAIT);
    assert!(push.contains("jid='romeo@localhost'") && push.contains("subscription='none'"), "{push}");
    // A new romeo starts with nothing of the old one's.
    server.add_user("romeo", "new");
    let mut r2 = server.login("romeo", "new", "c");
    r2.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = r2.read_until_any(&["</query></iq>", "/></iq>"]);
    assert!(!roster.contains("juliet@localhost"), "{roster}");
    r2.send("<iq type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>");
    let vcard = r2.read_until("id='v2'", WAIT);
    let vcard = vcard + &r2.read_until_any(&["</iq>", "/>"]);
    assert!(!vcard.contains("<FN>Romeo</FN>"), "{vcard}");
}

#[test]
fn accounts_survive_kill_9() {
    let mut server = Server::start();
    server.add_user("juliet", "balcony");
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let c = restarted.login("juliet", "balcony", "home");
    assert_eq!(c.jid, "juliet@localhost/home");
}

#[test]
fn user_commands_work_with_and_without_a_running_server() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let (ok, list) = server.cli(&["user", "list"], "");
    assert!(ok && list.trim() == "juliet@localhost", "{list}");
    let (ok, text) = server.cli(&["user", "passwd", "juliet@localhost", "--password-stdin"], "new-secret\n");
    assert!(ok, "{text}");
    let mut old = server.connect_tls();
    assert!(!old.scram(ScramKind::Sha256, "juliet", "balcony"));
    let _c = server.login("juliet", "new-secret", "home");
    let (ok, text) = server.cli(&["user", "add", "@localhost", "--password-stdin"], "x\n");
    assert!(!ok && text.contains("not a valid account address"), "{text}");
    // Stopped server: the CLI opens the store itself.
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wrenhub"))
            .args(args)
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(run(&["user", "add", "romeo", "--password-stdin"], "pw\n").0);
    assert_eq!(run(&["user", "list"], "").1.trim(), "romeo@localhost");
    assert!(run(&["user", "del", "romeo"], "").0);
    assert!(!run(&["user", "del", "romeo"], "").0);
}

#[test]
fn cert_show_and_export_ca() {
    let server = Server::start();
    let (ok, text) = server.cli(&["cert", "show"], "");
    assert!(ok, "{text}");
    assert!(text.contains("names: localhost, conference.localhost") && text.contains("SHA-256 "), "{text}");
    assert!(text.contains("local CA: wrenhub local CA"), "{text}");
    let out = server.dir.path().join("ca-export.pem");
    let (ok, text) = server.cli(&["cert", "export-ca", "--out", out.to_str().unwrap()], "");
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(out).unwrap(), server.ca_pem());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data_dir().join("tls/server.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.log().contains("SHA-256"), "fingerprints are logged at start");
}

/// The README's device steps: the Debian one run for real into scratch
/// directories (then a TLS handshake verified against them), the DER file read
/// back by openssl, the iOS/macOS profile parsed by Python's plistlib.
#[test]
fn the_ca_exports_for_each_platform_hold_the_hubs_ca_and_the_debian_steps_make_it_trusted() {
    use std::process::{Command, Stdio};
    let server = Server::start();
    let dir = server.dir.path();
    let export = |format: &str, file: &str| {
        let path = dir.join(file);
        let (ok, text) = server.cli(&["cert", "export-ca", "--format", format, "--out", path.to_str().unwrap()], "");
        assert!(ok, "{text}");
        path
    };
    let pem = export("pem", "hub-ca.pem");
    let der = export("der", "hub-ca.crt");
    let profile = export("mobileconfig", "hub.mobileconfig");
    let openssl_der =
        Command::new("openssl").args(["x509", "-outform", "der", "-in"]).arg(&pem).output().expect("openssl");
    assert!(openssl_der.status.success());
    assert_eq!(std::fs::read(&der).unwrap(), openssl_der.stdout, "DER is the PEM's certificate");
    let check = "import plistlib,sys; p=plistlib.load(open(sys.argv[1],'rb')); c=p['PayloadContent'][0]; \
                 assert p['PayloadType']=='Configuration', p; assert c['PayloadType']=='com.apple.security.root', c; \
                 assert c['PayloadContent']==open(sys.argv[2],'rb').read(); print('ok')";
    let plist = Command::new("python3").args(["-c", check]).arg(&profile).arg(&der).output().expect("python3");
    assert!(plist.status.success(), "{}", String::from_utf8_lossy(&plist.stderr));
    // Debian: the PEM as a .crt in the local CA directory, update-ca-certificates.
    let store = tempfile::tempdir().unwrap();
    let sub = |name: &str| {
        let p = store.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (local, share, etc, hooks) = (sub("local"), sub("share"), sub("etc"), sub("hooks"));
    std::fs::copy(&pem, local.join("wrenhub-hub.crt")).unwrap();
    let conf = store.path().join("ca-certificates.conf");
    std::fs::write(&conf, "").unwrap();
    let update = Command::new("update-ca-certificates")
        .arg("--certsconf")
        .arg(&conf)
        .arg("--certsdir")
        .arg(&share)
        .arg("--localcertsdir")
        .arg(&local)
        .arg("--etccertsdir")
        .arg(&etc)
        .arg("--hooksdir")
        .arg(&hooks)
        .output()
        .expect("update-ca-certificates (Debian's ca-certificates)");
    assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stderr));
    let handshake = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", server.tls_port), "-servername", "localhost"])
        .args(["-verify_hostname", "localhost", "-verify_return_error", "-alpn", "xmpp-client", "-CApath"])
        .arg(&etc)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let out = String::from_utf8_lossy(&handshake.stdout);
    assert!(handshake.status.success() && out.contains("Verify return code: 0 (ok)"), "{out}");
}

#[test]
fn sighup_reloads_certificates_without_dropping_sessions() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    server.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    while !server.log().contains("reloaded server certificate") {
        assert!(std::time::Instant::now() < deadline, "no reload logged: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.sync("p");
    let _new = server.login("juliet", "balcony", "other");
}

#[test]
fn a_disabled_account_gets_account_disabled_only_with_the_right_password() {
    let server = Server::start_with("c2s_max_auth_attempts = 10");
    server.add_user("juliet", "balcony");
    let mut online = server.login("juliet", "balcony", "home");
    let (ok, text) = server.cli(&["user", "disable", "juliet"], "");
    assert!(ok, "{text}");
    assert_stream_error(&online.read_to_close(WAIT), "not-authorized");
    let mut c = server.connect_tls();
    assert!(!c.scram(ScramKind::Sha256, "juliet", "balcony"));
    assert!(c.received().contains(&failure("account-disabled")), "{}", c.received());
    assert!(!c.plain_auth("juliet", "balcony"));
    assert!(c.received().ends_with(&format!("{}</failure>", failure("account-disabled"))));
    // A wrong password learns nothing about the account's state.
    assert!(!c.plain_auth("juliet", "wrong"));
    assert!(c.received().ends_with(&format!("{}</failure>", failure("not-authorized"))), "{}", c.received());
    let (ok, _) = server.cli(&["user", "enable", "juliet"], "");
    assert!(ok);
    let _back = server.login("juliet", "balcony", "home");
}

#[test]
fn scram_plus_with_tls_server_end_point() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    let cb = c.tls_server_end_point();
    assert!(c.scram_cb(ScramKind::Sha256, "juliet", "balcony", Some(("tls-server-end-point", cb))), "{}", c.received());
}

#[test]
fn a_second_header_without_a_restart_is_bad_format() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    c.send(&HEADER[21..]);
    assert_stream_error(&c.read_to_close(WAIT), "bad-format");
    // With an XML declaration it is a processing instruction mid-stream.
    let mut c = server.login("juliet", "balcony", "other");
    c.send(HEADER);
    assert_stream_error(&c.read_to_close(WAIT), "restricted-xml");
}

#[test]
fn configured_certificate_files_replace_the_local_ca() {
    // Borrow a certificate made by one server's local CA as "the configured one".
    let donor = Server::start();
    let tls = donor.data_dir().join("tls");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
    std::fs::copy(tls.join("server.pem"), &cert).unwrap();
    std::fs::copy(tls.join("server.key"), &key).unwrap();
    let config = format!("tls_cert = '{}'\ntls_key = '{}'", cert.display(), key.display());
    let server = Server::start_with(&config);
    assert!(!server.data_dir().join("tls/ca.pem").exists(), "no local CA when a certificate is configured");
    server.add_user("juliet", "balcony");
    let mut c = server.connect();
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    c.send(STARTTLS);
    c.read_until("<proceed", WAIT);
    c.upgrade_tls(&donor.ca_pem(), &[]);
    c.send(HEADER);
    c.read_until("</stream:features>", WAIT);
    assert!(c.scram(ScramKind::Sha256, "juliet", "balcony"));
    let (ok, text) =
        server.cli(&["cert", "export-ca", "--config", server.dir.path().join("wrenhub.toml").to_str().unwrap()], "");
    assert!(!ok && text.contains("no local CA"), "{text}");
}

#[test]
fn a_session_that_closes_its_stream_leaves_the_registry() {
    let server = Server::start_with("resource_conflict = 'refuse'");
    server.add_user("juliet", "balcony");
    server.add_user("romeo", "montague");
    let mut first = server.login("juliet", "balcony", "home");
    first.send("<presence/>");
    first.send("</stream:stream>");
    first.read_to_close(WAIT);
    // With the refuse policy a stale session would make this bind fail with conflict.
    let _again = server.login("juliet", "balcony", "home");
    // And a session closed by a stream error is gone too.
    let mut romeo = server.login("romeo", "montague", "phone");
    romeo.send("<bogus/>");
    assert_stream_error(&romeo.read_to_close(WAIT), "unsupported-stanza-type");
    let _back = server.login("romeo", "montague", "phone");
}

#[test]
fn stanzas_queued_for_a_session_that_is_taken_over_go_to_the_new_session() {
    // D1: a closing session's queue was dropped with it.
    let server = Server::start_with("c2s_queue_size = 65536\nwrite_timeout = 2");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut old = server.login("romeo", "pw", "phone");
    old.send("<presence/>");
    old.sync("o1");
    let mut juliet = server.login("juliet", "pw", "home");
    // The old session stops reading: its socket fills, then its queue.
    let body = "y".repeat(10_000);
    let mut last_accepted = None;
    for i in 0..2000 {
        juliet
            .send(&format!("<message to='romeo@localhost/phone' id='m{i}' type='chat'><body>{body}</body></message>"));
        if i % 50 == 49 {
            let got = juliet.sync(&format!("s{i}"));
            if got.contains("<resource-constraint ") {
                break;
            }
        }
        last_accepted = Some(i);
    }
    let bounced: Vec<usize> = juliet
        .received()
        .split("<message ")
        .filter(|m| m.contains("type='error'"))
        .filter_map(|m| m.find("id='m").and_then(|i| m[i + 5..].split('\'').next()?.parse().ok()))
        .collect();
    let last = (0..=last_accepted.expect("some accepted")).rev().find(|i| !bounced.contains(i)).expect("one accepted");
    // A new connection takes the resource over; the old one is closed once its
    // write makes no progress, and what was still queued comes to the new one.
    let mut new = server.login("romeo", "pw", "phone");
    new.send("<presence/>");
    let got = new.read_until(&format!("id='m{last}'"), Duration::from_secs(20));
    assert!(got.contains("<body>yyyy"), "{}", &got[..got.len().min(300)]);
    drop(old);
}

#[test]
fn scram_plus_with_tls_server_end_point_of_a_sha384_signed_certificate() {
    // S14: the binding hashed every certificate with SHA-256; RFC 5929 §4.1 wants
    // the hash of its signature (Let's Encrypt's ECDSA chain signs with SHA-384).
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "P-384 test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (files.path().join("chain.pem"), files.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem() + &ca_cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server =
        Server::start_with(&format!("tls_cert = '{}'\ntls_key = '{}'\n", cert_path.display(), key_path.display()));
    server.add_user("juliet", "balcony");
    let mut c = server.connect();
    let header = c.header();
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    c.send(STARTTLS);
    c.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", WAIT);
    c.upgrade_tls(ca_cert.pem().as_bytes(), &[]);
    c.send(&header);
    c.read_until("</stream:features>", WAIT);
    let cb = ring::digest::digest(&ring::digest::SHA384, cert.der()).as_ref().to_vec();
    assert!(c.scram_cb(ScramKind::Sha256, "juliet", "balcony", Some(("tls-server-end-point", cb))), "{}", c.received());
}

#[test]
fn an_account_deleted_during_its_scram_exchange_does_not_log_in() {
    // R3: the record read at the first message used to carry the login through.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.connect_tls();
    let ok = c.scram_between(ScramKind::Sha256, "juliet", "balcony", None, || {
        let (deleted, text) = server.cli(&["user", "del", "juliet"], "");
        assert!(deleted, "{text}");
    });
    assert!(!ok, "logged in to a deleted account: {}", c.received());
    assert!(c.received().contains("<not-authorized/>"), "{}", c.received());
}
