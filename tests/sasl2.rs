//! One-round-trip logins on the wire: XEP-0388 SASL2 with XEP-0386 Bind 2
//! (inline stream management, carbons, CSI), XEP-0198 inline resumption, and
//! XEP-0484 FAST tokens (issue, use, bind to mechanism and client, rotate,
//! invalidate, expire, revoke on a password change).

mod common;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;

const SASL2: &str = "urn:xmpp:sasl:2";
const AGENT: &str = "<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software></user-agent>";

/// SASL2 SCRAM-SHA-256 (with `tls-server-end-point` when `plus`); `inline` goes
/// into `<authenticate/>`. Returns everything from `<success` through the
/// features that follow it, or the failure.
fn sasl2_scram(c: &mut Client, user: &str, password: &str, plus: bool, inline: &str) -> String {
    let cb = plus.then(|| ("tls-server-end-point", c.tls_server_end_point()));
    let mut scram = ScramClient::new(ScramKind::Sha256, user, cb);
    c.send(&format!(
        "<authenticate xmlns='{SASL2}' mechanism='{}'><initial-response>{}</initial-response>{inline}</authenticate>",
        scram.mechanism,
        B64.encode(scram.client_first())
    ));
    let got = c.read_until_any(&["</challenge>", "</failure>"]);
    if got.contains("<failure") {
        return got;
    }
    assert!(got.contains(&format!("<challenge xmlns='{SASL2}'>")), "{got}");
    let server_first = String::from_utf8(B64.decode(between(&got, "'>", "</challenge>")).unwrap()).unwrap();
    let client_final = scram.client_final(&server_first, password);
    c.send(&format!("<response xmlns='{SASL2}'>{}</response>", B64.encode(client_final)));
    let got = c.read_until_any(&["</stream:features>", "</failure>"]);
    if got.contains("<success") {
        let v = B64.decode(between(&got, "<additional-data>", "</additional-data>")).unwrap();
        scram.assert_server_final(&String::from_utf8(v).unwrap());
    }
    got
}

/// What the client proves with a FAST token: `user NUL HMAC(token, label || cb)`.
fn ht(token: &str, label: &str, cb: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let mut m = label.as_bytes().to_vec();
    m.extend_from_slice(cb);
    ring::hmac::sign(&key, &m).as_ref().to_vec()
}

/// A FAST login with `token` on a new connection: one message, one answer.
fn fast_login(server: &Server, user: &str, token: &str, mechanism: &str, agent: &str, extra: &str) -> (Client, String) {
    let mut c = server.connect_tls();
    let cb = match mechanism {
        "HT-SHA-256-ENDP" => c.tls_server_end_point(),
        "HT-SHA-256-EXPR" => c.tls_exporter(),
        _ => Vec::new(),
    };
    let mut response = format!("{user}\0").into_bytes();
    response.extend(ht(token, "Initiator", &cb));
    c.send(&format!(
        "<authenticate xmlns='{SASL2}' mechanism='{mechanism}'><initial-response>{}</initial-response>\
         {agent}<fast xmlns='urn:xmpp:fast:0'/>{extra}</authenticate>",
        B64.encode(response)
    ));
    let got = c.read_until_any(&["</stream:features>", "</failure>"]);
    if got.contains("<success") {
        let data = B64.decode(between(&got, "<additional-data>", "</additional-data>")).unwrap();
        assert_eq!(data, ht(token, "Responder", &cb), "the server proves it holds the token");
    }
    (c, got)
}

fn token_of(success: &str) -> String {
    let token = between(success, "<token xmlns='urn:xmpp:fast:0'", "/>");
    between(token, "token='", "'").to_string()
}

