//! XEP-0198 stream management on the wire: enabling, acks both ways, a dropped
//! connection that hibernates and is resumed with nothing lost or sent twice,
//! the failure cases of `<resume/>`, and expiry into offline storage.

mod common;
use common::*;

const SM: &str = "urn:xmpp:sm:3";

/// Logs in, binds, enables stream management with resumption; returns the
/// client and its resumption id.
fn sm_login(server: &Server, user: &str, resource: &str) -> (Client, String) {
    let mut c = server.login(user, "pw", resource);
    c.send(&format!("<enable xmlns='{SM}' resume='true'/>"));
    let enabled = c.read_until("/>", WAIT);
    assert!(enabled.contains("<enabled xmlns='urn:xmpp:sm:3'") && enabled.contains("resume='true'"), "{enabled}");
    let id = between(&enabled, "id='", "'").to_string();
    assert_eq!(id.len(), 32, "an unguessable id: {enabled}");
    (c, id)
}

/// Authenticates (no bind) and sends `<resume/>`; returns the client and what
/// the server answered.
fn resume(server: &Server, user: &str, id: &str, h: u32) -> (Client, String) {
    let mut c = server.connect_tls();
    assert!(c.scram(ScramKind::Sha256, user, "pw"));
    let header = c.header();
    c.send(&header);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(features.contains("<sm xmlns='urn:xmpp:sm:3'/>"), "{features}");
    c.send(&format!("<resume xmlns='{SM}' previd='{id}' h='{h}'/>"));
    let mut got = c.read_until_any(&["<resumed ", "</failed>"]);
    if got.ends_with("<resumed ") {
        got.push_str(&c.read_until("/>", WAIT));
    }
    (c, got)
}

/// Asks for the server's count and returns it.
fn server_h(c: &mut Client) -> u32 {
    c.send(&format!("<r xmlns='{SM}'/>"));
    c.read_until("<a xmlns='urn:xmpp:sm:3' h='", WAIT);
    let h = c.read_until("'/>", WAIT);
    h.trim_end_matches("'/>").parse().expect(&h)
}

/// Juliet (`…/phone`, stream management with resumption, available, her
/// presence echo read) and Romeo (`…/b`); returns both and her resumption id.
fn juliet_with_sm_and_romeo(server: &Server) -> (Client, String, Client) {
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let (mut juliet, id) = sm_login(server, "juliet", "phone");
    juliet.send("<presence/>");
    juliet.read_until("to='juliet@localhost/phone'/>", WAIT);
    let romeo = server.login("romeo", "pw", "b");
    (juliet, id, romeo)
}

fn chat(n: usize, to: &str) -> String {
    format!("<message to='{to}' id='m{n}' type='chat'><body>message {n}</body></message>")
}

#[test]
fn the_feature_is_offered_and_acks_count_stanzas_both_ways() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let (mut juliet, _) = sm_login(&server, "juliet", "a");
    let mut romeo = server.login("romeo", "pw", "b");
    assert_eq!(server_h(&mut juliet), 0, "nothing handled yet");
    juliet.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    juliet.send("<presence/>");
    assert_eq!(server_h(&mut juliet), 2, "the iq and the presence");
    for n in 0..3 {
        romeo.send(&chat(n, "juliet@localhost/a"));
    }
    romeo.sync("sent");
    juliet.read_until("message 2", WAIT);
    // What juliet got since enabling: the ping's result, her presence echo, 3 messages.
    juliet.send(&format!("<a xmlns='{SM}' h='5'/>"));
    assert_eq!(server_h(&mut juliet), 2, "her <r/> and <a/> are not stanzas");
    // An h above what was sent ends the stream with the XEP's condition.
    juliet.send(&format!("<a xmlns='{SM}' h='99'/>"));
    let got = juliet.read_to_close(WAIT);
    assert!(got.contains("<undefined-condition ") && got.contains("<handled-count-too-high "), "{got}");
}

