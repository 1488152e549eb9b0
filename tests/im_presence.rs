//! RFC 6121 §3–§4 on the wire between local accounts: the subscription handshake
//! and its roster pushes, presence broadcast and probes, stored requests, directed
//! presence, and unavailable presence when a connection drops.

mod common;
use common::*;

/// Logs in, asks for the roster and sends initial presence; returns the client with
/// everything up to its own presence echo consumed.
fn online(server: &Server, user: &str, resource: &str) -> Client {
    let mut c = server.login(user, "pw", resource);
    c.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
    c.read_until_any(&["id='roster' type='result'/>", "</iq>"]);
    c.send("<presence/>");
    c.read_until(&format!("<presence from='{user}@localhost/{resource}' to='{user}@localhost/{resource}'/>"), WAIT);
    c
}

fn users(server: &Server, names: &[&str]) {
    for n in names {
        server.add_user(n, "pw");
    }
}

/// Juliet (balcony) asks for Romeo's (garden) presence and he approves; returns
/// once his presence has reached her.
fn juliet_subscribes_to_romeo(juliet: &mut Client, romeo: &mut Client) {
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    romeo.read_until("type='subscribe'/>", WAIT);
    romeo.send("<presence to='juliet@localhost' type='subscribed'/>");
    romeo.read_until("subscription='from'", WAIT);
    romeos_presence_replayed(juliet);
}

/// Reads up to the end of Romeo's stored presence replayed to Juliet's bare JID
/// (with its XEP-0203 stamp).
fn romeos_presence_replayed(juliet: &mut Client) -> String {
    let mut got = juliet.read_until(
        "<presence from='romeo@localhost/garden' to='juliet@localhost'><delay xmlns='urn:xmpp:delay' stamp='",
        WAIT,
    );
    got.push_str(&juliet.read_until("</presence>", WAIT));
    got
}

/// Reads the next stanza of this kind (up to its end) from `c`.
fn next(c: &mut Client, end: &str) -> String {
    c.read_until(end, WAIT)
}

#[test]
fn subscription_handshake_updates_both_rosters_and_starts_presence() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    let mut romeo = online(&server, "romeo", "garden");
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    let push = next(&mut juliet, "</iq>");
    assert!(push.contains("jid='romeo@localhost' subscription='none' ask='subscribe'"), "{push}");
    let request = romeo.read_until("type='subscribe'/>", WAIT);
    assert!(request.contains("<presence from='juliet@localhost' to='romeo@localhost' type='subscribe'/>"), "{request}");
    romeo.send("<presence to='juliet@localhost' type='subscribed'/>");
    let push = next(&mut romeo, "</iq>");
    assert!(push.contains("jid='juliet@localhost' subscription='from'"), "{push}");
    let got = romeos_presence_replayed(&mut juliet);
    assert!(got.contains("jid='romeo@localhost' subscription='to'"), "{got}");
    assert!(got.contains("<presence from='romeo@localhost' to='juliet@localhost' type='subscribed'/>"), "{got}");
    // Romeo's updates reach Juliet; Juliet's do not reach Romeo (he is not subscribed).
    romeo.send("<presence><show>away</show></presence>");
    let away = juliet.read_until("</presence>", WAIT);
    assert!(away.contains("from='romeo@localhost/garden'") && away.contains("<show>away</show>"), "{away}");
    juliet.send("<presence><show>dnd</show></presence>");
    juliet.read_until("</presence>", WAIT); // her own echo
    romeo.read_until("</presence>", WAIT); // his own echo of "away"
    juliet.sync("j1");
    let got = romeo.sync("r1");
    assert!(!got.contains("<show>dnd</show>"), "romeo got juliet's presence: {got}");
}

#[test]
fn a_request_to_an_offline_contact_is_delivered_at_its_next_initial_presence() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    juliet.read_until("</iq>", WAIT);
    let mut romeo = server.login("romeo", "pw", "garden");
    // Not in his roster: the request is kept out of sight until he decides.
    romeo.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = romeo.read_until_any(&["/></iq>", "</iq>"]);
    assert!(!roster.contains("juliet"), "{roster}");
    romeo.send("<presence/>");
    let got = romeo.read_until("type='subscribe'/>", WAIT);
    assert!(got.contains("<presence from='juliet@localhost' to='romeo@localhost' type='subscribe'/>"), "{got}");
}