#[test]
fn the_features_offer_sasl2_with_bind2_stream_management_and_fast() {
    let server = Server::start();
    let c = server.connect_tls();
    let features = c.received();
    let auth = between(&features, &format!("<authentication xmlns='{SASL2}'>"), "</authentication>");
    assert!(auth.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism>"), "{auth}");
    assert!(auth.contains("<mechanism>SCRAM-SHA-256</mechanism>"), "{auth}");
    let bind = between(auth, "<bind xmlns='urn:xmpp:bind:0'>", "</bind>");
    for f in ["urn:xmpp:carbons:2", "urn:xmpp:csi:0", "urn:xmpp:sm:3"] {
        assert!(bind.contains(&format!("<feature var='{f}'/>")), "{bind}");
    }
    assert!(auth.contains("<sm xmlns='urn:xmpp:sm:3'/>"), "{auth}");
    let fast = between(auth, "<fast xmlns='urn:xmpp:fast:0'>", "</fast>");
    for m in ["HT-SHA-256-ENDP", "HT-SHA-256-NONE"] {
        assert!(fast.contains(&format!("<mechanism>{m}</mechanism>")), "{fast}");
    }
    // The legacy profile stays for clients without SASL2.
    assert!(features.contains("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"), "{features}");
}

#[test]
fn sasl2_with_bind2_binds_enables_stream_management_and_carbons_in_one_exchange() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut phone = server.connect_tls();
    let inline = format!(
        "{AGENT}<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag><enable xmlns='urn:xmpp:carbons:2'/>\
         <enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"
    );
    let success = sasl2_scram(&mut phone, "juliet", "pw", true, &inline);
    assert!(success.contains(&format!("<success xmlns='{SASL2}'>")), "{success}");
    let jid = between(&success, "<authorization-identifier>", "</authorization-identifier>").to_string();
    assert!(jid.starts_with("juliet@localhost/Phone."), "a resource from the tag: {jid}");
    let bound = between(&success, "<bound xmlns='urn:xmpp:bind:0'>", "</bound>");
    assert!(bound.contains("<enabled xmlns='urn:xmpp:sm:3'") && bound.contains("resume='true'"), "{bound}");
    // No restart: the features of the bound stream follow at once, without a header.
    let after = success.split("</success>").nth(1).unwrap();
    assert!(after.starts_with("<stream:features>") && !after.contains("<bind "), "{after}");
    // Bound: stanzas flow, and stream management counts them.
    phone.send("<presence/>");
    phone.read_until(&format!("to='{jid}'/>"), WAIT);
    phone.send("<r xmlns='urn:xmpp:sm:3'/>");
    phone.read_until("<a xmlns='urn:xmpp:sm:3' h='1'/>", WAIT);
    // Carbons are on: what Juliet's laptop sends reaches the phone as a sent carbon.
    let mut laptop = server.login("juliet", "pw", "laptop");
    laptop.send("<message to='romeo@localhost' type='chat' id='c1'><body>hi</body></message>");
    let carbon = phone.read_until("</message>", WAIT);
    assert!(carbon.contains("<sent xmlns='urn:xmpp:carbons:2'>") && carbon.contains("id='c1'"), "{carbon}");
}

#[test]
fn a_sasl2_failure_is_answered_in_its_namespace_and_a_retry_without_bind2_binds_the_legacy_way() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.connect_tls();
    let failure = sasl2_scram(&mut c, "juliet", "wrong", false, "");
    assert!(
        failure
            .contains(&format!("<failure xmlns='{SASL2}'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")),
        "{failure}"
    );
    // An unknown mechanism, then the right password.
    c.send(&format!(
        "<authenticate xmlns='{SASL2}' mechanism='DIGEST-MD5'><initial-response>=</initial-response></authenticate>"
    ));
    let got = c.read_until("</failure>", WAIT);
    assert!(got.contains("<invalid-mechanism xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"), "{got}");
    let success = sasl2_scram(&mut c, "juliet", "pw", false, "");
    assert!(success.contains("<authorization-identifier>juliet@localhost</authorization-identifier>"), "{success}");
    assert!(success.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"), "{success}");
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
    let bound = c.read_until("</iq>", WAIT);
    assert!(bound.contains("<jid>juliet@localhost/r</jid>"), "{bound}");
}

#[test]
fn the_same_client_gets_the_same_resource_and_its_stale_session_gives_way() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let inline = format!("{AGENT}<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>");
    let mut first = server.connect_tls();
    let s1 = sasl2_scram(&mut first, "juliet", "pw", false, &inline);
    let jid1 = between(&s1, "<authorization-identifier>", "</authorization-identifier>").to_string();
    let mut second = server.connect_tls();
    let s2 = sasl2_scram(&mut second, "juliet", "pw", false, &inline);
    let jid2 = between(&s2, "<authorization-identifier>", "</authorization-identifier>").to_string();
    assert_eq!(jid1, jid2, "one client, one resource");
    let closed = first.read_to_close(WAIT);
    assert!(closed.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"), "{closed}");
    // Another client of the account gets another resource.
    let mut other = server.connect_tls();
    let s3 = sasl2_scram(
        &mut other,
        "juliet",
        "pw",
        false,
        "<user-agent id='other'/><bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>",
    );
    let jid3 = between(&s3, "<authorization-identifier>", "</authorization-identifier>");
    assert!(jid3.starts_with("juliet@localhost/Phone.") && jid3 != jid1, "{jid3}");
}

#[test]
fn inline_resumption_resumes_in_the_login_round_trip_and_resends_only_what_was_not_acked() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut phone = server.connect_tls();
    let bind = "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>";
    let success = sasl2_scram(&mut phone, "juliet", "pw", false, &format!("{AGENT}{bind}"));
    let jid = between(&success, "<authorization-identifier>", "</authorization-identifier>").to_string();
    let id = between(&success, "id='", "'").to_string();
    phone.send("<presence/>");
    phone.read_until(&format!("to='{jid}'/>"), WAIT);
    let mut romeo = server.login("romeo", "pw", "r");
    for n in 1..=3 {
        romeo.send(&format!("<message to='{jid}' type='chat' id='m{n}'><body>message {n}</body></message>"));
    }
    phone.read_until("message 3", WAIT);
    // The phone saw them all but acknowledged only its presence echo and the first.
    drop(phone);
    romeo.sync("after-drop");

    let mut back = server.connect_tls();
    let resume = format!("{AGENT}<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='2'/>{bind}");
    let success = sasl2_scram(&mut back, "juliet", "pw", false, &resume);
    assert!(success.contains("<resumed xmlns='urn:xmpp:sm:3'"), "{success}");
    assert!(!success.contains("<bound "), "resumed, not bound again: {success}");
    assert_eq!(between(&success, "<authorization-identifier>", "</authorization-identifier>"), jid);
    back.read_until("message 3", WAIT);
    back.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    back.read_until("id='p1'", WAIT);
    let resent = back.received();
    assert_eq!(resent.matches("message 2").count(), 1, "{resent}");
    assert_eq!(resent.matches("message 3").count(), 1, "{resent}");
    assert!(!resent.contains("message 1"), "acked, not resent: {resent}");

    // An unknown id: `<failed/>` inside the success, and Bind 2 binds instead.
    let mut fresh = server.connect_tls();
    let resume = format!("{AGENT}<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>{bind}");
    let success = sasl2_scram(&mut fresh, "juliet", "pw", false, &resume);
    assert!(success.contains("<failed xmlns='urn:xmpp:sm:3'><item-not-found"), "{success}");
    assert!(success.contains("<bound xmlns='urn:xmpp:bind:0'>"), "{success}");
}

