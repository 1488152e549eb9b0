//! RFC 6121 Appendix A on the wire: sequences of subscription stanzas between two
//! local accounts, and the state each roster ends in (subscription and pending-out
//! `ask`). Both accounts stay online; the checks read the rosters afresh.

mod common;
use common::*;
use std::time::Duration;

/// (juliet's item for romeo, romeo's item for juliet): `None` = not in the roster,
/// else (subscription, ask).
type Rosters = (Option<(&'static str, bool)>, Option<(&'static str, bool)>);

fn item_state(c: &mut Client, contact: &str) -> Option<(String, bool)> {
    c.send("<iq type='get' id='check'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = c.read_until_any(&["id='check' type='result'/>", "</query></iq>", "/></iq>"]);
    let start = roster.find(&format!("<item jid='{contact}@localhost'"))?;
    let item = &roster[start..];
    let item = &item[..item.find('>').unwrap_or(item.len())];
    let sub = between(item, "subscription='", "'").to_string();
    Some((sub, item.contains("ask='subscribe'")))
}

/// Runs `steps` (who, type) and checks both rosters.
fn scenario(steps: &[(&str, &str)], expected: Rosters) {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut j = server.login("juliet", "pw", "a");
    let mut r = server.login("romeo", "pw", "b");
    for c in [&mut j, &mut r] {
        c.send("<presence/>");
        c.read_until_any(&["/>", "</presence>"]);
    }
    for (who, kind) in steps {
        let (c, to) = if *who == "juliet" { (&mut j, "romeo") } else { (&mut r, "juliet") };
        c.send(&format!("<presence to='{to}@localhost' type='{kind}'/>"));
        // A ping's answer means the stanza before it was handled.
        c.sync("sync");
    }
    std::thread::sleep(Duration::from_millis(50));
    let got_j = item_state(&mut j, "romeo");
    let got_r = item_state(&mut r, "juliet");
    let want = |e: Option<(&str, bool)>| e.map(|(s, a)| (s.to_string(), a));
    assert_eq!((got_j, got_r), (want(expected.0), want(expected.1)), "steps {steps:?}");
}

#[test]
fn subscribe_leaves_the_request_pending_out_and_hidden_at_the_contact() {
    scenario(&[("juliet", "subscribe")], (Some(("none", true)), None));
    // Asking twice changes nothing.
    scenario(&[("juliet", "subscribe"), ("juliet", "subscribe")], (Some(("none", true)), None));
}

#[test]
fn an_approved_request_is_to_and_from() {
    scenario(&[("juliet", "subscribe"), ("romeo", "subscribed")], (Some(("to", false)), Some(("from", false))));
}

#[test]
fn a_denied_request_leaves_none() {
    scenario(&[("juliet", "subscribe"), ("romeo", "unsubscribed")], (Some(("none", false)), None));
}

#[test]
fn mutual_subscriptions_are_both() {
    let both = &[("juliet", "subscribe"), ("romeo", "subscribed"), ("romeo", "subscribe"), ("juliet", "subscribed")];
    scenario(both, (Some(("both", false)), Some(("both", false))));
}

#[test]
fn unsubscribe_from_both_leaves_from_and_to() {
    let steps = &[
        ("juliet", "subscribe"),
        ("romeo", "subscribed"),
        ("romeo", "subscribe"),
        ("juliet", "subscribed"),
        ("juliet", "unsubscribe"),
    ];
    scenario(steps, (Some(("from", false)), Some(("to", false))));
}

#[test]
fn unsubscribed_from_both_leaves_to_and_from() {
    let steps = &[
        ("juliet", "subscribe"),
        ("romeo", "subscribed"),
        ("romeo", "subscribe"),
        ("juliet", "subscribed"),
        ("juliet", "unsubscribed"),
    ];
    scenario(steps, (Some(("to", false)), Some(("from", false))));
}

#[test]
fn cancelling_a_pending_request_clears_it_on_both_sides() {
    scenario(&[("juliet", "subscribe"), ("juliet", "unsubscribe")], (Some(("none", false)), None));
}

#[test]
fn subscribed_without_a_request_pre_approves() {
    // RFC 6121 §3.4: Romeo's roster gets Juliet with subscription none (approved);
    // Juliet hears nothing.
    scenario(&[("romeo", "subscribed")], (None, Some(("none", false))));
}

#[test]
fn a_pre_approved_request_is_granted_at_once() {
    scenario(&[("romeo", "subscribed"), ("juliet", "subscribe")], (Some(("to", false)), Some(("from", false))));
}

#[test]
fn a_pre_approval_is_offered_pushed_with_approved_and_the_user_is_not_asked_again() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut j = server.login("juliet", "pw", "a");
    let mut r = server.login("romeo", "pw", "b");
    assert!(r.received().contains("<sub xmlns='urn:xmpp:features:pre-approval'/>"), "{}", r.received());
    for c in [&mut j, &mut r] {
        c.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
        c.read_until("id='roster'", WAIT);
        c.send("<presence/>");
        c.sync("up");
    }
    r.send("<presence to='juliet@localhost' type='subscribed'/>");
    let push = r.read_until("</iq>", WAIT);
    assert!(push.contains("jid='juliet@localhost'") && push.contains("approved='true'"), "{push}");
    assert!(push.contains("subscription='none'"), "{push}");
    j.send("<presence to='romeo@localhost' type='subscribe'/>");
    j.read_until("type='subscribed'", WAIT);
    let push = r.read_until("subscription='from'", WAIT);
    assert!(!push.contains("type='subscribe'"), "no request for an approved contact: {push}");
    let rest = r.sync("after");
    assert!(!rest.contains("type='subscribe'") && !rest.contains("approved="), "{rest}");
}

