//! RFC 6121 §2 on the wire: roster get/set/remove, pushes to interested resources,
//! roster versioning, limits; and the server's disco#info / version answers.

mod common;
use common::*;

fn roster_query(c: &mut Client, id: &str, ver: Option<&str>) -> String {
    let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    c.send(&format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'{ver}/></iq>"));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

fn set_item(c: &mut Client, id: &str, item: &str) -> String {
    c.send(&format!("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>"));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), &format!("id='{id}' type='error'")])
}

#[test]
fn roster_items_are_added_pushed_listed_and_removed() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut home = server.login("juliet", "balcony", "home");
    let mut work = server.login("juliet", "balcony", "work");
    let mut silent = server.login("juliet", "balcony", "silent");
    let empty = roster_query(&mut home, "r0", None);
    assert!(empty.contains("<query xmlns='jabber:iq:roster' ver='0'/>"), "{empty}");
    roster_query(&mut work, "r1", None);
    let got = set_item(&mut home, "s1", "<item jid='Romeo@LocalHost' name='Romeo'><group>Friends</group></item>");
    assert!(got.contains("type='result'"), "{got}");
    // Pushes to both interested resources, with the new version.
    for c in [&mut home, &mut work] {
        let push = c.read_until("</iq>", WAIT);
        assert!(push.contains("type='set'") && push.contains("ver='1'"), "{push}");
        assert!(
            push.contains("<item jid='romeo@localhost' name='Romeo' subscription='none'><group>Friends</group></item>"),
            "{push}"
        );
    }
    let got = silent.sync("s1");
    assert!(!got.contains("jabber:iq:roster"), "a resource that never asked for the roster got a push: {got}");
    let listed = roster_query(&mut work, "r2", None);
    assert!(listed.contains("ver='1'") && listed.contains("jid='romeo@localhost'"), "{listed}");
    let got = set_item(&mut work, "s2", "<item jid='romeo@localhost' subscription='remove'/>");
    assert!(got.contains("type='result'"), "{got}");
    assert!(work.read_until("</iq>", WAIT).contains("subscription='remove'"), "the remover's own push");
    let push = home.read_until("</iq>", WAIT);
    assert!(push.contains("<item jid='romeo@localhost' subscription='remove'/>") && push.contains("ver='2'"), "{push}");
    let got = set_item(&mut home, "s3", "<item jid='romeo@localhost' subscription='remove'/>");
    assert!(got.contains("type='error'") && home.read_until("</iq>", WAIT).contains("<item-not-found "), "{got}");
}

#[test]
fn a_reconnecting_client_with_a_version_gets_only_the_changes() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    roster_query(&mut c, "r0", None);
    for (i, who) in ["romeo", "nurse", "tybalt"].iter().enumerate() {
        set_item(&mut c, &format!("s{i}"), &format!("<item jid='{who}@localhost'/>"));
        c.read_until("</iq>", WAIT); // own push
    }
    drop(c);
    let mut again = server.login("juliet", "balcony", "home");
    // Version 2 knows romeo and nurse: only tybalt (version 3) comes, as a push.
    let got = roster_query(&mut again, "r1", Some("2"));
    assert!(got.ends_with("id='r1' type='result'/>"), "an empty result first: {got}");
    let push = again.read_until("</iq>", WAIT);
    assert!(push.contains("jid='tybalt@localhost'") && !push.contains("romeo"), "{push}");
    assert!(!again.sync("a1").contains("jabber:iq:roster"), "one push only");
    // The current version: nothing at all.
    assert!(roster_query(&mut again, "r2", Some("3")).ends_with("id='r2' type='result'/>"));
    assert!(!again.sync("a2").contains("jabber:iq:roster"), "no push");
    // An unknown version: the whole roster.
    let full = roster_query(&mut again, "r3", Some("999"));
    assert!(full.contains("romeo") && full.contains("nurse") && full.contains("tybalt"), "{full}");
}

#[test]
fn roster_sets_are_validated() {
    let server = Server::start_with("max_roster_items = 2");
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    let cases = [
        ("<item jid='a@localhost'/><item jid='b@localhost'/>", "bad-request"),
        ("<item jid='a@localhost' subscription='both'/>", "bad-request"),
        ("<item jid='juliet@localhost'/>", "not-allowed"),
        ("<item jid='a@localhost'><group>G</group><group>G</group></item>", "bad-request"),
        ("<item jid='a@localhost'><group></group></item>", "not-acceptable"),
        ("<item jid='bad@@jid'/>", "jid-malformed"),
        ("<item name='no jid'/>", "bad-request"),
    ];
    for (i, (item, condition)) in cases.iter().enumerate() {
        let id = format!("v{i}");
        let got = set_item(&mut c, &id, item);
        assert!(got.contains("type='error'"), "{item}: {got}");
        let rest = c.read_until("</iq>", WAIT);
        assert!(rest.contains(&format!("<{condition} ")), "{item}: {rest}");
    }
    for who in ["a", "b"] {
        assert!(set_item(&mut c, who, &format!("<item jid='{who}@localhost'/>")).contains("type='result'"));
    }
    let got = set_item(&mut c, "full", "<item jid='c@localhost'/>");
    assert!(got.contains("type='error'") && c.read_until("</iq>", WAIT).contains("max_roster_items"));
}