#[test]
fn a_fast_token_logs_in_in_one_round_trip_bound_to_its_mechanism_and_client_and_a_password_change_revokes_it() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.connect_tls();
    let request = format!("{AGENT}<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-ENDP'/>");
    let success = sasl2_scram(&mut c, "juliet", "pw", true, &request);
    let token = token_of(&success);
    assert_eq!(token.len(), 72, "{success}");
    assert!(success.contains("expiry='"), "{success}");
    drop(c);

    let bind = "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>";
    let (mut c, got) = fast_login(&server, "juliet", &token, "HT-SHA-256-ENDP", AGENT, bind);
    assert!(got.contains(&format!("<success xmlns='{SASL2}'>")) && !got.contains("<challenge"), "{got}");
    assert!(got.contains("<bound xmlns='urn:xmpp:bind:0'"), "{got}");
    assert!(!got.contains("<token "), "no new token unasked while it is fresh: {got}");
    c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
    c.read_until("id='p'", WAIT);
    drop(c);

    // Bound to its mechanism, to its client, and to the account.
    let (_c, got) = fast_login(&server, "juliet", &token, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<not-authorized "), "{got}");
    let (_c, got) = fast_login(&server, "juliet", &token, "HT-SHA-256-ENDP", "<user-agent id='another'/>", "");
    assert!(got.contains("<not-authorized "), "{got}");
    let (_c, got) = fast_login(&server, "juliet", "not-the-token", "HT-SHA-256-ENDP", AGENT, "");
    assert!(got.contains("<not-authorized "), "{got}");

    let (ok, text) = server.cli(&["user", "passwd", "juliet@localhost", "--password-stdin"], "new\n");
    assert!(ok, "{text}");
    let (_c, got) = fast_login(&server, "juliet", &token, "HT-SHA-256-ENDP", AGENT, "");
    assert!(got.contains("<not-authorized "), "revoked with the password: {got}");
}

#[test]
fn a_rotated_token_replaces_the_old_one_once_used_and_an_invalidated_one_is_refused() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.connect_tls();
    let request = format!("{AGENT}<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
    let first = token_of(&sasl2_scram(&mut c, "juliet", "pw", false, &request));
    drop(c);
    // A FAST login that asks for a new token gets one; the old one still works
    // until the new one is used (XEP-0484 §3.4: the answer may have been lost).
    let ask = "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>";
    let (_c, got) = fast_login(&server, "juliet", &first, "HT-SHA-256-NONE", AGENT, ask);
    let second = token_of(&got);
    assert_ne!(first, second);
    let (_c, got) = fast_login(&server, "juliet", &first, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<success "), "{got}");
    let (_c, got) = fast_login(&server, "juliet", &second, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<success "), "{got}");
    let (_c, got) = fast_login(&server, "juliet", &first, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<not-authorized "), "older than the one used: {got}");
    // invalidate='true': this login is its last.
    let mut c = server.connect_tls();
    let mut response = b"juliet\0".to_vec();
    response.extend(ht(&second, "Initiator", b""));
    c.send(&format!(
        "<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{}</initial-response>\
         {AGENT}<fast xmlns='urn:xmpp:fast:0' invalidate='true'/></authenticate>",
        B64.encode(response)
    ));
    let got = c.read_until_any(&["</stream:features>", "</failure>"]);
    assert!(got.contains("<success ") && !got.contains("<token "), "{got}");
    let (_c, got) = fast_login(&server, "juliet", &second, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<not-authorized "), "invalidated: {got}");
}

#[test]
fn an_expired_token_is_answered_credentials_expired() {
    let server = Server::start_with("fast_token_lifetime = 1\n");
    server.add_user("juliet", "pw");
    let mut c = server.connect_tls();
    let request = format!("{AGENT}<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>");
    let token = token_of(&sasl2_scram(&mut c, "juliet", "pw", false, &request));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (_c, got) = fast_login(&server, "juliet", &token, "HT-SHA-256-NONE", AGENT, "");
    assert!(got.contains("<credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"), "{got}");
}
