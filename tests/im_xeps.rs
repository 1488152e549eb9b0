//! The everyday XEPs on the wire: XEP-0280 message carbons, XEP-0199 keepalive
//! pings from the server.

mod common;
use common::*;
use std::time::Duration;

fn enable_carbons(c: &mut Client) {
    c.send("<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
    c.read_until("id='cc' type='result'", WAIT);
}

#[test]
fn carbons_copy_sent_and_received_chats_to_enabled_resources() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut a = server.login("juliet", "pw", "a");
    let mut b = server.login("juliet", "pw", "b");
    let mut c = server.login("juliet", "pw", "c");
    enable_carbons(&mut a);
    enable_carbons(&mut b);
    let mut romeo = server.login("romeo", "pw", "phone");
    romeo.send("<message to='juliet@localhost/a' type='chat' id='m1'><body>hello a</body></message>");
    assert!(a.read_until("</message>", WAIT).contains("<body>hello a</body>"));
    let copy = b.read_until("</message></forwarded></received></message>", WAIT);
    assert!(copy.contains("<message from='juliet@localhost' to='juliet@localhost/b' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'"), "{copy}");
    assert!(copy.contains("from='romeo@localhost/phone'") && copy.contains("<body>hello a</body>"), "{copy}");
    b.send("<message to='romeo@localhost/phone' type='chat' id='m2'><body>from b</body></message>");
    assert!(romeo.read_until("</message>", WAIT).contains("<body>from b</body>"));
    let sent = a.read_until("</sent></message>", WAIT);
    assert!(sent.contains("<sent xmlns='urn:xmpp:carbons:2'>") && sent.contains("from='juliet@localhost/b'"), "{sent}");
    // Private messages and resources without carbons get no copies.
    romeo.send("<message to='juliet@localhost/a' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>");
    a.read_until("secret", WAIT);
    romeo.sync("r1");
    assert!(!b.sync("b1").contains("secret"));
    let got = c.sync("c1");
    assert!(!got.contains("<forwarded"), "{got}");
    // The server announces the feature.
    a.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert!(a.read_until("</iq>", WAIT).contains("<feature var='urn:xmpp:carbons:2'/>"));
}

#[test]
fn a_silent_client_is_pinged_and_a_dead_one_is_dropped() {
    let server = Server::start_with("c2s_ping_interval = 1\nc2s_ping_timeout = 1");
    server.add_user("juliet", "pw");
    let mut alive = server.login("juliet", "pw", "alive");
    let mut dead = server.login("juliet", "pw", "dead");
    let ping = alive.read_until("</iq>", Duration::from_secs(5));
    assert!(ping.contains("<iq type='get' id='wrenhub-keepalive'><ping xmlns='urn:xmpp:ping'/></iq>"), "{ping}");
    alive.send("<iq type='result' id='wrenhub-keepalive' to='localhost'/>");
    // The one that never answers is closed after the ping timeout.
    let got = dead.read_to_close(Duration::from_secs(8));
    assert_stream_error(&got, "connection-timeout");
    assert!(got.contains("c2s_ping_timeout"), "{got}");
    // The answering client is still there.
    alive.sync("p");
}

#[test]
fn vcards_are_set_by_their_owner_and_read_by_anyone() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut juliet = server.login("juliet", "pw", "a");
    let mut romeo = server.login("romeo", "pw", "b");
    juliet.send("<iq type='get' id='v0'><vCard xmlns='vcard-temp'/></iq>");
    assert!(juliet.read_until("</iq>", WAIT).contains("<vCard xmlns='vcard-temp'/>"));
    juliet.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><NICKNAME>Jules &amp; co</NICKNAME></vCard></iq>");
    juliet.read_until("id='v1' type='result'", WAIT);
    romeo.send("<iq type='get' id='v2' to='juliet@localhost'><vCard xmlns='vcard-temp'/></iq>");
    let got = romeo.read_until("</iq>", WAIT);
    assert!(got.contains("from='juliet@localhost'") && got.contains("<NICKNAME>Jules &amp; co</NICKNAME>"), "{got}");
    romeo.send("<iq type='set' id='v3' to='juliet@localhost'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>");
    assert!(romeo.read_until("</iq>", WAIT).contains("<forbidden "));
    romeo.send("<iq type='get' id='r' to='juliet@localhost'><query xmlns='jabber:iq:roster'/></iq>");
    assert!(romeo.read_until("</iq>", WAIT).contains("<forbidden "), "another account's roster is not readable");
}

