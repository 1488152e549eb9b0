//! XEP-0313 message archives on the wire: both parties' archives with XEP-0359
//! stanza-ids (forged ones removed), what is not archived, paging forward and
//! backward from the newest, each filter, the metadata query, offline messages,
//! who may query, retention, quotas, and the archive surviving a kill -9 once a
//! ping was answered.

mod common;
use common::*;

const MAM: &str = "urn:xmpp:mam:2";
/// The archive is on by default; the tests that need it say so.
const ON: &str = "archive = true\n";
const RSM: &str = "http://jabber.org/protocol/rsm";

/// Sends an archive query and reads up to its answer: (the result messages, the
/// iq answer).
fn query(c: &mut Client, id: &str, to: Option<&str>, form: &str, set: &str) -> (Vec<String>, String) {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    let form = if form.is_empty() {
        String::new()
    } else {
        format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>{form}</x>"
        )
    };
    c.send(&format!("<iq type='set' id='{id}'{to}><query xmlns='{MAM}' queryid='q-{id}'>{form}{set}</query></iq>"));
    let got = c.read_until_any(&[&format!("id='{id}' type='result'"), &format!("id='{id}' type='error'")]);
    let tail = c.read_until("</iq>", WAIT);
    let all = got + &tail;
    let at = all.rfind("<iq").expect("the answer");
    // Each result is an outer `<message from=…>`; the archived one inside it
    // starts with its `xmlns`.
    let results =
        all[..at].split("<message from=").skip(1).filter(|m| m.contains("queryid='q-")).map(str::to_string).collect();
    (results, all[at..].to_string())
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn max(n: usize) -> String {
    format!("<set xmlns='{RSM}'><max>{n}</max></set>")
}

fn body_of(result: &str) -> &str {
    between(result, "<body>", "</body>")
}

fn result_id(result: &str) -> String {
    between(&result[result.find("<result").expect("a result")..], " id='", "'").to_string()
}

/// Juliet and Romeo, both available (each has read its own presence).
fn online(server: &Server) -> (Client, Client) {
    let (mut juliet, mut romeo) = server.juliet_and_romeo();
    for c in [&mut juliet, &mut romeo] {
        c.send("<presence/>");
        c.sync("online");
    }
    (juliet, romeo)
}

/// Juliet sends Romeo `n` chat messages `m0..`; Romeo reads them.
fn chat(juliet: &mut Client, romeo: &mut Client, n: usize) -> Vec<String> {
    let mut delivered = Vec::new();
    for k in 0..n {
        juliet.send(&format!("<message to='romeo@localhost' type='chat' id='c{k}'><body>m{k}</body></message>"));
        delivered.push(romeo.read_until("</message>", WAIT));
    }
    delivered
}