#[test]
fn a_dropped_session_is_resumed_and_gets_exactly_what_it_did_not_acknowledge() {
    let server = Server::start();
    let (mut juliet, id, mut romeo) = juliet_with_sm_and_romeo(&server);
    for n in 0..4 {
        romeo.send(&chat(n, "juliet@localhost/phone"));
    }
    romeo.sync("s1");
    juliet.read_until("message 3", WAIT);
    // She acknowledges her presence echo and two messages, then her radio dies.
    juliet.send(&format!("<a xmlns='{SM}' h='3'/>"));
    juliet.sync("acked");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    // Meanwhile more arrives for her; it waits in the session.
    romeo.send(&chat(4, "juliet@localhost/phone"));
    romeo.send(&chat(5, "juliet@localhost"));
    let meanwhile = romeo.sync("s2");
    assert!(!meanwhile.contains("type='error'"), "{meanwhile}");
    // The ping result after "acked" was the 5th stanza she got: h=3 leaves two
    // messages and the ping result unacknowledged.
    let (mut juliet, got) = resume(&server, "juliet", &id, 3);
    assert!(got.contains("<resumed xmlns='urn:xmpp:sm:3' previd="), "{got}");
    let rest = juliet.sync("after");
    for n in [2, 3, 4, 5] {
        assert_eq!(rest.matches(&format!("<body>message {n}</body>")).count(), 1, "message {n} once: {rest}");
    }
    for n in [0, 1] {
        assert!(!rest.contains(&format!("<body>message {n}</body>")), "acknowledged, not sent again: {rest}");
    }
    // Her presence stayed available: romeo still reaches her full JID.
    romeo.send(&chat(6, "juliet@localhost/phone"));
    juliet.read_until("message 6", WAIT);
}

#[test]
fn resume_needs_the_same_account_a_known_id_and_fails_with_item_not_found() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("mallory", "pw");
    let (juliet, id) = sm_login(&server, "juliet", "phone");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    let (_m, got) = resume(&server, "mallory", &id, 0);
    assert!(got.contains("<failed xmlns='urn:xmpp:sm:3'") && got.contains("<item-not-found "), "{got}");
    let (_j, got) = resume(&server, "juliet", "0123456789abcdef0123456789abcdef", 0);
    assert!(got.contains("<item-not-found "), "{got}");
    // After a failed resume the client binds as usual; the real one still resumes.
    let (_j, got) = resume(&server, "juliet", &id, 0);
    assert!(got.contains("<resumed "), "{got}");
}

#[test]
fn resuming_while_the_old_connection_is_open_closes_it_with_conflict() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let (mut old, id) = sm_login(&server, "juliet", "phone");
    old.sync("up");
    let (mut new, got) = resume(&server, "juliet", &id, 0);
    assert!(got.contains("<resumed "), "{got}");
    let closed = old.read_to_close(WAIT);
    assert!(closed.contains("<conflict "), "{closed}");
    // The session goes on over the new connection: the old one's close did not end
    // it (no unavailable presence, nothing rerouted to offline storage).
    new.sync("alive");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "b");
    romeo.send(&chat(1, "juliet@localhost/phone"));
    new.read_until("message 1", WAIT);
    assert!(!server.log().contains("routed again"), "{}", server.log());
}