#[test]
fn initial_presence_probes_contacts_and_a_dropped_connection_is_unavailable() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    let mut romeo = online(&server, "romeo", "garden");
    juliet_subscribes_to_romeo(&mut juliet, &mut romeo);
    // A second resource of Juliet gets Romeo's presence by probe at its initial presence.
    let mut phone = server.login("juliet", "pw", "phone");
    phone.send("<presence/>");
    // The answer to the probe says when Romeo sent it (RFC 6121 §4.3.2, XEP-0203).
    let start =
        "<presence from='romeo@localhost/garden' to='juliet@localhost/phone'><delay xmlns='urn:xmpp:delay' stamp='";
    phone.read_until(start, WAIT);
    let stamp = phone.read_until("</presence>", WAIT);
    // `YYYY-MM-DDTHH:MM:SS.mmmZ` (XEP-0082).
    let (time, rest) = stamp.split_at(24.min(stamp.len()));
    assert!(time.as_bytes().get(10) == Some(&b'T') && time.ends_with('Z') && rest == "'/></presence>", "{stamp}");
    // Romeo's connection drops without a word: his subscribers learn he is gone.
    drop(romeo);
    let gone = juliet.read_until("type='unavailable'/>", WAIT);
    assert!(
        gone.contains("<presence from='romeo@localhost/garden' to='juliet@localhost' type='unavailable'/>"),
        "{gone}"
    );
}

#[test]
fn subscribing_to_a_missing_account_is_answered_with_unsubscribed() {
    let server = Server::start();
    users(&server, &["juliet"]);
    let mut juliet = online(&server, "juliet", "balcony");
    juliet.send("<presence to='ghost@localhost' type='subscribe'/>");
    let got = juliet.read_until("type='unsubscribed'/>", WAIT);
    assert!(got.contains("<presence from='ghost@localhost' to='juliet@localhost' type='unsubscribed'/>"), "{got}");
}

#[test]
fn unsubscribe_and_unsubscribed_end_the_subscription_on_both_sides() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    let mut romeo = online(&server, "romeo", "garden");
    juliet_subscribes_to_romeo(&mut juliet, &mut romeo);
    juliet.send("<presence to='romeo@localhost' type='unsubscribe'/>");
    let push = juliet.read_until("</iq>", WAIT);
    assert!(push.contains("jid='romeo@localhost' subscription='none'"), "{push}");
    let got = romeo.read_until("type='unsubscribe'/>", WAIT);
    assert!(got.contains("jid='juliet@localhost' subscription='none'"), "{got}");
    // Romeo's presence no longer reaches Juliet.
    juliet.read_until("type='unavailable'/>", WAIT);
    romeo.send("<presence><show>xa</show></presence>");
    romeo.read_until("</presence>", WAIT);
    romeo.sync("r2");
    let got = juliet.sync("j2");
    assert!(!got.contains("<show>xa</show>"), "{got}");
    // A denied request (unsubscribed instead of subscribed) clears the pending state.
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    juliet.read_until("ask='subscribe'", WAIT);
    romeo.read_until("type='subscribe'/>", WAIT);
    romeo.send("<presence to='juliet@localhost' type='unsubscribed'/>");
    let push = juliet.read_until("type='unsubscribed'/>", WAIT);
    assert!(push.contains("jid='romeo@localhost' subscription='none'/>"), "{push}");
}

#[test]
fn directed_presence_is_followed_by_unavailable_when_the_sender_leaves() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let juliet = online(&server, "juliet", "balcony");
    let mut romeo = online(&server, "romeo", "garden");
    let mut juliet = juliet;
    juliet.send("<presence to='romeo@localhost/garden'><status>psst</status></presence>");
    let got = romeo.read_until("</presence>", WAIT);
    assert!(got.contains("from='juliet@localhost/balcony'") && got.contains("<status>psst</status>"), "{got}");
    drop(juliet);
    let gone = romeo.read_until("type='unavailable'/>", WAIT);
    assert!(gone.contains("from='juliet@localhost/balcony' to='romeo@localhost/garden' type='unavailable'"), "{gone}");
}

#[test]
fn a_new_resource_gets_the_presence_of_the_accounts_other_resources() {
    // R7: only the other resources learned of the new one, never the reverse.
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut phone = server.login("juliet", "pw", "phone");
    phone.send("<presence><show>away</show></presence>");
    phone.read_until("</presence>", WAIT);
    let mut laptop = server.login("juliet", "pw", "laptop");
    laptop.send("<presence/>");
    let got = laptop.sync("s");
    let from_phone = got.split("<presence").find(|p| p.contains("from='juliet@localhost/phone'"));
    let from_phone = from_phone.unwrap_or_else(|| panic!("no presence of the phone: {got}"));
    assert!(from_phone.contains("to='juliet@localhost/laptop'") && from_phone.contains("<show>away</show>"), "{got}");
}

