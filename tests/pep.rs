//! XEP-0163 PEP on the wire: publishing (auto-create, publish-options as
//! preconditions), notifications filtered by `+notify` caps that the server asks
//! for and verifies (XEP-0115), the last item on becoming available, the four
//! access models, retract/purge/delete notifications, max_items, the owner's
//! configuration form, disco, and the limits.

mod common;
use common::*;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const TUNE: &str = "http://jabber.org/protocol/tune";

/// Sends available presence with caps and answers the server's disco#info query
/// with `answer` (the features); returns what came up to the answer's effects.
fn online_with_caps(c: &mut Client, ver: &str, answer: &str) -> String {
    c.send(&caps_presence(ver));
    answer_caps_query(c, "localhost", ver, answer);
    c.sync("caps-answered")
}

fn iq(c: &mut Client, id: &str, kind: &str, to: Option<&str>, payload: &str) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    c.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"));
    let end = c.read_until_any(&[
        &format!("id='{id}' type='result'/>"),
        &format!("id='{id}' type='result'>"),
        &format!("id='{id}' type='error'"),
    ]);
    if end.ends_with("'>") || end.ends_with("'error'") {
        let mut rest = c.read_until("</iq>", WAIT);
        rest.insert_str(0, &end);
        return rest;
    }
    end
}

