//! XEP-0352 client state indication on the wire: an inactive client is sent
//! presence updates and bodiless messages only when something urgent comes (or
//! it becomes active), in order, with only the latest presence of each sender.

mod common;
use common::*;

#[test]
fn an_inactive_client_gets_updates_only_with_something_urgent_and_only_the_latest_presence() {
    let server = Server::start();
    let (mut juliet, mut romeo) = server.juliet_and_romeo();
    juliet.subscription("romeo", "subscribe");
    romeo.subscription("juliet", "subscribed");
    juliet.send("<presence/>");
    romeo.send("<presence/>");
    juliet.read_until("from='romeo@localhost/b'", WAIT);
    juliet.sync("ready");
    juliet.send("<inactive xmlns='urn:xmpp:csi:0'/>");
    juliet.sync("inactive now");
    for show in ["away", "xa", "dnd"] {
        romeo.send(&format!("<presence><show>{show}</show></presence>"));
    }
    romeo.send("<message to='juliet@localhost/a' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    romeo.sync("sent");
    let held = juliet.sync("while inactive");
    assert!(!held.contains("<show>") && !held.contains("composing"), "held back: {held}");
    // A message with a body is urgent: everything waiting goes first, in order.
    romeo.send("<message to='juliet@localhost/a' type='chat'><body>are you there?</body></message>");
    let got = juliet.read_until("are you there?", WAIT);
    assert!(!got.contains("<show>away</show>") && !got.contains("<show>xa</show>"), "superseded: {got}");
    let dnd = got.find("<show>dnd</show>").expect(&got);
    let composing = got.find("composing").expect(&got);
    assert!(dnd < composing && composing < got.find("are you there?").unwrap(), "{got}");
    // Held again, until she says she is active.
    romeo.send("<presence><show>chat</show></presence>");
    romeo.sync("sent again");
    assert!(!juliet.sync("inactive again").contains("<show>chat</show>"));
    juliet.send("<active xmlns='urn:xmpp:csi:0'/>");
    juliet.read_until("<show>chat</show>", WAIT);
}

#[test]
fn the_feature_is_offered_after_authentication() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut c = server.connect_tls();
    assert!(c.scram(ScramKind::Sha256, "juliet", "pw"));
    let header = c.header();
    c.send(&header);
    let features = c.read_until("</stream:features>", WAIT);
    assert!(features.contains("<csi xmlns='urn:xmpp:csi:0'/>"), "{features}");
}