#[test]
fn both_parties_archive_with_stanza_ids_and_pages_go_forward_and_back_from_the_newest() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    let delivered = chat(&mut juliet, &mut romeo, 5);
    for (k, d) in delivered.iter().enumerate() {
        assert!(
            d.contains(&format!("<body>m{k}</body>"))
                && d.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='"),
            "{d}"
        );
    }
    let ids: Vec<String> =
        delivered.iter().map(|d| between(&d[d.find("<stanza-id").unwrap()..], " id='", "'").to_string()).collect();
    // The first page, then the next after its last.
    let (page, fin) = query(&mut romeo, "p1", None, "", &max(2));
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0", "m1"], "{page:?}");
    assert!(
        page[0].starts_with("'romeo@localhost' to='romeo@localhost/b'>")
            && page[0].contains("<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='"),
        "{}",
        page[0]
    );
    assert!(
        page[0].contains("<message xmlns='jabber:client' ") && page[0].contains("from='juliet@localhost/a'"),
        "{}",
        page[0]
    );
    assert_eq!(result_id(&page[0]), ids[0]);
    assert!(
        !fin.contains("complete='true'") && fin.contains(&format!("<first>{}</first><last>{}</last>", ids[0], ids[1])),
        "{fin}"
    );
    let (page, fin) =
        query(&mut romeo, "p2", None, "", &format!("<set xmlns='{RSM}'><max>10</max><after>{}</after></set>", ids[1]));
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m2", "m3", "m4"]);
    assert!(fin.contains("<fin xmlns='urn:xmpp:mam:2' complete='true'>"), "{fin}");
    // Catching up: the newest page first, then older ones.
    let (page, fin) = query(&mut romeo, "p3", None, "", &format!("<set xmlns='{RSM}'><max>2</max><before/></set>"));
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m3", "m4"]);
    assert!(!fin.contains("complete='true'"), "{fin}");
    let (page, fin) =
        query(&mut romeo, "p4", None, "", &format!("<set xmlns='{RSM}'><max>5</max><before>{}</before></set>", ids[3]));
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
    assert!(fin.contains("complete='true'"), "{fin}");
    // The sender's archive has what she sent.
    let (page, _) = query(&mut juliet, "j1", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3", "m4"]);
    assert!(page[0].contains("to='romeo@localhost'"), "{}", page[0]);
    // The account says it has an archive (XEP-0313 §6).
    juliet.send(
        "<iq type='get' id='d' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let info = juliet.read_until("</iq>", WAIT);
    assert!(info.contains("<feature var='urn:xmpp:mam:2'/>") && info.contains("urn:xmpp:mam:2#extended"), "{info}");
    // The metadata query names the first and the last.
    juliet.send(&format!("<iq type='get' id='md'><metadata xmlns='{MAM}'/></iq>"));
    let md = juliet.read_until("</iq>", WAIT);
    assert!(md.contains("<metadata xmlns='urn:xmpp:mam:2'><start id='") && md.contains("<end id='"), "{md}");
    // Nobody else reads an archive.
    let (_, refused) = query(&mut juliet, "x1", Some("romeo@localhost"), "", "");
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
}

#[test]
fn pages_stay_consistent_while_new_messages_arrive() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    chat(&mut juliet, &mut romeo, 4);
    let bodies = |page: &[String]| page.iter().map(|r| body_of(r).to_string()).collect::<Vec<_>>();
    let (newest, _) = query(&mut romeo, "n", None, "", &format!("<set xmlns='{RSM}'><max>2</max><before/></set>"));
    let (first, _) = query(&mut romeo, "f", None, "", &max(2));
    assert_eq!((bodies(&newest), bodies(&first)), (vec!["m2".into(), "m3".into()], vec!["m0".into(), "m1".into()]));
    // Three arrive between the pages.
    for k in 0..3 {
        juliet.send(&format!("<message to='romeo@localhost' type='chat'><body>new{k}</body></message>"));
        romeo.read_until(&format!("new{k}"), WAIT);
    }
    // Forward from the first page: on where it ended, nothing skipped or repeated.
    let after = format!("<set xmlns='{RSM}'><max>3</max><after>{}</after></set>", result_id(&first[1]));
    let (next, fin) = query(&mut romeo, "a", None, "", &after);
    assert_eq!(bodies(&next), ["m2", "m3", "new0"]);
    assert!(!fin.contains("complete='true'"), "{fin}");
    // Backward from the newest page as it was: the same older messages, complete.
    let before = format!("<set xmlns='{RSM}'><max>10</max><before>{}</before></set>", result_id(&newest[0]));
    let (older, fin) = query(&mut romeo, "b", None, "", &before);
    assert_eq!(bodies(&older), ["m0", "m1"]);
    assert!(fin.contains("complete='true'"), "{fin}");
}