#[test]
fn subscribing_again_when_subscribed_is_answered_by_the_server() {
    scenario(
        &[("juliet", "subscribe"), ("romeo", "subscribed"), ("juliet", "subscribe")],
        (Some(("to", false)), Some(("from", false))),
    );
}

#[test]
fn a_request_both_ways_pending_then_approved_one_way() {
    scenario(
        &[("juliet", "subscribe"), ("romeo", "subscribe"), ("romeo", "subscribed")],
        (Some(("to", false)), Some(("from", true))),
    );
}

#[test]
fn unsubscribe_or_unsubscribed_with_no_subscription_changes_nothing() {
    scenario(&[("juliet", "unsubscribe")], (None, None));
    scenario(&[("juliet", "unsubscribed")], (None, None));
}

#[test]
fn from_with_pending_out_then_unsubscribe_leaves_from() {
    let steps = &[("romeo", "subscribe"), ("juliet", "subscribed"), ("juliet", "subscribe"), ("juliet", "unsubscribe")];
    scenario(steps, (Some(("from", false)), Some(("to", false))));
}

#[test]
fn pending_both_ways_then_unsubscribed_keeps_the_users_own_request() {
    let steps = &[("juliet", "subscribe"), ("romeo", "subscribe"), ("juliet", "unsubscribed")];
    scenario(steps, (Some(("none", true)), Some(("none", false))));
}

#[test]
fn pending_both_ways_then_unsubscribe_keeps_the_contacts_request() {
    let steps = &[("juliet", "subscribe"), ("romeo", "subscribe"), ("juliet", "unsubscribe")];
    scenario(steps, (Some(("none", false)), Some(("none", true))));
}

#[test]
fn from_with_pending_out_then_unsubscribed_leaves_only_the_request() {
    let steps =
        &[("romeo", "subscribe"), ("juliet", "subscribed"), ("juliet", "subscribe"), ("juliet", "unsubscribed")];
    scenario(steps, (Some(("none", true)), Some(("none", false))));
}

#[test]
fn subscribe_when_both_changes_nothing() {
    let steps = &[
        ("juliet", "subscribe"),
        ("romeo", "subscribed"),
        ("romeo", "subscribe"),
        ("juliet", "subscribed"),
        ("juliet", "subscribe"),
        ("romeo", "subscribed"),
    ];
    scenario(steps, (Some(("both", false)), Some(("both", false))));
}

/// Logs both accounts in with initial presence, makes them `both`, returns them.
fn mutual(server: &Server) -> (Client, Client) {
    let mut j = server.login("juliet", "pw", "a");
    let mut r = server.login("romeo", "pw", "b");
    for c in [&mut j, &mut r] {
        c.send("<presence/>");
        c.read_until_any(&["/>", "</presence>"]);
    }
    j.subscription("romeo", "subscribe");
    r.subscription("juliet", "subscribed");
    r.subscription("juliet", "subscribe");
    j.subscription("romeo", "subscribed");
    (j, r)
}

#[test]
fn removing_a_contact_cancels_the_subscription_both_ways() {
    // R1, RFC 6121 §2.5.2: every client's "remove contact".
    let server = Server::start();
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let (mut j, mut r) = mutual(&server);
    assert_eq!(item_state(&mut r, "juliet"), Some(("both".to_string(), false)));
    j.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' subscription='remove'/></query></iq>");
    j.read_until("id='rm' type='result'", WAIT);
    // Past the roster pushes the removal caused.
    for c in [&mut j, &mut r] {
        c.sync("past");
    }
    assert_eq!(item_state(&mut j, "romeo"), None);
    assert_eq!(item_state(&mut r, "juliet"), Some(("none".to_string(), false)));
    // Romeo's presence no longer reaches juliet: his update, then a ping from her.
    r.send("<presence><show>away</show></presence>");
    r.sync("s1");
    let got = j.sync("s2");
    assert!(!got.contains("<show>away</show>"), "{got}");
}

#[test]
fn adding_a_contact_who_sent_a_request_makes_it_visible() {
    // R4: a roster set on an item that only held a pending request.
    let server = Server::start();
    let (mut j, mut r) = server.juliet_and_romeo();
    r.subscription("juliet", "subscribe");
    j.send(
        "<iq type='set' id='add'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' name='R'/></query></iq>",
    );
    let got = j.read_until("id='add' type='result'", WAIT);
    let push = j.read_until("</iq>", WAIT);
    assert!(push.contains("type='set'") && push.contains("jid='romeo@localhost'"), "no push: {got} {push}");
    assert_eq!(item_state(&mut j, "romeo"), Some(("none".to_string(), false)));
}

#[test]
fn subscription_requests_past_max_roster_items_are_not_kept() {
    // S6: every subscription from any JID used to add a hidden row, unbounded.
    let server = Server::start_with("max_roster_items = 3");
    server.add_user("juliet", "pw");
    for i in 0..6 {
        server.add_user(&format!("fan{i}"), "pw");
        let mut fan = server.login(&format!("fan{i}"), "pw", "x");
        fan.send("<presence to='juliet@localhost' type='subscribe'/>");
        fan.sync("sync");
    }
    // Juliet's initial presence brings the pending requests (RFC 6121 §3.1.3).
    let mut j = server.login("juliet", "pw", "a");
    j.send("<presence/>");
    let got = j.sync("s");
    assert_eq!(got.matches("type='subscribe'").count(), 3, "{got}");
}