#[test]
fn private_xml_storage_and_entity_time() {
    let server = Server::start_with("max_private_items = 1");
    server.add_user("juliet", "pw");
    let mut c = server.login("juliet", "pw", "a");
    c.send("<iq type='get' id='p0'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>");
    assert!(c
        .read_until("</iq>", WAIT)
        .contains("<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"));
    c.send("<iq type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs></query></iq>");
    c.read_until("id='p1' type='result'", WAIT);
    c.send("<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>");
    assert!(c.read_until("</iq>", WAIT).contains("<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>"));
    c.send("<iq type='set' id='p3'><query xmlns='jabber:iq:private'><other xmlns='urn:example:other'/></query></iq>");
    assert!(c.read_until("</iq>", WAIT).contains("max_private_items"));
    c.send("<iq type='set' id='p4'><query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query></iq>");
    assert!(c.read_until("</iq>", WAIT).contains("<not-acceptable "));
    c.send("<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>");
    let t = c.read_until("</iq>", WAIT);
    assert!(t.contains("<tzo>+00:00</tzo><utc>20") && t.contains("Z</utc>"), "{t}");
}

#[test]
fn blocking_command_stops_stanzas_both_ways_until_unblocked() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut juliet = server.login("juliet", "pw", "a");
    let mut other = server.login("juliet", "pw", "b");
    let mut romeo = server.login("romeo", "pw", "phone");
    for c in [&mut juliet, &mut other] {
        c.send("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
        assert!(c.read_until("</iq>", WAIT).contains("<blocklist xmlns='urn:xmpp:blocking'/>"));
    }
    juliet.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>");
    juliet.read_until("id='b1' type='result'", WAIT);
    let push = other.read_until("</iq>", WAIT);
    assert!(push.contains("<block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block>"), "{push}");
    romeo.send("<message to='juliet@localhost/a' id='in'><body>let me in</body></message>");
    let got = romeo.read_until("</message>", WAIT);
    assert!(got.contains("id='in'") && got.contains("<service-unavailable "), "{got}");
    juliet.send("<message to='romeo@localhost/phone' id='out'><body>bye</body></message>");
    let got = juliet.read_until("</message>", WAIT);
    assert!(got.contains("<not-acceptable ") && got.contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"), "{got}");
    assert!(!juliet.sync("j1").contains("let me in"));
    juliet.send("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>");
    juliet.read_until("id='u1' type='result'", WAIT);
    romeo.send("<message to='juliet@localhost/a' id='in2'><body>hello again</body></message>");
    assert!(juliet.read_until("</message>", WAIT).contains("hello again"));
}

#[test]
fn last_activity_of_the_server_and_of_accounts() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "phone");
    romeo.send("<iq type='get' id='l0' to='localhost'><query xmlns='jabber:iq:last'/></iq>");
    assert!(romeo.read_until("</iq>", WAIT).contains("<query xmlns='jabber:iq:last' seconds='"));
    // Juliet has never been online, and Romeo may not ask anyway: forbidden.
    romeo.send("<iq type='get' id='l1' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>");
    assert!(romeo.read_until("</iq>", WAIT).contains("<forbidden "));
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<iq type='get' id='l2' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>");
    assert!(juliet
        .read_until("</iq>", WAIT)
        .contains("id='l2' type='result'><query xmlns='jabber:iq:last' seconds='0'/>"));
    drop(juliet);
    std::thread::sleep(Duration::from_millis(300));
    let mut back = server.login("juliet", "pw", "b");
    back.send("<iq type='get' id='l3' to='juliet@localhost'><query xmlns='jabber:iq:last'/></iq>");
    let got = back.read_until("</iq>", WAIT);
    assert!(got.contains("seconds='0'") || got.contains("seconds='1'"), "{got}");
}