#[test]
fn each_filter_selects_and_what_is_not_a_kept_message_is_not_archived() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    server.add_user("nurse", "pw");
    let mut nurse = server.login("nurse", "pw", "kitchen");
    chat(&mut juliet, &mut romeo, 3);
    nurse.send("<message to='romeo@localhost' type='chat'><body>from the nurse</body></message>");
    romeo.read_until("from the nurse", WAIT);
    // Not archived: a headline, a chat state alone, a no-store hint, an error.
    juliet.send("<message to='romeo@localhost' type='headline'><body>news</body></message>");
    juliet.send(
        "<message to='romeo@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    juliet.send(
        "<message to='romeo@localhost' type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>",
    );
    // A stanza-id by Romeo's account from outside is not believed.
    juliet.send(
        "<message to='romeo@localhost' type='chat'><body>forged</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='0000000000000001'/></message>",
    );
    let forged = romeo.read_until("forged", WAIT) + &romeo.read_until("</message>", WAIT);
    assert!(!forged.contains("id='0000000000000001'") && forged.contains("by='romeo@localhost'"), "{forged}");
    let q = |c: &mut Client, id: &str, form: &str| query(c, id, None, form, "").0;
    let all = q(&mut romeo, "a", "");
    let bodies: Vec<&str> = all.iter().map(|r| body_of(r)).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "from the nurse", "forged"], "{all:?}");
    let ids: Vec<String> = all.iter().map(|r| result_id(r)).collect();
    let with_nurse = q(&mut romeo, "w1", &field("with", "nurse@localhost"));
    assert_eq!(with_nurse.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["from the nurse"]);
    let with_resource = q(&mut romeo, "w2", &field("with", "juliet@localhost/a"));
    assert_eq!(with_resource.len(), 4);
    assert!(q(&mut romeo, "w3", &field("with", "juliet@localhost/elsewhere")).is_empty());
    let between_ids = q(&mut romeo, "b1", &(field("after-id", &ids[0]) + &field("before-id", &ids[3])));
    assert_eq!(between_ids.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m1", "m2"]);
    let chosen =
        q(&mut romeo, "i1", &format!("<field var='ids'><value>{}</value><value>{}</value></field>", ids[4], ids[1]));
    assert_eq!(chosen.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m1", "forged"]);
    let future = q(&mut romeo, "t1", &field("start", "2999-01-01T00:00:00Z"));
    assert!(future.is_empty());
    let past = q(&mut romeo, "t2", &(field("start", "2000-01-01T00:00:00Z") + &field("end", "2999-01-01T00:00:00Z")));
    assert_eq!(past.len(), 5);
    // Bad input gets the XEP's errors.
    let (_, unknown) = query(&mut romeo, "e1", None, &field("colour", "red"), "");
    assert!(unknown.contains("type='error'") && unknown.contains("<bad-request "), "{unknown}");
    let (_, missing) = query(&mut romeo, "e2", None, "", &format!("<set xmlns='{RSM}'><after>nonsense</after></set>"));
    assert!(missing.contains("<item-not-found "), "{missing}");
    let (_, date) = query(&mut romeo, "e3", None, &field("start", "yesterday"), "");
    assert!(date.contains("<bad-request "), "{date}");
    // The form's fields.
    romeo.send(&format!("<iq type='get' id='f'><query xmlns='{MAM}'/></iq>"));
    let form = romeo.read_until("</iq>", WAIT);
    assert!(form.contains("<field var='with' type='jid-single'/>") && form.contains("var='before-id'"), "{form}");
}

#[test]
fn offline_messages_are_archived_and_the_archive_survives_a_kill_9_after_the_ping() {
    let mut server = Server::start_with(ON);
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut juliet = server.login("juliet", "pw", "a");
    for k in 0..20 {
        juliet.send(&format!("<message to='romeo@localhost' type='chat' id='o{k}'><body>offline {k}</body></message>"));
    }
    // The ping's answer comes after every message before it is on disk.
    juliet.sync("durable");
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, ON);
    let mut romeo = restarted.login("romeo", "pw", "b");
    romeo.send("<presence/>");
    let offline = romeo.read_until("offline 19", WAIT);
    assert!(offline.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost'"), "{offline}");
    romeo.sync("read");
    let (page, fin) = query(&mut romeo, "r", None, "", &max(100));
    assert_eq!(page.len(), 20, "{fin}");
    let mut juliet = restarted.login("juliet", "pw", "a");
    let (page, _) = query(&mut juliet, "j", None, "", &max(100));
    assert_eq!(page.len(), 20);
    // Ids continue above the stored ones after the restart.
    juliet.send("<message to='romeo@localhost' type='chat'><body>after</body></message>");
    let (newest, _) = query(&mut juliet, "n", None, "", &format!("<set xmlns='{RSM}'><max>1</max><before/></set>"));
    assert!(body_of(&newest[0]) == "after" && result_id(&newest[0]) > result_id(&page[19]), "{newest:?}");
}

#[test]
fn the_archive_is_on_by_default_and_archive_false_turns_it_off() {
    let server = Server::start();
    let (mut juliet, mut romeo) = online(&server);
    let got = chat(&mut juliet, &mut romeo, 1);
    assert!(got[0].contains("<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost'"), "{got:?}");
    let server = Server::start_with("archive = false\n");
    let (mut juliet, mut romeo) = online(&server);
    let got = chat(&mut juliet, &mut romeo, 1);
    assert!(!got[0].contains("stanza-id"), "{got:?}");
    let (_, answer) = query(&mut juliet, "q", None, "", "");
    assert!(answer.contains("type='error'") && answer.contains("<service-unavailable "), "{answer}");
    juliet.send(
        "<iq type='get' id='d' to='juliet@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let info = juliet.read_until("</iq>", WAIT);
    assert!(info.contains("urn:xmpp:pep-vcard-conversion:0") && !info.contains("urn:xmpp:mam:2"), "{info}");
}

#[test]
fn after_a_kill_9_in_a_message_storm_every_message_before_an_answered_ping_is_in_both_archives() {
    let mut server = Server::start_with("mam_page_max = 1000\n");
    let (mut juliet, mut romeo) = online(&server);
    let burst = |juliet: &mut Client, from: usize, ping: Option<&str>| {
        let mut s = String::new();
        for k in from..from + 50 {
            s += &format!("<message to='romeo@localhost/b' type='chat'><body>s{k}</body></message>");
        }
        if let Some(id) = ping {
            s += &format!("<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>");
        }
        juliet.send(&s);
    };
    for b in 0..10 {
        burst(&mut juliet, b * 50, Some(&format!("p{b}")));
        juliet.read_until(&format!("id='p{b}' type='result'"), WAIT);
        romeo.read_until(&format!("<body>s{}</body>", b * 50 + 49), WAIT);
    }
    // Another burst in flight, unanswered, when the server is killed.
    burst(&mut juliet, 500, None);
    server.signal("KILL");
    server.wait_exit(WAIT).expect("killed");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, "mam_page_max = 1000\n");
    for (user, resource) in [("juliet", "a"), ("romeo", "b")] {
        let mut c = restarted.login(user, "pw", resource);
        let (page, fin) = query(&mut c, "all", None, "", &max(1000));
        let bodies: Vec<&str> = page.iter().map(|r| body_of(r)).collect();
        assert!(bodies.len() >= 500 && fin.contains("complete='true'"), "{user}: {} {fin}", bodies.len());
        for (k, b) in bodies.iter().take(500).enumerate() {
            assert_eq!(*b, format!("s{k}"), "{user}'s archive, in order and without a gap");
        }
    }
}

#[test]
fn past_archive_max_messages_the_oldest_go_and_new_ones_are_kept() {
    let server = Server::start_with("archive = true\narchive_max_messages = 3\n");
    let (mut juliet, mut romeo) = online(&server);
    let delivered = chat(&mut juliet, &mut romeo, 5);
    assert!(delivered.iter().all(|d| d.contains("<stanza-id ")), "none refused: {delivered:?}");
    let (page, _) = query(&mut romeo, "q", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m2", "m3", "m4"]);
    let (page, _) = query(&mut juliet, "j", None, "", "");
    assert_eq!(page.len(), 3);
}

#[test]
fn past_archive_days_the_start_time_pass_removes_old_messages_and_new_ones_are_kept() {
    let config = "archive = true\narchive_days = 1\n";
    let server = Server::start_with(config);
    let (mut juliet, mut romeo) = online(&server);
    chat(&mut juliet, &mut romeo, 3);
    let (page, _) = query(&mut romeo, "before", None, "", "");
    assert_eq!(page.len(), 3);
    drop((juliet, romeo));
    // Two days later by the server's clock.
    let later = server.restart_days_later(2, config);
    // The background pass at start logs what it removed.
    later.wait_for_log("archives: 6 old message(s) removed", WAIT);
    let (mut juliet, mut romeo) = online(&later);
    chat(&mut juliet, &mut romeo, 1);
    let (page, fin) = query(&mut romeo, "after", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0"], "{fin}");
    let (page, _) = query(&mut juliet, "sent", None, "", "");
    assert_eq!(page.len(), 1, "the sender's archive too");
}

#[test]
fn past_archive_max_bytes_the_oldest_go_and_the_newest_are_kept() {
    let server = Server::start_with("archive = true\narchive_max_bytes = 4096\n");
    let (mut juliet, mut romeo) = online(&server);
    let delivered = chat(&mut juliet, &mut romeo, 40);
    assert!(delivered.iter().all(|d| d.contains("<stanza-id ")), "none refused");
    let (page, fin) = query(&mut romeo, "q", None, "", &max(100));
    let kept: Vec<&str> = page.iter().map(|r| body_of(r)).collect();
    // A copy counts its message and its rows: 4 KiB holds some, not all 40.
    assert!(kept.len() > 5 && kept.len() < 40, "{} kept: {fin}", kept.len());
    let newest: Vec<String> = (40 - kept.len()..40).map(|k| format!("m{k}")).collect();
    assert_eq!(kept, newest, "the newest, in order");
}

#[test]
fn a_page_is_bounded_in_bytes_and_paging_goes_on() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    let big = "z".repeat(200 * 1024);
    for k in 0..6 {
        juliet.send(&format!("<message to='romeo@localhost' type='chat'><body>{k}{big}</body></message>"));
        romeo.read_until("</message>", WAIT);
    }
    let (page, fin) = query(&mut romeo, "b1", None, "", &max(10));
    assert!(page.len() < 6 && !page.is_empty() && !fin.contains("complete='true'"), "{} results", page.len());
    let last = between(&fin, "<last>", "</last>").to_string();
    let (rest, fin) =
        query(&mut romeo, "b2", None, "", &format!("<set xmlns='{RSM}'><max>10</max><after>{last}</after></set>"));
    assert_eq!(page.len() + rest.len(), 6, "{fin}");
    assert!(fin.contains("complete='true'"), "{fin}");
}

fn prefs(c: &mut Client, id: &str, set: Option<&str>) -> String {
    match set {
        None => c.send(&format!("<iq type='get' id='{id}'><prefs xmlns='{MAM}'/></iq>")),
        Some(p) => c.send(&format!("<iq type='set' id='{id}'>{p}</iq>")),
    }
    let got = c.read_until_any(&[&format!("id='{id}' type='result'"), &format!("id='{id}' type='error'")]);
    got.clone() + &c.read_until("</iq>", WAIT)
}

#[test]
fn preferences_choose_what_each_archive_keeps_and_survive_a_restart() {
    let mut server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    server.add_user("nurse", "pw");
    let mut nurse = server.login("nurse", "pw", "n");
    nurse.send("<presence/>");
    nurse.sync("online");
    let p = prefs(&mut romeo, "p0", None);
    assert!(p.contains("<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never/></prefs>"), "{p}");
    // Never, but always Juliet.
    let set =
        format!("<prefs xmlns='{MAM}' default='never'><always><jid>juliet@localhost</jid></always><never/></prefs>");
    let p = prefs(&mut romeo, "p1", Some(&set));
    assert!(p.contains("default='never'><always><jid>juliet@localhost</jid></always><never/></prefs>"), "{p}");
    nurse.send("<message to='romeo@localhost/b' type='chat'><body>from the nurse</body></message>");
    let from_nurse = romeo.read_until("</message>", WAIT);
    assert!(from_nurse.contains("from the nurse") && !from_nurse.contains("stanza-id"), "{from_nurse}");
    let from_juliet = chat(&mut juliet, &mut romeo, 1).remove(0);
    assert!(from_juliet.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost'"), "{from_juliet}");
    romeo.send("<message to='nurse@localhost' type='chat'><body>to the nurse</body></message>");
    nurse.read_until("to the nurse", WAIT);
    let (page, _) = query(&mut romeo, "q1", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0"], "{page:?}");
    // The nurse's own archive (default) keeps both.
    let (page, _) = query(&mut nurse, "qn", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["from the nurse", "to the nurse"]);
    // Roster: only contacts, and never one resource of Juliet's.
    let set =
        format!("<prefs xmlns='{MAM}' default='roster'><always/><never><jid>juliet@localhost/a</jid></never></prefs>");
    prefs(&mut romeo, "p2", Some(&set));
    nurse.send("<message to='romeo@localhost/b' type='chat'><body>not yet a contact</body></message>");
    romeo.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='nurse@localhost'/></query></iq>");
    romeo.read_until("id='r1' type='result'", WAIT);
    nurse.send("<message to='romeo@localhost/b' type='chat'><body>now a contact</body></message>");
    romeo.read_until("now a contact", WAIT);
    chat(&mut juliet, &mut romeo, 1);
    let (page, _) = query(&mut romeo, "q2", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0", "now a contact"], "{page:?}");
    // Bad preferences are refused and change nothing.
    let p = prefs(&mut romeo, "p3", Some(&format!("<prefs xmlns='{MAM}' default='sometimes'/>")));
    assert!(p.contains("type='error'") && p.contains("<bad-request "), "{p}");
    // They are kept across a restart.
    server.signal("TERM");
    server.wait_exit(WAIT).expect("stopped");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, ON);
    let mut romeo = restarted.login("romeo", "pw", "b");
    let p = prefs(&mut romeo, "p4", None);
    assert!(p.contains("default='roster'><always/><never><jid>juliet@localhost/a</jid></never></prefs>"), "{p}");
}

#[test]
fn carbons_carry_the_stanza_id_of_the_accounts_archive() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    let mut other = server.login("romeo", "pw", "c");
    other.send("<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
    other.read_until("id='cc'", WAIT);
    juliet.send("<message to='romeo@localhost/b' type='chat'><body>to b</body></message>");
    let delivered = romeo.read_until("</message>", WAIT);
    let carbon = other.read_until("</message></forwarded></received></message>", WAIT);
    let id = between(&delivered[delivered.find("<stanza-id").expect("a stanza-id")..], " id='", "'").to_string();
    assert!(
        carbon.contains("<received xmlns='urn:xmpp:carbons:2'>")
            && carbon.contains(&format!("<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='{id}'/>")),
        "{carbon}"
    );
    romeo.send("<message to='juliet@localhost' type='chat'><body>from b</body></message>");
    juliet.read_until("from b", WAIT);
    let sent = other.read_until("</message></forwarded></sent></message>", WAIT);
    let (newest, _) = query(&mut romeo, "n", None, "", &format!("<set xmlns='{RSM}'><max>1</max><before/></set>"));
    assert_eq!(body_of(&newest[0]), "from b");
    assert!(
        sent.contains("<sent xmlns='urn:xmpp:carbons:2'>")
            && sent.contains("<message xmlns='jabber:client' ")
            && sent.contains(&format!(
                "<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='{}'/>",
                result_id(&newest[0])
            )),
        "{sent}"
    );
}

const ROOM: &str = "garden@conference.localhost";
const MUC: &str = "http://jabber.org/protocol/muc";

/// Enters `ROOM` as `nick`; returns everything up to and including the subject.
fn enter(c: &mut Client, nick: &str) -> String {
    c.send(&format!("<presence to='{ROOM}/{nick}'><x xmlns='{MUC}'/></presence>"));
    let mut got = c.read_until("<subject", WAIT);
    got.push_str(&c.read_until("</message>", WAIT));
    got
}

fn configure(c: &mut Client, id: &str, fields: &[(&str, &str)]) -> String {
    let fields: String =
        fields.iter().map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>")).collect();
    c.send(&format!(
        "<iq type='set' to='{ROOM}' id='{id}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    ));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

fn room_info(c: &mut Client, id: &str) -> String {
    c.send(&format!(
        "<iq type='get' to='{ROOM}' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    c.read_until("</iq>", WAIT)
}

fn stanza_id_by_room(m: &str) -> String {
    let at = m.find(&format!("<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='")).unwrap_or_else(|| panic!("{m}"));
    between(&m[at..], " id='", "'").to_string()
}

#[test]
fn a_room_archives_with_its_stanza_ids_answers_who_may_read_and_its_history_outlives_a_restart() {
    let mut server = Server::start_with(ON);
    for u in ["juliet", "romeo", "nurse"] {
        server.add_user(u, "pw");
    }
    let (mut juliet, mut romeo) = online(&server);
    let mut nurse = server.login("nurse", "pw", "n");
    enter(&mut juliet, "Juliet");
    let created = configure(&mut juliet, "cfg", &[("muc#roomconfig_persistentroom", "1")]);
    assert!(created.contains("type='result'"), "{created}");
    let info = room_info(&mut juliet, "i1");
    assert!(info.contains("<feature var='urn:xmpp:mam:2'/>"), "{info}");
    juliet.send(&format!("<iq type='get' to='{ROOM}' id='f'><query xmlns='{MUC}#owner'/></iq>"));
    let form = juliet.read_until("</iq>", WAIT);
    assert!(form.contains("var='muc#roomconfig_enablearchiving'"), "{form}");
    enter(&mut romeo, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    // Messages, one with an origin-id and a stanza-id forged in the room's name.
    let mut ids = Vec::new();
    for k in 0..3 {
        juliet.send(&format!(
            "<message to='{ROOM}' type='groupchat' id='g{k}'><body>g{k}</body><origin-id xmlns='urn:xmpp:sid:0' id='o{k}'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='forged'/></message>"
        ));
        let got = romeo.read_until("</message>", WAIT);
        let echo = juliet.read_until("</message>", WAIT);
        assert!(got.contains(&format!("<body>g{k}</body>")) && got.contains(&format!("id='o{k}'")), "{got}");
        assert!(!got.contains("forged") && !echo.contains("forged"), "{got}");
        assert_eq!(stanza_id_by_room(&got), stanza_id_by_room(&echo));
        ids.push(stanza_id_by_room(&got));
    }
    juliet.send(&format!("<message to='{ROOM}' type='groupchat'><subject>Roses</subject></message>"));
    let subject = romeo.read_until("</message>", WAIT);
    juliet.read_until("Roses", WAIT);
    stanza_id_by_room(&subject);
    // Occupants of an open room read it, so does anyone who is not banned.
    let (page, fin) = query(&mut romeo, "r1", Some(ROOM), "", "");
    assert_eq!(page.len(), 4, "{page:?} {fin}");
    assert_eq!(page[..3].iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["g0", "g1", "g2"]);
    assert!(page[3].contains("<subject>Roses</subject>"), "{}", page[3]);
    for (r, id) in page.iter().zip(&ids) {
        assert!(r.starts_with(&format!("'{ROOM}' to='romeo@localhost/b'>")), "{r}");
        assert!(r.contains(&format!("from='{ROOM}/Juliet'")) && r.contains("type='groupchat'"), "{r}");
        assert!(!r.contains("juliet@localhost"), "a semi-anonymous room's archive has no real JIDs: {r}");
        assert_eq!(&result_id(r), id);
    }
    assert!(fin.contains("complete='true'"), "{fin}");
    let (newest, _) =
        query(&mut nurse, "n1", Some(ROOM), "", &format!("<set xmlns='{RSM}'><max>2</max><before/></set>"));
    assert!(body_of(&newest[0]) == "g2" && newest[1].contains("Roses"), "{newest:?}");
    nurse.send(&format!("<iq type='get' to='{ROOM}' id='md'><metadata xmlns='{MAM}'/></iq>"));
    let md = nurse.read_until("</iq>", WAIT);
    assert!(md.contains(&format!("<start id='{}'", ids[0])), "{md}");
    // A members-only room answers its members only.
    configure(&mut juliet, "mo", &[("muc#roomconfig_membersonly", "1")]);
    let (_, refused) = query(&mut nurse, "n2", Some(ROOM), "", "");
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
    let (page, _) = query(&mut juliet, "j1", Some(ROOM), "", "");
    assert_eq!(page.len(), 4);
    // After a restart the room's history comes from its archive.
    drop((juliet, romeo, nurse));
    server.signal("TERM");
    server.wait_exit(WAIT).expect("stopped");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = Server::start_in(dir, ON);
    let mut juliet = server.login("juliet", "pw", "a");
    juliet.send("<presence/>");
    juliet.sync("on");
    let back = enter(&mut juliet, "Juliet");
    for k in 0..3 {
        assert!(back.contains(&format!("<body>g{k}</body>")), "history g{k}: {back}");
    }
    assert!(back.contains("<delay xmlns='urn:xmpp:delay'") && back.contains(&ids[2]), "{back}");
    // With archiving off, nothing more is kept and the feature goes.
    assert!(back.contains("<status code='170'/>"), "a logged room says so on entering: {back}");
    let off = configure(&mut juliet, "off", &[("muc#roomconfig_enablearchiving", "0")]);
    assert!(off.contains("<status code='104'/><status code='171'/>"), "{off}");
    juliet.send(&format!("<message to='{ROOM}' type='groupchat'><body>unkept</body></message>"));
    let echo = juliet.read_until("</message>", WAIT);
    assert!(echo.contains("unkept") && !echo.contains("stanza-id"), "{echo}");
    assert!(!room_info(&mut juliet, "i2").contains("urn:xmpp:mam:2"));
    // A destroyed room's archive goes with it: a new room of the name starts empty.
    configure(&mut juliet, "on", &[("muc#roomconfig_enablearchiving", "1")]);
    juliet.send(&format!("<iq type='set' to='{ROOM}' id='d'><query xmlns='{MUC}#owner'><destroy/></query></iq>"));
    juliet.read_until("id='d' type='result'", WAIT);
    enter(&mut juliet, "Juliet");
    configure(&mut juliet, "cfg2", &[]);
    let (page, fin) = query(&mut juliet, "j2", Some(ROOM), "", "");
    assert!(page.is_empty() && fin.contains("complete='true'"), "{page:?}");
}

#[test]
fn past_archive_max_total_bytes_the_hubs_oldest_messages_go_whichever_archive_holds_them() {
    let config = "archive_max_total_bytes = 1048576\n";
    let mut server = Server::start_with(config);
    let (mut juliet, mut romeo) = online(&server);
    let big = "z".repeat(100 * 1024);
    for k in 0..8 {
        juliet.send(&format!("<message to='romeo@localhost' type='chat'><body>{k}{big}</body></message>"));
        romeo.read_until("</message>", WAIT);
    }
    juliet.sync("sent");
    server.signal("TERM");
    server.wait_exit(WAIT).expect("stopped");
    // 16 copies of 100 KiB: the pass at start takes the oldest until 1 MiB is left.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let restarted = Server::start_in(dir, config);
    restarted.wait_for_log("old message(s) removed", WAIT);
    let mut kept = 0;
    for (user, resource) in [("juliet", "a"), ("romeo", "b")] {
        let mut c = restarted.login(user, "pw", resource);
        let (page, _) = query(&mut c, "all", None, "", &max(100));
        let firsts: Vec<char> = page.iter().map(|r| body_of(r).chars().next().unwrap_or('?')).collect();
        assert_eq!(firsts.last(), Some(&'7'), "{user}: the newest stays: {firsts:?}");
        assert!(firsts.len() < 8, "{user}: {firsts:?}");
        kept += page.len();
    }
    assert!((8..=10).contains(&kept), "about 1 MiB of 100 KiB copies is kept: {kept}");
}

#[test]
fn deleting_an_account_deletes_its_archive_and_its_preferences_and_not_its_contacts_copies() {
    let server = Server::start_with(ON);
    let (mut juliet, mut romeo) = online(&server);
    chat(&mut juliet, &mut romeo, 3);
    prefs(&mut romeo, "p1", Some(&format!("<prefs xmlns='{MAM}' default='never'><always/><never/></prefs>")));
    drop(romeo);
    let (ok, text) = server.cli(&["user", "del", "romeo"], "");
    assert!(ok, "{text}");
    server.add_user("romeo", "pw");
    let mut romeo = server.login("romeo", "pw", "b");
    let (page, fin) = query(&mut romeo, "q", None, "", "");
    assert!(page.is_empty() && fin.contains("complete='true'"), "a new account of the name starts empty: {page:?}");
    let p = prefs(&mut romeo, "p2", None);
    assert!(p.contains("default='always'"), "{p}");
    let (page, _) = query(&mut juliet, "j", None, "", "");
    assert_eq!(page.iter().map(|r| body_of(r)).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
}
