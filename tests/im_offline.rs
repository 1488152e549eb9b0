//! XEP-0160 offline messages with XEP-0203 delay stamps, on the wire: stored for an
//! account with no available resource, delivered at its next available presence,
//! removed after delivery, bounded by quotas (the sender is told), durable across
//! a kill -9.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn messages_wait_for_the_next_available_presence_with_a_delay_stamp() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    for i in 0..3 {
        romeo.send(&format!(
            "<message to='juliet@localhost' id='o{i}' type='chat'><body>while you slept {i}</body></message>"
        ));
    }
    romeo.send("<message to='juliet@localhost' type='headline'><body>news</body></message>");
    assert!(romeo.quiet_for(Duration::from_millis(300)), "no error for stored messages: {}", romeo.received());
    let mut juliet = server.login("juliet", "pw", "balcony");
    // Negative priority: not a delivery target (XEP-0160 §3).
    juliet.send("<presence><priority>-1</priority></presence>");
    juliet.read_until("</presence>", WAIT);
    assert!(juliet.quiet_for(Duration::from_millis(300)));
    juliet.send("<presence/>");
    for i in 0..3 {
        let m = juliet.read_until("</message>", WAIT);
        assert!(m.contains(&format!("<body>while you slept {i}</body>")), "{m}");
        assert!(m.contains("from='romeo@localhost/garden'"), "{m}");
        assert!(m.contains("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='"), "{m}");
    }
    juliet.quiet_for(Duration::from_millis(300));
    assert!(!juliet.received().contains("news"), "a headline is not stored");
    drop(juliet);
    // Delivered once: the next login gets nothing.
    let mut again = server.login("juliet", "pw", "phone");
    again.send("<presence/>");
    again.read_until("<presence from='juliet@localhost/phone' to='juliet@localhost/phone'/>", WAIT);
    again.quiet_for(Duration::from_millis(300));
    assert!(!again.received().contains("<message"), "{}", again.received());
}

#[test]
fn offline_quota_is_answered_with_service_unavailable() {
    let server = Server::start_with("max_offline_per_account = 2");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    for i in 0..2 {
        romeo.send(&format!("<message to='juliet@localhost' id='ok{i}'><body>{i}</body></message>"));
    }
    romeo.send("<message to='juliet@localhost' id='over'><body>too many</body></message>");
    let got = romeo.read_until("</message>", WAIT);
    assert!(
        got.contains("id='over'") && got.contains("<service-unavailable ") && got.contains("offline storage is full"),
        "{got}"
    );
}

#[test]
fn stored_messages_survive_kill_9() {
    let mut server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send("<message to='juliet@localhost' id='k'><body>before the crash</body></message>");
    // The ping's answer comes after the message was handled (and committed).
    romeo.send("<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>");
    romeo.read_until("id='sync' type='result'", WAIT);
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let mut juliet = restarted.login("juliet", "pw", "balcony");
    juliet.send("<presence/>");
    assert!(juliet.read_until("</message>", WAIT).contains("<body>before the crash</body>"));
}