#[test]
fn directed_presence_that_cannot_be_delivered_gets_an_error_presence_back() {
    // RFC 6120 §8.3, §10.4.3: a group-chat join where nothing serves the domain
    // (federation off), and presence to a gateway that is configured but not
    // connected, are answered; unavailable presence to them is not. (No group
    // chat here: `muc_domain = ''`.)
    let server = Server::start_with("muc_domain = ''\n[[component]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n");
    users(&server, &["juliet"]);
    let mut juliet = online(&server, "juliet", "balcony");
    for (to, condition) in
        [("room@conference.localhost/juliet", "remote-server-not-found"), ("user@gw.localhost", "service-unavailable")]
    {
        juliet.send(&format!("<presence to='{to}' id='join'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        let got = juliet.read_until("</presence>", WAIT);
        assert!(got.contains(&format!("from='{to}'")) && got.contains("type='error'"), "{got}");
        assert!(got.contains(&format!("<{condition} ")) && got.contains("id='join'"), "{got}");
        // The join's <x/> comes back with it: clients end the join on that.
        assert!(got.contains("<x xmlns='http://jabber.org/protocol/muc'/>"), "{got}");
    }
    juliet.send("<presence to='room@conference.localhost/juliet' type='unavailable'/>");
    let rest = juliet.sync("after");
    assert!(!rest.contains("type='error'"), "{rest}");
}

#[test]
fn unavailable_presence_reaches_the_resource_that_sent_it_and_its_status_is_the_accounts_last_activity() {
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    let mut romeo = online(&server, "romeo", "garden");
    // Romeo may see Juliet's presence, and so her last activity (XEP-0012 §4).
    romeo.send("<presence to='juliet@localhost' type='subscribe'/>");
    juliet.read_until("type='subscribe'/>", WAIT);
    juliet.send("<presence to='romeo@localhost' type='subscribed'/>");
    romeo.read_until("<presence from='juliet@localhost/balcony'", WAIT);
    romeo.read_until("</presence>", WAIT);
    juliet.send("<presence type='unavailable'><status>Gone fishing</status></presence>");
    // RFC 6121 §4.5.2: the resource that sent it gets it too.
    let echo = juliet.read_until("</presence>", WAIT);
    assert!(echo.contains("type='unavailable'") && echo.contains("to='juliet@localhost/balcony'"), "{echo}");
    assert!(echo.contains("<status>Gone fishing</status>"), "{echo}");
    romeo.read_until("Gone fishing", WAIT);
    juliet.send("</stream:stream>");
    juliet.read_to_close(WAIT);
    romeo.send("<iq type='get' to='juliet@localhost' id='last'><query xmlns='jabber:iq:last'/></iq>");
    let last = romeo.read_until("</iq>", WAIT);
    assert!(last.contains("type='result'") && last.contains(">Gone fishing</query>"), "{last}");
}

#[test]
fn a_subscription_request_keeps_its_children_when_delivered_later_and_live() {
    // RFC 6121 §3.1.3: a stored request is delivered as it was received (here with
    // a XEP-0379 pre-authentication token).
    let server = Server::start();
    users(&server, &["juliet", "romeo"]);
    let mut juliet = online(&server, "juliet", "balcony");
    juliet.send(
        "<presence to='romeo@localhost' type='subscribe'><status>It is Juliet</status>\
         <preauth xmlns='urn:xmpp:pars:0' token='tok1'/></presence>",
    );
    juliet.sync("sent");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send("<presence/>");
    let request = romeo.read_until("</presence>", WAIT);
    assert!(request.contains("type='subscribe'") && request.contains("<status>It is Juliet</status>"), "{request}");
    assert!(request.contains("<preauth xmlns='urn:xmpp:pars:0' token='tok1'/>"), "{request}");
    // Live, a new request carries its own children.
    juliet.send("<presence to='romeo@localhost' type='subscribe'><status>Again</status></presence>");
    let again = romeo.read_until("</presence>", WAIT);
    assert!(again.contains("<status>Again</status>") && !again.contains("tok1"), "{again}");
}