fn publish(c: &mut Client, id: &str, node: &str, item: &str, payload: &str, options: &str) -> String {
    let options = publish_options(options);
    iq(c, id, "set", None, &format!("<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item}'>{payload}</item></publish>{options}</pubsub>"))
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn tune(artist: &str) -> String {
    format!("<tune xmlns='{TUNE}'><artist>{artist}</artist></tune>")
}

/// Juliet subscribes to Romeo's presence and he approves (his roster: juliet
/// `from`); both online; returns (juliet, romeo, nurse), the nurse a stranger.
fn three(server: &Server) -> (Client, Client, Client) {
    for u in ["juliet", "romeo", "nurse"] {
        server.add_user(u, "pw");
    }
    let mut juliet = server.login("juliet", "pw", "balcony");
    let mut romeo = server.login("romeo", "pw", "garden");
    let nurse = server.login("nurse", "pw", "kitchen");
    romeo.send("<presence/>");
    romeo.sync("r0");
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    romeo.read_until("type='subscribe'", WAIT);
    romeo.send("<presence to='juliet@localhost' type='subscribed'/>");
    romeo.sync("r1");
    juliet.sync("j0");
    (juliet, romeo, nurse)
}

#[test]
fn a_publish_notifies_contacts_whose_verified_caps_want_the_node_and_items_follow_the_access_model() {
    let server = Server::start();
    let (mut juliet, mut romeo, mut nurse) = three(&server);
    let (ver, answer) = caps_of(&[TUNE]);
    online_with_caps(&mut juliet, &ver, &answer);
    // The account is a PEP service (XEP-0163 §6.1).
    let info = iq(
        &mut romeo,
        "info",
        "get",
        Some("romeo@localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    assert!(info.contains("category='pubsub' type='pep'") && info.contains("pubsub#publish-options"), "{info}");
    let done = publish(&mut romeo, "p1", TUNE, "current", &tune("Yes"), "");
    assert!(done.contains(&format!("<publish node='{TUNE}'><item id='current'/></publish>")), "{done}");
    let event = juliet.read_until("</message>", WAIT);
    assert!(
        event.contains("from='romeo@localhost' to='juliet@localhost/balcony' type='headline'")
            && event.contains(&format!("<items node='{TUNE}'><item id='current'>"))
            && event.contains("<artist>Yes</artist>"),
        "{event}"
    );
    // A stranger neither hears of it nor reads it (presence access model).
    let before = nurse.sync("n0");
    assert!(!before.contains("<event"), "{before}");
    let refused = iq(
        &mut nurse,
        "n1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub>"),
    );
    assert!(refused.contains("<not-authorized") && refused.contains("<presence-subscription-required"), "{refused}");
    let items = iq(
        &mut juliet,
        "j1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub>"),
    );
    assert!(items.contains("<item id='current'>") && items.contains("<artist>Yes</artist>"), "{items}");
    // disco#items lists the node to those who may see it.
    let listed = iq(
        &mut juliet,
        "j2",
        "get",
        Some("romeo@localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    assert!(listed.contains(&format!("<item jid='romeo@localhost' node='{TUNE}'/>")), "{listed}");
    let hidden =
        iq(&mut nurse, "n2", "get", Some("romeo@localhost"), "<query xmlns='http://jabber.org/protocol/disco#items'/>");
    assert!(!hidden.contains(TUNE), "{hidden}");
    // Only the owner publishes.
    let forbidden = iq(
        &mut juliet,
        "j3",
        "set",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item>{}</item></publish></pubsub>", tune("x")),
    );
    assert!(forbidden.contains("<forbidden"), "{forbidden}");
    // Romeo's own caps want no tune: his resource was not sent the event.
    let own = romeo.sync("r9");
    assert!(!own.contains("<event"), "{own}");
}

#[test]
fn an_unknown_caps_string_is_asked_for_once_verified_and_then_the_last_item_follows() {
    let server = Server::start();
    let (mut juliet, mut romeo, _nurse) = three(&server);
    publish(&mut romeo, "p1", TUNE, "current", &tune("Genesis"), "");
    // An answer that does not hash to the string is not believed: nothing comes.
    let (ver, _) = caps_of(&[TUNE]);
    let (_, other) = caps_of(&["urn:xmpp:other"]);
    let forged = online_with_caps(
        &mut juliet,
        &ver,
        &other.replace("urn:xmpp:other", TUNE).replace("name='wrentest'", "name='forged'"),
    );
    assert!(!forged.contains("<event"), "{forged}");
    // Another resource with a string it answers rightly gets the last item.
    let mut second = server.login("juliet", "pw", "bedroom");
    let (ver, answer) = caps_of(&[TUNE]);
    let got = online_with_caps(&mut second, &ver, &answer);
    assert!(
        got.contains("from='romeo@localhost' to='juliet@localhost/bedroom' type='headline'") && got.contains("Genesis"),
        "{got}"
    );
    // A third with the same string is not asked again: the cache answers.
    let mut third = server.login("juliet", "pw", "garden");
    third.send(&caps_presence(&ver));
    let got = third.sync("t0");
    assert!(!got.contains("disco#info") && got.contains("Genesis"), "{got}");
}

#[test]
fn publish_options_are_preconditions_and_each_access_model_holds() {
    let server = Server::start();
    let (mut juliet, mut romeo, mut nurse) = three(&server);
    let bundles = "urn:xmpp:omemo:2:bundles";
    // OMEMO bundles are published open (as Conversations does): anyone reads them.
    let done = publish(
        &mut romeo,
        "o1",
        bundles,
        "31415",
        "<bundle xmlns='urn:xmpp:omemo:2'/>",
        &field("pubsub#access_model", "open"),
    );
    assert!(done.contains("<item id='31415'/>"), "{done}");
    let read = iq(
        &mut nurse,
        "n1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{bundles}'><item id='31415'/></items></pubsub>"),
    );
    assert!(read.contains("<bundle xmlns='urn:xmpp:omemo:2'/>"), "{read}");
    // The node exists: different options do not match (XEP-0223 §5).
    let conflict = publish(
        &mut romeo,
        "o2",
        bundles,
        "2",
        "<bundle xmlns='urn:xmpp:omemo:2'/>",
        &field("pubsub#access_model", "presence"),
    );
    assert!(conflict.contains("<conflict") && conflict.contains("<precondition-not-met"), "{conflict}");
    let same = publish(
        &mut romeo,
        "o3",
        bundles,
        "2",
        "<bundle xmlns='urn:xmpp:omemo:2'/>",
        &field("pubsub#access_model", "open"),
    );
    assert!(same.contains("type='result'"), "{same}");
    let bad = publish(&mut romeo, "o4", "n", "1", "<x xmlns='y'/>", &field("pubsub#access_model", "everyone"));
    assert!(bad.contains("<bad-request") && bad.contains("<invalid-options"), "{bad}");
    // Whitelist (bookmarks): the owner only.
    let marks = "urn:xmpp:bookmarks:1";
    publish(
        &mut romeo,
        "b1",
        marks,
        "room@conference.localhost",
        "<conference xmlns='urn:xmpp:bookmarks:1'/>",
        &field("pubsub#access_model", "whitelist"),
    );
    let closed = iq(
        &mut juliet,
        "j1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{marks}'/></pubsub>"),
    );
    assert!(closed.contains("<not-allowed") && closed.contains("<closed-node"), "{closed}");
    let own = iq(&mut romeo, "b2", "get", None, &format!("<pubsub xmlns='{PUBSUB}'><items node='{marks}'/></pubsub>"));
    assert!(own.contains("room@conference.localhost"), "{own}");
    // Roster: contacts in an allowed group.
    romeo.send("<iq type='set' id='g'><query xmlns='jabber:iq:roster'><item jid='juliet@localhost'><group>friends</group></item></query></iq>");
    romeo.read_until("id='g' type='result'", WAIT);
    let groups = format!(
        "{}<field var='pubsub#roster_groups_allowed'><value>friends</value></field>",
        field("pubsub#access_model", "roster")
    );
    publish(&mut romeo, "g1", "urn:xmpp:mood", "m", "<mood xmlns='http://jabber.org/protocol/mood'/>", &groups);
    let friend = iq(
        &mut juliet,
        "j2",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:mood'/></pubsub>"),
    );
    assert!(friend.contains("<mood xmlns='http://jabber.org/protocol/mood'/>"), "{friend}");
    let stranger = iq(
        &mut nurse,
        "n2",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:mood'/></pubsub>"),
    );
    assert!(stranger.contains("<not-in-roster-group"), "{stranger}");
    let missing = iq(
        &mut juliet,
        "j3",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='nothing'/></pubsub>"),
    );
    assert!(missing.contains("<item-not-found"), "{missing}");
}

#[test]
fn max_items_retract_purge_and_delete_with_their_notifications_and_the_owners_form() {
    let server = Server::start();
    let (mut juliet, mut romeo, _nurse) = three(&server);
    let node = "urn:xmpp:microblog:0";
    let (ver, answer) = caps_of(&[node]);
    online_with_caps(&mut juliet, &ver, &answer);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let options = if i == 0 { field("pubsub#max_items", "2") } else { String::new() };
        publish(
            &mut romeo,
            &format!("p{i}"),
            node,
            id,
            &format!("<entry xmlns='http://www.w3.org/2005/Atom'>{id}</entry>"),
            &options,
        );
        juliet.read_until(&format!("<item id='{id}'>"), WAIT);
    }
    let items = iq(
        &mut juliet,
        "i1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>"),
    );
    assert!(
        !items.contains("<item id='a'>") && items.contains("<item id='b'>") && items.contains("<item id='c'>"),
        "{items}"
    );
    let last = iq(
        &mut juliet,
        "i2",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{node}' max_items='1'/></pubsub>"),
    );
    assert!(!last.contains("<item id='b'>") && last.contains("<item id='c'>"), "{last}");
    // Retract, with its notification.
    let done = iq(
        &mut romeo,
        "r1",
        "set",
        None,
        &format!("<pubsub xmlns='{PUBSUB}'><retract node='{node}'><item id='b'/></retract></pubsub>"),
    );
    assert!(done.contains("type='result'"), "{done}");
    let event = juliet.read_until("</message>", WAIT);
    assert!(event.contains(&format!("<items node='{node}'><retract id='b'/></items>")), "{event}");
    let gone = iq(
        &mut romeo,
        "r2",
        "set",
        None,
        &format!("<pubsub xmlns='{PUBSUB}'><retract node='{node}'><item id='b'/></retract></pubsub>"),
    );
    assert!(gone.contains("<item-not-found"), "{gone}");
    // The owner's form, and a change to it.
    let form =
        iq(&mut romeo, "c1", "get", None, &format!("<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>"));
    assert!(
        form.contains("var='pubsub#max_items' type='text-single'><value>2</value>")
            && form.contains("<value>presence</value>"),
        "{form}"
    );
    let set = iq(&mut romeo, "c2", "set", None, &format!("<pubsub xmlns='{OWNER}'><configure node='{node}'><x xmlns='jabber:x:data' type='submit'>{}</x></configure></pubsub>", field("pubsub#access_model", "open")));
    assert!(set.contains("type='result'"), "{set}");
    let form =
        iq(&mut romeo, "c3", "get", None, &format!("<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>"));
    assert!(form.contains("<value>open</value></field>"), "{form}");
    let stranger = iq(
        &mut juliet,
        "c4",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{OWNER}'><configure node='{node}'/></pubsub>"),
    );
    assert!(stranger.contains("<forbidden"), "{stranger}");
    // Purge and delete, each notified.
    iq(&mut romeo, "d1", "set", None, &format!("<pubsub xmlns='{OWNER}'><purge node='{node}'/></pubsub>"));
    let event = juliet.read_until("</message>", WAIT);
    assert!(event.contains(&format!("<purge node='{node}'/>")), "{event}");
    iq(&mut romeo, "d2", "set", None, &format!("<pubsub xmlns='{OWNER}'><delete node='{node}'/></pubsub>"));
    let event = juliet.read_until("</message>", WAIT);
    assert!(event.contains(&format!("<delete node='{node}'/>")), "{event}");
    let after = iq(
        &mut juliet,
        "d3",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>"),
    );
    assert!(after.contains("<item-not-found"), "{after}");
}