#[test]
fn two_resumes_racing_for_one_id_leave_one_connection_with_the_session_and_nothing_sent_twice_to_it() {
    let server = Server::start();
    let (mut juliet, id, mut romeo) = juliet_with_sm_and_romeo(&server);
    romeo.send(&chat(0, "juliet@localhost/phone"));
    juliet.read_until("message 0", WAIT);
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    // Two connections of the same phone (an old socket that came back, a new one)
    // authenticate, then both resume, each sending before either is answered.
    let mut racers: Vec<Client> = (0..2)
        .map(|_| {
            let mut c = server.connect_tls();
            assert!(c.scram(ScramKind::Sha256, "juliet", "pw"));
            let header = c.header();
            c.send(&header);
            c.read_until("</stream:features>", WAIT);
            c
        })
        .collect();
    for c in &mut racers {
        c.send(&format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"));
    }
    // Both are answered `<resumed/>` in turn; the later takes the session over and
    // the earlier is told `conflict` and closed. Which is later is the server's
    // order of reading them, so the loser is the one that gets `conflict`.
    for c in &mut racers {
        let got = c.read_until_any(&["<resumed ", "</failed>"]);
        assert!(got.ends_with("<resumed "), "{got}");
    }
    let deadline = std::time::Instant::now() + WAIT;
    let loser = loop {
        if let Some(i) = racers.iter().position(|c| c.received().contains("<conflict ")) {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "neither connection was told conflict");
        for c in &mut racers {
            c.read_some(std::time::Duration::from_millis(20));
        }
    };
    let mut loser = racers.remove(loser);
    let mut winner = racers.remove(0);
    loser.read_to_close(WAIT);
    winner.sync("won");
    romeo.send(&chat(1, "juliet@localhost/phone"));
    romeo.sync("sent");
    winner.read_until("message 1", WAIT);
    winner.sync("after");
    let all = winner.received();
    // h=1 acknowledged her presence echo: message 0 is resent, once, like message 1.
    for n in [0, 1] {
        assert_eq!(all.matches(&format!("message {n}")).count(), 1, "{all}");
    }
    assert!(!loser.received().contains("message 1"), "{}", loser.received());
}

#[test]
fn an_expired_session_puts_what_it_never_acknowledged_into_offline_storage_once() {
    let server = Server::start_with("sm_resume_timeout = 1\n");
    let (mut juliet, id, mut romeo) = juliet_with_sm_and_romeo(&server);
    for n in 0..3 {
        romeo.send(&chat(n, "juliet@localhost"));
    }
    romeo.sync("s");
    juliet.read_until("message 2", WAIT);
    // Presence echo and message 0 acknowledged; 1 and 2 are not.
    juliet.send(&format!("<a xmlns='{SM}' h='2'/>"));
    juliet.sync("acked");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone was not resumed", WAIT);
    let (_late, got) = resume(&server, "juliet", &id, 2);
    assert!(got.contains("<item-not-found "), "expired: {got}");
    // Her next login gets 1 and 2 from offline storage, and 0 not again.
    let mut juliet = server.login("juliet", "pw", "laptop");
    juliet.send("<presence/>");
    let got = juliet.read_until("message 2", WAIT);
    assert!(got.contains("<body>message 1</body>") && !got.contains("<body>message 0</body>"), "{got}");
    let rest = juliet.sync("done");
    assert!(!rest.contains("<body>message"), "nothing twice: {rest}");
}

#[test]
fn an_ack_covering_the_offline_batch_removes_it_and_an_expired_one_is_neither_lost_nor_doubled() {
    let server = Server::start_with("sm_resume_timeout = 1\n");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "b");
    for n in 0..3 {
        romeo.send(&chat(n, "juliet@localhost"));
    }
    romeo.sync("stored");
    // Offline delivery with stream management: the batch and its closing ping are
    // acknowledged with `<a h/>`, not by answering the ping.
    let (mut juliet, _id) = sm_login(&server, "juliet", "phone");
    juliet.send("<presence/>");
    let batch = juliet.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
    assert_eq!(batch.matches("<body>message").count(), 3, "{batch}");
    // Presence echo, three messages, the ping: h=5 covers them all.
    juliet.send(&format!("<a xmlns='{SM}' h='5'/>"));
    juliet.sync("acked");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone was not resumed", WAIT);

    // Again, but the phone drops before acknowledging: the batch stays in the
    // store, and the expiry does not route a second copy of it.
    for n in 3..5 {
        romeo.send(&chat(n, "juliet@localhost"));
    }
    romeo.sync("stored-again");
    let (mut juliet, _id) = sm_login(&server, "juliet", "phone");
    juliet.send("<presence/>");
    let batch = juliet.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
    // The first batch was acknowledged, so it left the store.
    for n in 0..3 {
        assert!(!batch.contains(&format!("<body>message {n}</body>")), "acknowledged, so removed: {batch}");
    }
    drop(juliet);
    server.wait_for_log_nth("juliet@localhost/phone was not resumed", 2, WAIT);
    let mut laptop = server.login("juliet", "pw", "laptop");
    laptop.send("<presence/>");
    let got = laptop.read_until("<ping xmlns='urn:xmpp:ping'/></iq>", WAIT);
    let id = between(&got, "<iq type='get' id='", "'").to_string();
    laptop.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    let rest = laptop.sync("all");
    let all = format!("{got}{rest}");
    for n in 3..5 {
        assert_eq!(all.matches(&format!("<body>message {n}</body>")).count(), 1, "message {n} once: {all}");
    }
}