#[test]
fn entity_caps_in_stream_features_match_disco_info() {
    use base64::Engine;
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.login("juliet", "pw", "a");
    let features = c.received();
    let ver = between(
        &features,
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://wrenhub.invalid/caps' ver='",
        "'/>",
    )
    .to_string();
    c.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = c.read_until("</iq>", WAIT);
    let mut vars: Vec<&str> = info.split("<feature var='").skip(1).map(|f| f.split('\'').next().unwrap()).collect();
    vars.sort_unstable();
    let mut s = String::from("server/im//wrenhub<");
    for v in vars {
        s.push_str(v);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    assert_eq!(ver, base64::engine::general_purpose::STANDARD.encode(digest.as_ref()));
}

#[test]
fn unblocking_a_contact_shares_presence_again_both_ways() {
    // XEP-0191 §3.3: blocking hid presence; unblocking never brought it back.
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut j = server.login("juliet", "pw", "a");
    let mut r = server.login("romeo", "pw", "b");
    j.subscription("romeo", "subscribe");
    r.subscription("juliet", "subscribed");
    r.subscription("juliet", "subscribe");
    j.subscription("romeo", "subscribed");
    j.send("<presence><show>chat</show></presence>");
    j.sync("j0");
    r.send("<presence><show>away</show></presence>");
    r.sync("r0");
    j.sync("j1");
    j.send("<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block></iq>");
    j.read_until("id='bl' type='result'", WAIT);
    let got = r.sync("r1");
    assert!(got.contains("from='juliet@localhost/a' to='romeo@localhost/b' type='unavailable'"), "{got}");
    j.send("<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>");
    let mine = j.read_until("id='ub' type='result'", WAIT);
    let got = r.sync("r2");
    assert!(got.contains("from='juliet@localhost/a'") && got.contains("<show>chat</show>"), "romeo sees juliet: {got}");
    let mine = mine + &j.sync("j2");
    assert!(
        mine.contains("from='romeo@localhost/b'") && mine.contains("<show>away</show>"),
        "juliet sees romeo: {mine}"
    );
}

/// XEP-0215: the configured STUN and TURN servers, with TURN credentials in
/// coturn's time-limited scheme, for the hub's own users.
#[test]
fn external_services_list_stun_and_turn_with_credentials_that_expire() {
    use base64::Engine;
    let server = Server::start_with(
        "stun_servers = 'stun.hub.lan:3478'\nturn_servers = 'turn.hub.lan:3478, 10.0.0.2:5349'\nturn_secret = 'north'\n",
    );
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    juliet.send("<iq type='get' id='info' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = juliet.read_until("id='info'", WAIT) + &juliet.read_until("</iq>", WAIT);
    assert!(info.contains("var='urn:xmpp:extdisco:2'"), "{info}");
    juliet.send("<iq type='get' id='all' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>");
    let all = juliet.read_until("id='all'", WAIT) + &juliet.read_until("</iq>", WAIT);
    assert_eq!(all.matches("<service ").count(), 6, "three servers, UDP and TCP each: {all}");
    assert_eq!(all.matches("type='stun'").count(), 2, "{all}");
    let turn = all.split("<service ").find(|s| s.contains("host='turn.hub.lan'")).unwrap();
    let username = between(turn, "username='", "'");
    let (expires, account) = username.split_once(':').unwrap();
    assert_eq!(account, "juliet@localhost");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expires: u64 = expires.parse().unwrap();
    assert!(expires > now + 86000 && expires <= now + 86400 + 5, "a day from now: {expires} vs {now}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north");
    let expected =
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref());
    assert_eq!(between(turn, "password='", "'"), expected, "the TURN server can check it with the shared secret");
    // Only STUN, then credentials for one TURN host, and none for a host not configured.
    juliet.send("<iq type='get' id='stun' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>");
    let stun = juliet.read_until("id='stun'", WAIT) + &juliet.read_until("</iq>", WAIT);
    assert!(stun.matches("<service ").count() == 2 && !stun.contains("turn"), "{stun}");
    juliet.send(
        "<iq type='get' id='cred' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='10.0.0.2' type='turn'/></credentials></iq>",
    );
    let cred = juliet.read_until("id='cred'", WAIT) + &juliet.read_until("</iq>", WAIT);
    assert!(cred.contains("<credentials") && cred.contains("host='10.0.0.2'") && cred.contains("password='"), "{cred}");
    juliet.send(
        "<iq type='get' id='none' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='elsewhere' type='turn'/></credentials></iq>",
    );
    let none = juliet.read_until("id='none'", WAIT) + &juliet.read_until("</iq>", WAIT);
    assert!(none.contains("item-not-found"), "{none}");
}