#[test]
fn nodes_items_and_bytes_per_account_are_bounded_with_the_xep_0060_errors_and_go_with_the_account() {
    let server = Server::start_with("pep_max_nodes = 2\npep_max_item_bytes = 512\npep_max_bytes = 2048\n");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    let big = format!("<x xmlns='y'>{}</x>", "a".repeat(600));
    let refused = publish(&mut romeo, "p0", "n1", "1", &big, "");
    assert!(refused.contains("<not-acceptable") && refused.contains("<payload-too-big"), "{refused}");
    let filler = format!("<x xmlns='y'>{}</x>", "b".repeat(400));
    publish(&mut romeo, "p1", "n1", "1", &filler, &field("pubsub#max_items", "10"));
    publish(&mut romeo, "p2", "n2", "1", "<x xmlns='y'/>", "");
    let third = publish(&mut romeo, "p3", "n3", "1", "<x xmlns='y'/>", "");
    assert!(third.contains("<not-allowed") && third.contains("<max-nodes-exceeded"), "{third}");
    let mut full = String::new();
    for i in 2..8 {
        full = publish(&mut romeo, &format!("q{i}"), "n1", &i.to_string(), &filler, "");
        if full.contains("type='error'") {
            break;
        }
    }
    assert!(full.contains("<resource-constraint"), "{full}");
    // Deleting the account deletes its nodes.
    drop(romeo);
    let (ok, out) = server.cli(&["user", "del", "romeo"], "");
    assert!(ok, "{out}");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "garden");
    let none = iq(&mut romeo, "i", "get", None, &format!("<pubsub xmlns='{PUBSUB}'><items node='n1'/></pubsub>"));
    assert!(none.contains("<item-not-found"), "{none}");
}