#[test]
fn rosters_survive_a_restart() {
    let mut server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    set_item(&mut c, "s", "<item jid='romeo@localhost' name='R'/>");
    server.signal("TERM");
    server.wait_exit(WAIT).expect("stopped");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    let mut c = restarted.login("juliet", "balcony", "home");
    assert!(roster_query(&mut c, "r", None).contains("<item jid='romeo@localhost' name='R' subscription='none'/>"));
}

#[test]
fn disco_info_version_and_roster_versioning_feature() {
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    assert!(c.received().contains("<ver xmlns='urn:xmpp:features:rosterver'/>"));
    c.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = c.read_until("</iq>", WAIT);
    assert!(info.contains("<identity category='server' type='im' name='wrenhub'/>"), "{info}");
    for f in ["urn:xmpp:ping", "jabber:iq:version", "http://jabber.org/protocol/disco#info"] {
        assert!(info.contains(&format!("<feature var='{f}'/>")), "{f}: {info}");
    }
    c.send("<iq type='get' id='d2' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let account = c.read_until("</iq>", WAIT);
    assert!(
        account.contains("category='account'") && account.contains("<feature var='jabber:iq:roster'/>"),
        "{account}"
    );
    c.send("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>");
    let version = c.read_until("</iq>", WAIT);
    assert!(
        version.contains("<name>wrenhub</name>")
            && version.contains(&format!("<version>{}</version>", env!("CARGO_PKG_VERSION")))
    );
    c.send("<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(c.read_until_any(&["/></iq>", "</iq>"]).contains("id='i1' type='result'"));
}

#[test]
fn the_servers_disco_info_lists_blocking_vcard_private_and_offline_storage() {
    // R2: clients look for these on the server's JID and hide "Block" without it.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    c.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = c.read_until("</iq>", WAIT);
    for f in ["urn:xmpp:blocking", "vcard-temp", "jabber:iq:private", "msgoffline"] {
        assert!(info.contains(&format!("<feature var='{f}'/>")), "{f}: {info}");
    }
}

#[test]
fn disco_info_on_the_caps_node_answers_like_the_plain_query() {
    // R6, XEP-0115 §6.2: a client verifying the server's caps asks node#ver.
    let server = Server::start();
    server.add_user("juliet", "balcony");
    let mut c = server.login("juliet", "balcony", "home");
    let features = c.received();
    let caps = &features[features.find("<c xmlns='http://jabber.org/protocol/caps'").expect("caps in the features")..];
    let node = between(caps, "node='", "'").to_string();
    let ver = between(caps, "ver='", "'").to_string();
    c.send("<iq type='get' id='plain' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let plain = c.read_until("</iq>", WAIT);
    c.send(&format!(
        "<iq type='get' id='node' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}#{ver}'/></iq>"
    ));
    let on_node = c.read_until("</iq>", WAIT);
    assert!(on_node.contains("type='result'") && on_node.contains(&format!("node='{node}#{ver}'")), "{on_node}");
    let body = |s: &str| s[s.find("<identity").unwrap()..].to_string();
    assert_eq!(body(&on_node), body(&plain));
    c.send(&format!(
        "<iq type='get' id='other' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}#nope'/></iq>"
    ));
    assert!(c.read_until("</iq>", WAIT).contains("<item-not-found "));
}

#[test]
fn roster_blocklist_and_private_changes_answered_before_a_kill_survive_it() {
    // The store writer (S9, A1): these effects commit without fsync on the loop and
    // become durable in the writer's next batch; the stream answers only after it.
    let mut server = Server::start();
    for i in 0..6 {
        server.add_user(&format!("u{i}"), "pw");
    }
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let mut c = server.login(&format!("u{i}"), "pw", "x");
            std::thread::spawn(move || {
                for n in 0..10 {
                    let got = set_item(&mut c, &format!("s{n}"), &format!("<item jid='c{n}@example.net'/>"));
                    assert!(got.contains("type='result'"), "{got}");
                }
                c.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='spam@example.net'/></block></iq>");
                c.read_until("id='b' type='result'", WAIT);
                c.send(
                    "<iq type='set' id='p'><query xmlns='jabber:iq:private'><n xmlns='x:notes'>kept</n></query></iq>",
                );
                c.read_until("id='p' type='result'", WAIT);
                c
            })
        })
        .collect();
    let _clients: Vec<Client> = threads.into_iter().map(|t| t.join().expect("client")).collect();
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "");
    for i in 0..6 {
        let mut c = restarted.login(&format!("u{i}"), "pw", "x");
        let roster = roster_query(&mut c, "r", None);
        assert_eq!(roster.matches("<item ").count(), 10, "{roster}");
        c.send("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
        assert!(c.read_until("</iq>", WAIT).contains("spam@example.net"));
        c.send("<iq type='get' id='pg'><query xmlns='jabber:iq:private'><n xmlns='x:notes'/></query></iq>");
        assert!(c.read_until("</iq>", WAIT).contains(">kept</n>"));
    }
}