#[test]
fn unacknowledged_stanzas_make_the_server_ask_after_sm_ack_request_delay() {
    let server = Server::start_with("sm_ack_request_delay = 1\n");
    let (mut juliet, _id, mut romeo) = juliet_with_sm_and_romeo(&server);
    romeo.send(&chat(0, "juliet@localhost/phone"));
    juliet.read_until("message 0", WAIT);
    // Two stanzas (presence echo, message), fewer than the batch that asks at once.
    juliet.read_until(&format!("<r xmlns='{SM}'/>"), WAIT);
    juliet.send(&format!("<a xmlns='{SM}' h='2'/>"));
    romeo.send(&chat(1, "juliet@localhost/phone"));
    juliet.read_until("message 1", WAIT);
    juliet.read_until(&format!("<r xmlns='{SM}'/>"), WAIT);
}

#[test]
fn a_replaced_session_passes_its_messages_on_but_not_the_answers_and_presence_it_was_sent() {
    let server = Server::start();
    let (mut juliet, _id, mut romeo) = juliet_with_sm_and_romeo(&server);
    juliet.send("<iq type='get' id='old-ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    juliet.read_until("id='old-ping'", WAIT);
    romeo.send(&chat(1, "juliet@localhost/phone"));
    juliet.read_until("message 1", WAIT);
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    // The same resource binds again (no resumption): the old session ends, and
    // what it never acknowledged is routed again.
    let mut juliet = server.login("juliet", "pw", "phone");
    server.wait_for_log("queued stanza(s) routed again", WAIT);
    let got = juliet.sync("fresh");
    assert_eq!(got.matches("message 1").count(), 1, "the message is passed on: {got}");
    assert!(!got.contains("old-ping"), "an answer to the old session's request: {got}");
    assert!(!got.contains("<presence"), "presence sent to the old session: {got}");
}

#[test]
fn on_sigterm_a_hibernated_session_ends_and_its_unacknowledged_messages_are_kept() {
    let mut server = Server::start();
    let (mut juliet, _, mut romeo) = juliet_with_sm_and_romeo(&server);
    romeo.send(&chat(0, "juliet@localhost"));
    romeo.sync("s");
    juliet.read_until("message 0", WAIT);
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    server.signal("TERM");
    let status = server.wait_exit(WAIT).expect("exits");
    assert!(status.success(), "{status:?}");
    server.wait_for_log("juliet@localhost/phone was not resumed", WAIT);
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let mut juliet = restarted.login("juliet", "pw", "laptop");
    juliet.send("<presence/>");
    assert!(juliet.read_until("</message>", WAIT).contains("<body>message 0</body>"));
}

#[test]
fn after_a_server_restart_resumption_fails_with_item_not_found() {
    let mut server = Server::start();
    server.add_user("juliet", "pw");
    let (juliet, id) = sm_login(&server, "juliet", "phone");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    server.signal("TERM");
    server.wait_exit(WAIT).expect("exits");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let (_j, got) = resume(&restarted, "juliet", &id, 0);
    assert!(got.contains("<item-not-found "), "{got}");
}

#[test]
fn a_hibernating_session_queues_within_its_limit_and_the_rest_bounces() {
    // Nothing is lost silently: past c2s_queue_size the sender hears of it.
    let server = Server::start_with("c2s_queue_size = 4096\n");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let (juliet, id) = sm_login(&server, "juliet", "phone");
    drop(juliet);
    server.wait_for_log("juliet@localhost/phone hibernates", WAIT);
    let mut romeo = server.login("romeo", "pw", "b");
    let body = "x".repeat(400);
    for n in 0..20 {
        romeo.send(&format!(
            "<message to='juliet@localhost/phone' id='q{n}' type='chat'><body>{n} {body}</body></message>"
        ));
    }
    let answers = romeo.sync("sent");
    let bounced = answers.matches("<resource-constraint ").count();
    assert!(bounced > 0 && bounced < 20, "some queued, the rest bounced: {answers}");
    let (mut juliet, got) = resume(&server, "juliet", &id, 0);
    assert!(got.contains("<resumed "), "{got}");
    let delivered = juliet.sync("after").matches("<body>").count();
    assert_eq!(delivered + bounced, 20, "every message delivered or bounced, none both");
}