/// XEP-0163 §4.3.2 / XEP-0060 on_sub: once the owner approves a subscription, the
/// contact's resources that want the node get its last item.
#[test]
fn an_approved_subscription_brings_the_last_item() {
    let server = Server::start();
    for u in ["juliet", "romeo"] {
        server.add_user(u, "pw");
    }
    let mut juliet = server.login("juliet", "pw", "balcony");
    let mut romeo = server.login("romeo", "pw", "garden");
    romeo.send("<presence/>");
    romeo.sync("r0");
    publish(&mut romeo, "p1", TUNE, "current", &tune("Camel"), "");
    let (ver, answer) = caps_of(&[TUNE]);
    let before = online_with_caps(&mut juliet, &ver, &answer);
    assert!(!before.contains("Camel"), "{before}");
    juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
    romeo.read_until("type='subscribe'", WAIT);
    romeo.send("<presence to='juliet@localhost' type='subscribed'/>");
    let got = juliet.read_until("Camel", WAIT);
    assert!(got.contains("from='romeo@localhost' to='juliet@localhost/balcony' type='headline'"), "{got}");
}

const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";

fn bookmark_options() -> String {
    [
        field("pubsub#persist_items", "true"),
        field("pubsub#max_items", "max"),
        field("pubsub#send_last_published_item", "never"),
        field("pubsub#access_model", "whitelist"),
    ]
    .concat()
}

fn private(c: &mut Client, id: &str, kind: &str, storage: &str) -> String {
    iq(c, id, kind, None, &format!("<query xmlns='jabber:iq:private'>{storage}</query>"))
}

/// XEP-0402 §5.3 / XEP-0411: the XEP-0402 node and XEP-0048's private-storage
/// document are one list. A room published the new way reads the old way (with
/// the document's URLs kept); a document stored the old way publishes its new
/// rooms (the other resource is notified), retracts the missing ones, and keeps
/// a room's extensions.
#[test]
fn bookmarks_are_one_list_through_xep_0402_and_xep_0048_private_storage() {
    let server = Server::start();
    server.add_user("juliet", "pw");
    let mut phone = server.login("juliet", "pw", "phone");
    let mut laptop = server.login("juliet", "pw", "laptop");
    let (ver, answer) = caps_of(&[BOOKMARKS]);
    online_with_caps(&mut laptop, &ver, &answer);
    let info =
        iq(&mut phone, "i", "get", Some("juliet@localhost"), "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    assert!(info.contains("urn:xmpp:bookmarks:1#compat") && info.contains("urn:xmpp:bookmarks-conversion:0"), "{info}");
    let garden = format!(
        "<conference xmlns='{BOOKMARKS}' name='The Garden' autojoin='true'><nick>Jules</nick>\
         <extensions><pinned xmlns='urn:example:pinned'/></extensions></conference>"
    );
    let done = publish(&mut phone, "b1", BOOKMARKS, "garden@conference.localhost", &garden, &bookmark_options());
    assert!(done.contains("type='result'"), "{done}");
    laptop.read_until("garden@conference.localhost", WAIT);
    // Seen the old way, with a URL bookmark the document held.
    let urls = "<storage xmlns='storage:bookmarks'><url name='Home' url='https://example.org/'/>\
                <conference jid='garden@conference.localhost' name='The Garden' autojoin='true'><nick>Jules</nick></conference></storage>";
    private(&mut phone, "s0", "set", urls);
    let old = private(&mut phone, "g1", "get", "<storage xmlns='storage:bookmarks'/>");
    assert!(
        old.contains("<conference jid='garden@conference.localhost' name='The Garden' autojoin='true'><nick>Jules</nick></conference>")
            && old.contains("<url name='Home' url='https://example.org/'/>"),
        "{old}"
    );
    assert!(!laptop.sync("l0").contains("<retract"), "an unchanged document changes nothing");
    // An old client adds a room and drops none: the new room is published.
    let two = "<storage xmlns='storage:bookmarks'>\
               <conference jid='garden@conference.localhost' name='The Garden' autojoin='true'><nick>Jules</nick></conference>\
               <conference jid='tomb@conference.localhost' name='The Tomb'><nick>J</nick><password>x</password></conference></storage>";
    let done = private(&mut phone, "s1", "set", two);
    assert!(done.contains("type='result'"), "{done}");
    let event = laptop.read_until("</message>", WAIT);
    assert!(
        event.contains(
            "<item id='tomb@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='The Tomb'>\
                        <nick>J</nick><password>x</password></conference></item>"
        ),
        "{event}"
    );
    let items =
        iq(&mut phone, "i1", "get", None, &format!("<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>"));
    assert!(
        items.contains("<pinned xmlns='urn:example:pinned'/>") && items.contains("tomb@conference.localhost"),
        "{items}"
    );
    // It drops the garden: retracted, and the tomb stays.
    let one = "<storage xmlns='storage:bookmarks'><conference jid='tomb@conference.localhost' name='The Tomb'>\
               <nick>J</nick><password>x</password></conference></storage>";
    private(&mut phone, "s2", "set", one);
    let event = laptop.read_until("</message>", WAIT);
    assert!(event.contains("<retract id='garden@conference.localhost'/>"), "{event}");
    let items =
        iq(&mut phone, "i2", "get", None, &format!("<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>"));
    assert!(!items.contains("garden@") && items.contains("tomb@conference.localhost"), "{items}");
}

/// XEP-0490: a read marker published on one device reaches the account's other
/// devices; the whitelist node is the owner's alone. XEP-0060 §5.3: the node's
/// disco#info says what it is, to those who may see it.
#[test]
fn read_markers_follow_the_account_across_devices_and_a_node_answers_disco_info() {
    const MDS: &str = "urn:xmpp:mds:displayed:0";
    let server = Server::start();
    let (_juliet, mut romeo, mut nurse) = three(&server);
    let mut tablet = server.login("romeo", "pw", "tablet");
    let (ver, answer) = caps_of(&[MDS]);
    online_with_caps(&mut tablet, &ver, &answer);
    let marker = format!(
        "<displayed xmlns='{MDS}'><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='m-42'/></displayed>"
    );
    let done = publish(&mut romeo, "d1", MDS, "juliet@localhost", &marker, &bookmark_options());
    assert!(done.contains("type='result'"), "{done}");
    let event = tablet.read_until("</message>", WAIT);
    assert!(
        event.contains("from='romeo@localhost' to='romeo@localhost/tablet' type='headline'")
            && event.contains("<item id='juliet@localhost'>")
            && event.contains("id='m-42'"),
        "{event}"
    );
    let info = iq(
        &mut tablet,
        "n1",
        "get",
        Some("romeo@localhost"),
        &format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{MDS}'/>"),
    );
    assert!(
        info.contains(&format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{MDS}'>"))
            && info.contains("category='pubsub' type='leaf'")
            && info.contains("<value>http://jabber.org/protocol/pubsub#meta-data</value>")
            && info.contains("<field var='pubsub#access_model'><value>whitelist</value></field>"),
        "{info}"
    );
    let refused = iq(
        &mut nurse,
        "n2",
        "get",
        Some("romeo@localhost"),
        &format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{MDS}'/>"),
    );
    assert!(refused.contains("type='error'") && refused.contains("closed-node"), "{refused}");
    let missing = iq(
        &mut nurse,
        "n3",
        "get",
        Some("romeo@localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#info' node='urn:nothing'/>",
    );
    assert!(missing.contains("<item-not-found "), "{missing}");
}

fn sha1_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// XEP-0398: a vCard photo becomes the PEP avatar (data, then metadata, with the
/// notification), a PEP avatar becomes the vCard photo (the other fields kept),
/// and available presence carries the hash (§4) unless the client sent an empty
/// `<photo/>`; a vCard without a photo turns the avatar off.
#[test]
fn the_vcard_photo_and_the_pep_avatar_are_one_and_presence_carries_its_hash() {
    use base64::Engine;
    const METADATA: &str = "urn:xmpp:avatar:metadata";
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let server = Server::start();
    let (mut juliet, mut romeo, _nurse) = three(&server);
    let (ver, answer) = caps_of(&[METADATA]);
    online_with_caps(&mut juliet, &ver, &answer);
    juliet.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    juliet.read_until("id='r0'", WAIT);
    let first = b"first image bytes";
    let set = iq(
        &mut romeo,
        "v1",
        "set",
        None,
        &format!(
            "<vCard xmlns='vcard-temp'><FN>Romeo</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard>",
            b64(first)
        ),
    );
    assert!(set.contains("type='result'"), "{set}");
    let event = juliet.read_until("</message>", WAIT);
    let id = sha1_hex(first);
    assert!(
        event.contains(&format!("<items node='{METADATA}'><item id='{id}'>"))
            && event.contains(&format!("<info id='{id}' type='image/gif' bytes='{}'/>", first.len())),
        "{event}"
    );
    let data = iq(
        &mut juliet,
        "d1",
        "get",
        Some("romeo@localhost"),
        &format!("<pubsub xmlns='{PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='{id}'/></items></pubsub>"),
    );
    assert!(data.contains(&format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", b64(first))), "{data}");
    // The image is kept once, in PEP; the vCard reads with it.
    let vcard = iq(&mut juliet, "v0", "get", Some("romeo@localhost"), "<vCard xmlns='vcard-temp'/>");
    assert!(
        vcard.contains(&format!("<FN>Romeo</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>{}</BINVAL></PHOTO>", b64(first))),
        "{vcard}"
    );
    // Presence carries the hash; an empty <photo/> is left alone.
    romeo.send("<presence><show>away</show></presence>");
    let got = juliet.read_until("</presence>", WAIT);
    assert!(got.contains(&format!("<x xmlns='vcard-temp:x:update'><photo>{id}</photo></x>")), "{got}");
    romeo.send("<presence><show>dnd</show><x xmlns='vcard-temp:x:update'><photo/></x></presence>");
    let got = juliet.read_until("</presence>", WAIT);
    assert!(got.contains("<show>dnd</show>") && got.contains("<photo/>") && !got.contains(&id), "{got}");
    // A PEP avatar becomes the vCard photo.
    let second = b"second image";
    let id2 = sha1_hex(second);
    publish(
        &mut romeo,
        "a1",
        "urn:xmpp:avatar:data",
        &id2,
        &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", b64(second)),
        "",
    );
    let meta =
        format!("<metadata xmlns='{METADATA}'><info id='{id2}' type='image/png' bytes='{}'/></metadata>", second.len());
    publish(&mut romeo, "a2", METADATA, &id2, &meta, "");
    let vcard = iq(&mut juliet, "v2", "get", Some("romeo@localhost"), "<vCard xmlns='vcard-temp'/>");
    assert!(
        vcard.contains("<FN>Romeo</FN>")
            && vcard.contains(&format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO>", b64(second)))
            && !vcard.contains(&b64(first)),
        "{vcard}"
    );
    // A vCard without a photo turns the avatar off, and presence has no hash.
    assert!(vcard.contains(&format!("<item id='{id2}'>")), "the event came before: {vcard}");
    iq(&mut romeo, "v3", "set", None, "<vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard>");
    let event = juliet.read_until("</message>", WAIT);
    assert!(event.contains(&format!("<metadata xmlns='{METADATA}'/>")), "{event}");
    romeo.send("<presence><status>plain</status></presence>");
    let got = juliet.read_until("</presence>", WAIT);
    assert!(got.contains("plain") && !got.contains("vcard-temp:x:update"), "{got}");
}

/// XEP-0172: a nickname is published and reaches a contact whose caps want it.
#[test]
fn a_published_nickname_reaches_contacts() {
    const NICK: &str = "http://jabber.org/protocol/nick";
    let server = Server::start();
    let (mut juliet, mut romeo, _nurse) = three(&server);
    let (ver, answer) = caps_of(&[NICK]);
    online_with_caps(&mut juliet, &ver, &answer);
    publish(&mut romeo, "n1", NICK, "current", &format!("<nick xmlns='{NICK}'>Montague</nick>"), "");
    let event = juliet.read_until("</message>", WAIT);
    assert!(
        event.contains("from='romeo@localhost'") && event.contains(&format!("<nick xmlns='{NICK}'>Montague</nick>")),
        "{event}"
    );
}
