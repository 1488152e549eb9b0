//! XEP-0045 group chat at conference.localhost on the wire (issue 15): creating a locked room and making it an instant room, entering
//! with the status codes, occupants' presence, groupchat messages, history and
//! subject on join, nickname conflicts and changes, private messages, leaving,
//! a session that ends leaving its rooms, disco, self-ping, and the bounds; then
//! roles and affiliations, configuration, persistence, reserved nicknames, voice
//! requests, room vCards, iqs to occupants, removal codes and creation policy.

mod common;
use common::*;

const MUC: &str = "http://jabber.org/protocol/muc";
const ROOM: &str = "garden@conference.localhost";

/// Logs in and sends initial presence (its echo read).
fn online(server: &Server, user: &str, resource: &str) -> Client {
    let mut c = server.login(user, "pw", resource);
    c.send("<presence/>");
    c.read_until(&format!("to='{user}@localhost/{resource}'/>"), WAIT);
    c
}

/// Enters `room` as `nick`; returns everything up to and including the subject.
fn enter(c: &mut Client, room: &str, nick: &str) -> String {
    c.send(&format!("<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"));
    let mut got = c.read_until("<subject", WAIT);
    got.push_str(&c.read_until("</message>", WAIT));
    got
}

/// Juliet creates the room and makes it an instant room (§10.1.2).
fn juliet_creates(server: &Server) -> Client {
    let mut juliet = online(server, "juliet", "balcony");
    let created = enter(&mut juliet, ROOM, "Juliet");
    assert!(created.contains("<status code='201'/>") && created.contains("<status code='110'/>"), "{created}");
    assert!(created.contains("affiliation='owner' role='moderator'"), "{created}");
    juliet.send(&format!(
        "<iq type='set' to='{ROOM}' id='cfg'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ));
    juliet.read_until("id='cfg' type='result'/>", WAIT);
    juliet
}

fn users(server: &Server) {
    for u in ["juliet", "romeo", "nurse"] {
        server.add_user(u, "pw");
    }
}

#[test]
fn the_service_is_listed_and_answers_disco() {
    let server = Server::start();
    users(&server);
    let mut c = online(&server, "juliet", "balcony");
    c.send("<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    let items = c.read_until("</iq>", WAIT);
    assert!(items.contains("<item jid='conference.localhost'/>"), "{items}");
    c.send("<iq type='get' to='conference.localhost' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = c.read_until("</iq>", WAIT);
    assert!(info.contains("category='conference' type='text'") && info.contains(&format!("var='{MUC}'")), "{info}");
}

#[test]
fn a_new_room_is_locked_until_its_owner_makes_it_an_instant_room_then_others_enter() {
    let server = Server::start();
    users(&server);
    let mut juliet = online(&server, "juliet", "balcony");
    enter(&mut juliet, ROOM, "Juliet");
    // §10.1.3: locked, so Romeo cannot enter yet.
    let mut romeo = online(&server, "romeo", "garden");
    romeo.send(&format!("<presence to='{ROOM}/Romeo'><x xmlns='{MUC}'/></presence>"));
    let refused = romeo.read_until("</presence>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<item-not-found "), "{refused}");
    juliet.send(&format!(
        "<iq type='set' to='{ROOM}' id='cfg'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    ));
    juliet.read_until("id='cfg' type='result'/>", WAIT);
    let entered = enter(&mut romeo, ROOM, "Romeo");
    // The owner's presence first (Romeo is no moderator: no real JID), then his own.
    let first = entered.find(&format!("from='{ROOM}/Juliet'")).expect(&entered);
    let own = entered.find(&format!("from='{ROOM}/Romeo'")).expect(&entered);
    assert!(first < own, "{entered}");
    assert!(!entered[first..own].contains("jid='juliet@localhost"), "semi-anonymous: {entered}");
    assert!(entered[own..].contains("<status code='110'/>") && !entered.contains("code='201'"), "{entered}");
    // Juliet, a moderator, sees Romeo's real JID.
    let seen = juliet.read_until("</presence>", WAIT);
    assert!(seen.contains(&format!("from='{ROOM}/Romeo'")) && seen.contains("jid='romeo@localhost/garden'"), "{seen}");
}

#[test]
fn messages_reach_every_occupant_and_later_joiners_get_history_then_the_subject() {
    let server = Server::start_with("muc_history = 2\n");
    users(&server);
    let mut juliet = juliet_creates(&server);
    juliet.send(&format!("<message to='{ROOM}' type='groupchat'><subject>Tonight</subject></message>"));
    juliet.read_until("Tonight", WAIT);
    let mut romeo = online(&server, "romeo", "garden");
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    for n in 1..=3 {
        romeo.send(&format!("<message to='{ROOM}' type='groupchat' id='g{n}'><body>line {n}</body></message>"));
        let echo = romeo.read_until("</message>", WAIT);
        assert!(echo.contains(&format!("from='{ROOM}/Romeo'")) && echo.contains(&format!("line {n}")), "{echo}");
        let got = juliet.read_until("</message>", WAIT);
        assert!(got.contains(&format!("from='{ROOM}/Romeo'")) && got.contains("type='groupchat'"), "{got}");
    }
    // The nurse gets the last two (muc_history = 2) with <delay/>, then the subject.
    let mut nurse = online(&server, "nurse", "kitchen");
    let joined = enter(&mut nurse, ROOM, "Nurse");
    assert!(!joined.contains("line 1") && joined.contains("line 2") && joined.contains("line 3"), "{joined}");
    assert!(joined.contains("<delay xmlns='urn:xmpp:delay' from='garden@conference.localhost' stamp='"), "{joined}");
    let subject = joined.rfind("<subject>Tonight</subject>").expect(&joined);
    assert!(subject > joined.rfind("line 3").unwrap(), "the subject comes after the history: {joined}");
    // <history maxstanzas='0'/>: none.
    let mut laptop = server.login("nurse", "pw", "laptop");
    laptop.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"));
    let mut got = laptop.read_until("<subject", WAIT);
    got.push_str(&laptop.read_until("</message>", WAIT));
    assert!(!got.contains("line "), "{got}");
    // Only moderators change the subject.
    romeo.send(&format!("<message to='{ROOM}' type='groupchat' id='s'><subject>Mine</subject></message>"));
    let refused = romeo.read_until("</message>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
}

#[test]
fn nicknames_conflict_change_with_303_and_private_messages_go_between_occupants() {
    let server = Server::start();
    users(&server);
    let mut juliet = juliet_creates(&server);
    let mut romeo = online(&server, "romeo", "garden");
    romeo.send(&format!("<presence to='{ROOM}/Juliet'><x xmlns='{MUC}'/></presence>"));
    let conflict = romeo.read_until("</presence>", WAIT);
    assert!(conflict.contains("type='error'") && conflict.contains("<conflict "), "409: {conflict}");
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    // A private message, from the sender's occupant JID.
    romeo.send(&format!("<message to='{ROOM}/Juliet' type='chat' id='pm'><body>psst</body></message>"));
    let pm = juliet.read_until("</message>", WAIT);
    assert!(pm.contains(&format!("from='{ROOM}/Romeo'")) && pm.contains("<body>psst</body>"), "{pm}");
    assert!(pm.contains("<x xmlns='http://jabber.org/protocol/muc#user'/>"), "{pm}");
    // §7.6: a new nickname: unavailable with 303 and the new name, then available.
    romeo.send(&format!("<presence to='{ROOM}/Montague'/>"));
    let change = juliet.read_until(&format!("from='{ROOM}/Montague'"), WAIT);
    assert!(change.contains("type='unavailable'") && change.contains("<status code='303'/>"), "{change}");
    assert!(change.contains("nick='Montague'"), "{change}");
    let own = romeo.read_until(&format!("from='{ROOM}/Montague'"), WAIT);
    assert!(own.contains("code='303'") && own.contains("code='110'"), "{own}");
}

#[test]
fn leaving_and_a_session_that_ends_take_the_occupant_out_and_an_empty_room_ends() {
    let server = Server::start();
    users(&server);
    let mut juliet = juliet_creates(&server);
    let mut romeo = online(&server, "romeo", "garden");
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    // Romeo's connection ends without a word: the room hears unavailable.
    romeo.send("</stream:stream>");
    romeo.read_to_close(WAIT);
    let gone = juliet.read_until("</presence>", WAIT);
    assert!(gone.contains(&format!("from='{ROOM}/Romeo'")) && gone.contains("type='unavailable'"), "{gone}");
    // XEP-0410: Juliet is still in; after leaving she is not, and the room is gone.
    juliet.send(&format!("<iq type='get' to='{ROOM}/Juliet' id='self'><ping xmlns='urn:xmpp:ping'/></iq>"));
    juliet.read_until("id='self' type='result'/>", WAIT);
    juliet.send(&format!("<presence to='{ROOM}/Juliet' type='unavailable'/>"));
    let left = juliet.read_until("</presence>", WAIT);
    assert!(left.contains("type='unavailable'") && left.contains("<status code='110'/>"), "{left}");
    juliet.send(&format!(
        "<iq type='get' to='{ROOM}' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let info = juliet.read_until("</iq>", WAIT);
    assert!(info.contains("type='error'") && info.contains("<item-not-found "), "an empty room ends: {info}");
}

#[test]
fn rooms_and_occupants_are_bounded_and_outsiders_cannot_post() {
    let server = Server::start_with("muc_max_rooms = 1\nmuc_max_occupants = 2\n");
    users(&server);
    let mut juliet = juliet_creates(&server);
    let mut romeo = online(&server, "romeo", "garden");
    romeo.send(&format!("<message to='{ROOM}' type='groupchat' id='x'><body>let me in</body></message>"));
    let refused = romeo.read_until("</message>", WAIT);
    assert!(refused.contains("<not-acceptable "), "{refused}");
    // A second room is over muc_max_rooms.
    romeo.send(&format!("<presence to='other@conference.localhost/Romeo'><x xmlns='{MUC}'/></presence>"));
    let no_room = romeo.read_until("</presence>", WAIT);
    assert!(no_room.contains("<resource-constraint "), "{no_room}");
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    // The room holds two: the nurse is refused with service-unavailable.
    let mut nurse = online(&server, "nurse", "kitchen");
    nurse.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'/></presence>"));
    let full = nurse.read_until("</presence>", WAIT);
    assert!(full.contains("type='error'") && full.contains("<service-unavailable "), "{full}");
}

#[test]
fn muc_domain_empty_turns_the_service_off() {
    let server = Server::start_with("muc_domain = \"\"\n");
    users(&server);
    let mut juliet = online(&server, "juliet", "balcony");
    juliet.send(&format!("<presence to='{ROOM}/Juliet'><x xmlns='{MUC}'/></presence>"));
    let got = juliet.read_until("</presence>", WAIT);
    assert!(got.contains("<remote-server-not-found "), "{got}");
}

/// Romeo in Juliet's instant room; both have read his arrival.
fn juliet_and_romeo_in_the_room(server: &Server) -> (Client, Client) {
    let mut juliet = juliet_creates(server);
    let mut romeo = online(server, "romeo", "garden");
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    (juliet, romeo)
}

fn admin(c: &mut Client, id: &str, item: &str) -> String {
    c.send(&format!("<iq type='set' to='{ROOM}' id='{id}'><query xmlns='{MUC}#admin'>{item}</query></iq>"));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

#[test]
fn occupants_carry_a_stable_occupant_id_and_invitations_and_declines_are_passed_on() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    // XEP-0421: the same id on presence and messages, one per account.
    romeo.send(&format!("<message to='{ROOM}' type='groupchat'><body>hi</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>"));
    let msg = juliet.read_until("</message>", WAIT);
    let id = between(&msg, "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='", "'").to_string();
    assert!(!msg.contains("forged") && id.len() == 16, "{msg}");
    romeo.send(&format!("<presence to='{ROOM}/Romeo'><show>away</show></presence>"));
    let update = juliet.read_until("</presence>", WAIT);
    assert!(update.contains(&format!("id='{id}'")) && update.contains("<show>away</show>"), "{update}");
    // §7.8.2: an invitation through the room, from the inviter's account.
    let mut nurse = online(&server, "nurse", "kitchen");
    juliet.send(&format!(
        "<message to='{ROOM}'><x xmlns='{MUC}#user'><invite to='nurse@localhost'><reason>Come</reason></invite></x></message>"
    ));
    let invite = nurse.read_until("</message>", WAIT);
    assert!(
        invite.contains(&format!("from='{ROOM}'")) && invite.contains("<invite from='juliet@localhost'>"),
        "{invite}"
    );
    assert!(invite.contains("<reason>Come</reason>"), "{invite}");
    // §7.8.3: the nurse declines; Juliet hears it.
    nurse.send(&format!(
        "<message to='{ROOM}'><x xmlns='{MUC}#user'><decline to='juliet@localhost/balcony'/></x></message>"
    ));
    let decline = juliet.read_until("</message>", WAIT);
    assert!(decline.contains("<decline from='nurse@localhost'/>"), "{decline}");
}

#[test]
fn moderators_kick_and_silence_and_owners_ban_grant_and_keep_an_owner() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    // Romeo, a participant, can neither kick nor ban.
    let refused = admin(&mut romeo, "k0", "<item nick='Juliet' role='none'/>");
    assert!(refused.contains("<forbidden "), "{refused}");
    // Voice revoked (§8.4): a visitor cannot speak.
    admin(&mut juliet, "v", "<item nick='Romeo' role='visitor'/>");
    let demoted = romeo.read_until("</presence>", WAIT);
    assert!(demoted.contains("role='visitor'"), "{demoted}");
    romeo.send(&format!("<message to='{ROOM}' type='groupchat' id='quiet'><body>can I?</body></message>"));
    let silenced = romeo.read_until("</message>", WAIT);
    assert!(silenced.contains("type='error'") && silenced.contains("<forbidden "), "{silenced}");
    // The moderators list (§9.? role list) and a kick (§8.2): 307 to all.
    juliet.send(&format!(
        "<iq type='get' to='{ROOM}' id='mods'><query xmlns='{MUC}#admin'><item role='moderator'/></query></iq>"
    ));
    let mods = juliet.read_until("</iq>", WAIT);
    assert!(mods.contains("nick='Juliet'") && !mods.contains("nick='Romeo'"), "{mods}");
    let kicked = admin(&mut juliet, "k", "<item nick='Romeo' role='none'><reason>out</reason></item>");
    assert!(kicked.contains("type='result'"), "{kicked}");
    let gone = romeo.read_until("</presence>", WAIT);
    assert!(
        gone.contains("type='unavailable'") && gone.contains("<status code='307'/>") && gone.contains("code='110'"),
        "{gone}"
    );
    // A ban (§9.1): 301 if present, forbidden when entering, and on the outcast list.
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    admin(&mut juliet, "b", "<item jid='romeo@localhost' affiliation='outcast'/>");
    let banned = romeo.read_until("</presence>", WAIT);
    assert!(banned.contains("<status code='301'/>"), "{banned}");
    romeo.send(&format!("<presence to='{ROOM}/Romeo'><x xmlns='{MUC}'/></presence>"));
    let refused = romeo.read_until("</presence>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
    juliet.send(&format!(
        "<iq type='get' to='{ROOM}' id='bans'><query xmlns='{MUC}#admin'><item affiliation='outcast'/></query></iq>"
    ));
    let bans = juliet.read_until("</iq>", WAIT);
    assert!(bans.contains("jid='romeo@localhost'"), "{bans}");
    // §10.9: the last owner cannot step down; granting ownership first lets her.
    let alone = admin(&mut juliet, "o", "<item jid='juliet@localhost' affiliation='admin'/>");
    assert!(alone.contains("<conflict "), "{alone}");
    let mut nurse = online(&server, "nurse", "kitchen");
    enter(&mut nurse, ROOM, "Nurse");
    admin(&mut juliet, "g", "<item jid='nurse@localhost' affiliation='owner'/>");
    let promoted = nurse.read_until("affiliation='owner'", WAIT);
    assert!(promoted.contains(&format!("from='{ROOM}/Nurse'")), "{promoted}");
    let step_down = admin(&mut juliet, "o2", "<item jid='juliet@localhost' affiliation='admin'/>");
    assert!(step_down.contains("type='result'"), "{step_down}");
}

#[test]
fn an_occupant_whose_queue_overflows_is_taken_out_with_333_and_the_room_goes_on() {
    // Romeo's phone dropped (stream management keeps his session, and its queue
    // fills): the room removes him alone, and Juliet keeps chatting.
    let server = Server::start_with("c2s_queue_size = 4096\n");
    users(&server);
    let mut juliet = juliet_creates(&server);
    let mut romeo = server.login("romeo", "pw", "phone");
    romeo.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    romeo.read_until("<enabled ", WAIT);
    enter(&mut romeo, ROOM, "Romeo");
    juliet.read_until(&format!("from='{ROOM}/Romeo'"), WAIT);
    juliet.read_until("</presence>", WAIT);
    drop(romeo);
    server.wait_for_log("romeo@localhost/phone hibernates", WAIT);
    let body = "x".repeat(400);
    let mut removed = String::new();
    for n in 0..30 {
        juliet.send(&format!("<message to='{ROOM}' type='groupchat' id='f{n}'><body>{n} {body}</body></message>"));
        let got = juliet.read_until_any(&["</message>", "</presence>"]);
        if got.contains("</presence>") {
            removed = got;
            break;
        }
    }
    assert!(removed.contains(&format!("from='{ROOM}/Romeo'")) && removed.contains("<status code='333'/>"), "{removed}");
    juliet.send(&format!("<message to='{ROOM}' type='groupchat' id='after'><body>still here</body></message>"));
    juliet.read_until("still here", WAIT);
    server.wait_for_log("removed: its queue is full", WAIT);
}

fn configure(c: &mut Client, id: &str, fields: &[(&str, &str)]) -> String {
    let fields: String =
        fields.iter().map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>")).collect();
    c.send(&format!(
        "<iq type='set' to='{ROOM}' id='{id}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    ));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

#[test]
fn password_members_only_and_moderated_rooms_and_a_config_change_is_announced() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    juliet.send(&format!("<iq type='get' to='{ROOM}' id='form'><query xmlns='{MUC}#owner'/></iq>"));
    let form = juliet.read_until("</iq>", WAIT);
    for var in ["muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom", "muc#roomconfig_roomsecret"] {
        assert!(form.contains(&format!("var='{var}'")), "{form}");
    }
    // §10.2.1: a change is announced (104), and whois=anyone too (172).
    let done = configure(&mut juliet, "c1", &[("muc#roomconfig_whois", "anyone")]);
    assert!(done.contains("type='result'"), "{done}");
    let notice = romeo.read_until("</message>", WAIT);
    assert!(notice.contains("<status code='104'/>") && notice.contains("<status code='172'/>"), "{notice}");
    // A password (§7.2.6).
    configure(
        &mut juliet,
        "c2",
        &[("muc#roomconfig_passwordprotectedroom", "1"), ("muc#roomconfig_roomsecret", "rose")],
    );
    let mut nurse = online(&server, "nurse", "kitchen");
    nurse.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'/></presence>"));
    let refused = nurse.read_until("</presence>", WAIT);
    assert!(refused.contains("<not-authorized "), "{refused}");
    enter_with(&mut nurse, "<password>rose</password>");
    nurse.send(&format!("<presence to='{ROOM}/Nurse' type='unavailable'/>"));
    assert!(nurse.read_until("</presence>", WAIT).contains("type='unavailable'"));
    // Members only (§7.2.5): registration-required until she is a member.
    configure(&mut juliet, "c3", &[("muc#roomconfig_passwordprotectedroom", "0"), ("muc#roomconfig_membersonly", "1")]);
    nurse.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'/></presence>"));
    let refused = nurse.read_until("</presence>", WAIT);
    assert!(refused.contains("<registration-required "), "{refused}");
    admin(&mut juliet, "m", "<item jid='nurse@localhost' affiliation='member'/>");
    enter_with(&mut nurse, "");
    // Moderated (§8.4): someone without an affiliation enters as a visitor.
    configure(&mut juliet, "c4", &[("muc#roomconfig_membersonly", "0"), ("muc#roomconfig_moderatedroom", "1")]);
    romeo.send(&format!("<presence to='{ROOM}/Romeo' type='unavailable'/>"));
    romeo.read_until(&format!("from='{ROOM}/Romeo' to='romeo@localhost/garden' type='unavailable'"), WAIT);
    romeo.read_until("</presence>", WAIT);
    let back = enter(&mut romeo, ROOM, "Romeo");
    assert!(back.contains("role='visitor'"), "{back}");
}

/// The nurse enters as Nurse with `extra` in the MUC element; returns it.
fn enter_with(nurse: &mut Client, extra: &str) -> String {
    nurse.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'>{extra}</x></presence>"));
    let mut got = nurse.read_until("<subject", WAIT);
    got.push_str(&nurse.read_until("</message>", WAIT));
    assert!(got.contains("<status code='110'/>"), "{got}");
    got
}

#[test]
fn the_owner_destroys_the_room_with_a_reason_and_an_alternate_venue() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    romeo.send(&format!("<iq type='set' to='{ROOM}' id='d0'><query xmlns='{MUC}#owner'><destroy/></query></iq>"));
    assert!(romeo.read_until("</iq>", WAIT).contains("<forbidden "));
    juliet.send(&format!(
        "<iq type='set' to='{ROOM}' id='d'><query xmlns='{MUC}#owner'><destroy jid='porch@conference.localhost'><reason>Moving</reason></destroy></query></iq>"
    ));
    let gone = romeo.read_until("</presence>", WAIT);
    assert!(
        gone.contains("type='unavailable'") && gone.contains("<destroy jid='porch@conference.localhost'>"),
        "{gone}"
    );
    assert!(gone.contains("<reason>Moving</reason>"), "{gone}");
    juliet.read_until("id='d' type='result'/>", WAIT);
    juliet.send(&format!(
        "<iq type='get' to='{ROOM}' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    assert!(juliet.read_until("</iq>", WAIT).contains("<item-not-found "));
}

#[test]
fn a_persistent_room_keeps_its_configuration_affiliations_and_subject_across_a_restart() {
    let mut server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    configure(
        &mut juliet,
        "p",
        &[
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_roomname", "The Garden"),
            ("muc#roomconfig_allowpm", "moderators"),
            ("muc#roomconfig_historylength", "5"),
            ("muc#roomconfig_allowinvites", "0"),
        ],
    );
    juliet.send(&format!("<message to='{ROOM}' type='groupchat'><subject>Kept</subject></message>"));
    juliet.read_until("Kept", WAIT);
    // A reserved nickname and the room's vCard are kept too.
    romeo.send(&format!(
        "<iq type='set' to='{ROOM}' id='reg'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
         <field var='muc#register_roomnick'><value>Romeo</value></field></x></query></iq>"
    ));
    romeo.read_until("id='reg' type='result'/>", WAIT);
    juliet.send(&format!("<iq type='set' to='{ROOM}' id='vc'><vCard xmlns='vcard-temp'><FN>Garden</FN></vCard></iq>"));
    juliet.read_until("id='vc' type='result'/>", WAIT);
    admin(&mut juliet, "b", "<item jid='nurse@localhost' affiliation='outcast'/>");
    for (c, nick) in [(&mut romeo, "Romeo"), (&mut juliet, "Juliet")] {
        c.send(&format!("<presence to='{ROOM}/{nick}' type='unavailable'/>"));
        c.read_until("<status code='110'/>", WAIT);
    }
    // Empty, it stays: listed with its name.
    juliet.send("<iq type='get' to='conference.localhost' id='rooms'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(juliet.read_until("</iq>", WAIT).contains("name='The Garden'"));
    drop((juliet, romeo));
    server.signal("TERM");
    server.wait_exit(WAIT).expect("exits");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = Server::start_in(dir, "");
    server.wait_for_log("1 persistent group-chat room(s)", WAIT);
    let mut romeo = online(&server, "romeo", "garden");
    let back = enter(&mut romeo, ROOM, "Romeo");
    assert!(back.contains("<subject>Kept</subject>") && !back.contains("code='201'"), "{back}");
    romeo.send(&format!(
        "<iq type='get' to='{ROOM}' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let info = romeo.read_until("</iq>", WAIT);
    assert!(info.contains("name='The Garden'") && info.contains("var='muc_persistent'"), "{info}");
    let mut nurse = online(&server, "nurse", "kitchen");
    nurse.send(&format!("<presence to='{ROOM}/Nurse'><x xmlns='{MUC}'/></presence>"));
    assert!(nurse.read_until("</presence>", WAIT).contains("<forbidden "), "the ban is kept");
    assert!(back.contains("affiliation='member'"), "the registration is kept: {back}");
    romeo.send(&format!("<iq type='get' to='{ROOM}' id='vg'><vCard xmlns='vcard-temp'/></iq>"));
    assert!(romeo.read_until("</iq>", WAIT).contains("<FN>Garden</FN>"), "the vCard is kept");
    // Juliet is still the owner, and the options are as she left them.
    let mut juliet = online(&server, "juliet", "balcony");
    juliet.send(&format!("<iq type='get' to='{ROOM}' id='form'><query xmlns='{MUC}#owner'/></iq>"));
    let form = juliet.read_until("</iq>", WAIT);
    for (var, value) in [
        ("muc#roomconfig_allowpm", "moderators"),
        ("muc#roomconfig_historylength", "5"),
        ("muc#roomconfig_allowinvites", "0"),
    ] {
        let field = between(&form, &format!("var='{var}'"), "</field>");
        assert!(field.contains(&format!("<value>{value}</value>")), "{var}: {form}");
    }
    // She may destroy it, and then it is gone for good.
    juliet.send(&format!("<iq type='set' to='{ROOM}' id='d'><query xmlns='{MUC}#owner'><destroy/></query></iq>"));
    juliet.read_until("id='d' type='result'/>", WAIT);
    juliet.send("<iq type='get' to='conference.localhost' id='rooms2'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(!juliet.read_until("</iq>", WAIT).contains("The Garden"));
}

// --- the second part of issue 15 ---

fn iq(c: &mut Client, id: &str, kind: &str, to: &str, payload: &str) -> String {
    c.send(&format!("<iq type='{kind}' to='{to}' id='{id}'>{payload}</iq>"));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

#[test]
fn a_reserved_nickname_makes_a_member_keeps_others_out_and_is_discoverable() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    // §7.10: the registration form, then a submitted nickname.
    romeo.send(&format!("<iq type='get' to='{ROOM}' id='rf'><query xmlns='jabber:iq:register'/></iq>"));
    let form = romeo.read_until("</iq>", WAIT);
    assert!(form.contains("var='muc#register_roomnick'") && form.contains("<required/>"), "{form}");
    let submit = |nick: &str| {
        format!(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
        )
    };
    romeo.send(&format!("<iq type='set' to='{ROOM}' id='rs'>{}</iq>", submit("Romeo")));
    romeo.read_until("id='rs' type='result'/>", WAIT);
    // He is a member now: everyone sees his new affiliation, and the list has him.
    let seen = juliet.read_until("</presence>", WAIT);
    assert!(seen.contains(&format!("from='{ROOM}/Romeo'")) && seen.contains("affiliation='member'"), "{seen}");
    juliet.send(&format!(
        "<iq type='get' to='{ROOM}' id='ml'><query xmlns='{MUC}#admin'><item affiliation='member'/></query></iq>"
    ));
    let members = juliet.read_until("</iq>", WAIT);
    assert!(members.contains("jid='romeo@localhost'"), "{members}");
    // §7.12: his reserved nickname, asked for.
    romeo.send(&format!(
        "<iq type='get' to='{ROOM}' id='rn'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
    ));
    let reserved = romeo.read_until("</iq>", WAIT);
    assert!(reserved.contains("name='Romeo'"), "{reserved}");
    romeo.send(&format!("<iq type='get' to='{ROOM}' id='rg'><query xmlns='jabber:iq:register'/></iq>"));
    let registered = romeo.read_until("</iq>", WAIT);
    assert!(registered.contains("<registered/><username>Romeo</username>"), "{registered}");
    // Nobody else takes it, to enter or to register; the refusal ends a join (<x/>).
    romeo.send(&format!("<presence to='{ROOM}/Romeo' type='unavailable'/>"));
    romeo.read_until("type='unavailable'", WAIT);
    let mut nurse = online(&server, "nurse", "kitchen");
    nurse.send(&format!("<presence to='{ROOM}/Romeo'><x xmlns='{MUC}'/></presence>"));
    let refused = nurse.read_until("</presence>", WAIT);
    assert!(
        refused.contains("type='error'")
            && refused.contains(&format!("<x xmlns='{MUC}'/>"))
            && refused.contains("<conflict "),
        "{refused}"
    );
    assert!(refused.contains(&format!("by='{ROOM}'")), "{refused}");
    nurse.send(&format!("<iq type='set' to='{ROOM}' id='ns'>{}</iq>", submit("Romeo")));
    let taken = nurse.read_until("</iq>", WAIT);
    assert!(taken.contains("type='error'") && taken.contains("<conflict "), "{taken}");
    // Unregistering frees it and ends the membership.
    romeo.send(&format!("<iq type='set' to='{ROOM}' id='ru'><query xmlns='jabber:iq:register'><remove/></query></iq>"));
    romeo.read_until("id='ru' type='result'/>", WAIT);
    enter_with(&mut nurse, "");
    let _ = nurse.take_received();
    nurse.send(&format!("<presence to='{ROOM}/Romeo'/>"));
    let renamed = nurse.read_until("</presence>", WAIT);
    assert!(renamed.contains("<status code='303'/>") && !renamed.contains("type='error'"), "{renamed}");
}

#[test]
fn a_visitors_voice_request_reaches_the_moderators_once_and_their_approval_gives_voice() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    configure(&mut juliet, "mod", &[("muc#roomconfig_moderatedroom", "1")]);
    romeo.read_until("<status code='104'/>", WAIT);
    romeo.send(&format!("<presence to='{ROOM}/Romeo' type='unavailable'/>"));
    romeo.read_until(&format!("from='{ROOM}/Romeo' to='romeo@localhost/garden' type='unavailable'"), WAIT);
    romeo.read_until("</presence>", WAIT);
    assert!(enter(&mut romeo, ROOM, "Romeo").contains("role='visitor'"));
    let _ = juliet.sync("settled");
    // §7.13: the request, as a muc#request form.
    let request = format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#role'><value>participant</value></field></x></message>"
    );
    romeo.send(&request);
    let form = juliet.read_until("</message>", WAIT);
    assert!(form.contains("<title>Voice request</title>") && form.contains("<value>Romeo</value>"), "{form}");
    assert!(
        form.contains("var='muc#request_allow'") && form.contains("<value>romeo@localhost/garden</value>"),
        "{form}"
    );
    // A second request while the first is open is not passed on.
    romeo.send(&request);
    let _ = romeo.sync("asked-twice");
    let quiet = juliet.sync("nothing-more");
    assert!(!quiet.contains("Voice request"), "{quiet}");
    // §8.6: the moderator approves; everyone sees Romeo a participant.
    juliet.send(&format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#role'><value>participant</value></field>\
         <field var='muc#roomnick'><value>Romeo</value></field>\
         <field var='muc#request_allow'><value>true</value></field></x></message>"
    ));
    let voiced = romeo.read_until("</presence>", WAIT);
    assert!(voiced.contains(&format!("from='{ROOM}/Romeo'")) && voiced.contains("role='participant'"), "{voiced}");
    // Someone with voice asking gets not-acceptable.
    juliet.send(&request);
    let refused = juliet.read_until("</message>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<not-acceptable "), "{refused}");
}

#[test]
fn a_room_vcard_is_the_owners_to_set_anyone_may_fetch_it_and_its_photo_hash_is_in_roominfo() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    // base64("abc"); its SHA-1 is a9993e36...
    let vcard = "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>YWJj</BINVAL></PHOTO></vCard>";
    let refused = iq(&mut romeo, "rv", "set", ROOM, vcard);
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
    juliet.send(&format!("<iq type='set' to='{ROOM}' id='jv'>{vcard}</iq>"));
    juliet.read_until("id='jv' type='result'/>", WAIT);
    let notice = romeo.read_until("</message>", WAIT);
    assert!(notice.contains("<status code='104'/>"), "{notice}");
    romeo.send(&format!("<iq type='get' to='{ROOM}' id='gv'><vCard xmlns='vcard-temp'/></iq>"));
    let got = romeo.read_until("</iq>", WAIT);
    assert!(got.contains("<BINVAL>YWJj</BINVAL>"), "{got}");
    romeo.send(&format!(
        "<iq type='get' to='{ROOM}' id='di'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let info = romeo.read_until("</iq>", WAIT);
    assert!(info.contains("var='vcard-temp'"), "{info}");
    assert!(
        info.contains("<field var='muc#roominfo_avatarhash'><value>a9993e364706816aba3e25717850c26c9cd0d89d</value>"),
        "{info}"
    );
}

#[test]
fn an_iq_to_an_occupant_goes_to_its_real_jid_from_the_askers_occupant_jid_and_the_answer_comes_back() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    romeo.send(&format!("<iq type='get' to='{ROOM}/Juliet' id='v1'><vCard xmlns='vcard-temp'/></iq>"));
    let asked = juliet.read_until("</iq>", WAIT);
    assert!(
        asked.contains(&format!("from='{ROOM}/Romeo'")) && asked.contains("<vCard xmlns='vcard-temp'/>"),
        "{asked}"
    );
    assert!(!asked.contains("romeo@localhost"), "no real JID in a semi-anonymous room: {asked}");
    let id = between(&asked, "id='", "'").to_string();
    juliet.send(&format!(
        "<iq type='result' to='{ROOM}/Romeo' id='{id}'><vCard xmlns='vcard-temp'><NICKNAME>J</NICKNAME></vCard></iq>"
    ));
    let answer = romeo.read_until("</iq>", WAIT);
    assert!(answer.contains(&format!("from='{ROOM}/Juliet'")) && answer.contains("id='v1'"), "{answer}");
    assert!(answer.contains("<NICKNAME>J</NICKNAME>"), "{answer}");
    // A forged id finds nobody; an outsider cannot ask.
    juliet.send(&format!("<iq type='result' to='{ROOM}/Romeo' id='muc-fwd.bm9ib2R5.x'/>"));
    let quiet = romeo.sync("after-forged");
    assert!(!quiet.contains("id='x'"), "{quiet}");
    let mut nurse = online(&server, "nurse", "kitchen");
    let outside = iq(&mut nurse, "o1", "get", &format!("{ROOM}/Juliet"), "<vCard xmlns='vcard-temp'/>");
    assert!(outside.contains("type='error'") && outside.contains("<not-acceptable "), "{outside}");
}

#[test]
fn a_kick_names_its_actor_and_reason_and_a_room_turned_members_only_removes_non_members() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    admin(&mut juliet, "k", "<item nick='Romeo' role='none'><reason>Too loud</reason></item>");
    let gone = romeo.read_until("</presence>", WAIT);
    assert!(gone.contains("<status code='307'/>") && gone.contains("<actor nick='Juliet'/>"), "{gone}");
    assert!(gone.contains("<reason>Too loud</reason>"), "{gone}");
    // §9.4 / §10.2: members-only removes those without membership (322); losing
    // membership in a members-only room removes (321).
    enter(&mut romeo, ROOM, "Romeo");
    let mut nurse = online(&server, "nurse", "kitchen");
    admin(&mut juliet, "m", "<item jid='nurse@localhost' affiliation='member'/>");
    enter_with(&mut nurse, "");
    configure(&mut juliet, "mo", &[("muc#roomconfig_membersonly", "1")]);
    let removed =
        romeo.read_until(&format!("from='{ROOM}/Romeo' to='romeo@localhost/garden' type='unavailable'"), WAIT);
    let removed = removed + &romeo.read_until("</presence>", WAIT);
    assert!(removed.contains("<status code='322'/>"), "{removed}");
    let _ = nurse.take_received();
    admin(&mut juliet, "un", "<item jid='nurse@localhost' affiliation='none'/>");
    let out = nurse.read_until("<status code='321'/>", WAIT);
    assert!(out.contains("type='unavailable'"), "{out}");
}

#[test]
fn history_since_and_maxstanzas_limit_what_a_joiner_gets() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    for n in 1..=3 {
        juliet.send(&format!("<message to='{ROOM}' type='groupchat'><body>m{n}</body></message>"));
        romeo.read_until(&format!("<body>m{n}</body>"), WAIT);
    }
    let mut nurse = online(&server, "nurse", "kitchen");
    let future = enter_with(&mut nurse, "<history since='2999-01-01T00:00:00Z'/>");
    assert!(!future.contains("<body>"), "{future}");
    nurse.send(&format!("<presence to='{ROOM}/Nurse' type='unavailable'/>"));
    nurse.read_until("type='unavailable'", WAIT);
    nurse.read_until("</presence>", WAIT);
    let past = enter_with(&mut nurse, "<history since='2000-01-01T00:00:00Z' maxstanzas='2'/>");
    assert!(
        !past.contains("<body>m1</body>") && past.contains("<body>m2</body>") && past.contains("<body>m3</body>"),
        "{past}"
    );
    assert!(past.contains("<delay xmlns='urn:xmpp:delay'"), "{past}");
}

#[test]
fn under_muc_room_creation_admins_only_admins_create_and_each_account_owns_a_bounded_number() {
    let server = Server::start_with("admins = ['juliet@localhost']\nmuc_room_creation = 'admins'\n");
    users(&server);
    let mut romeo = online(&server, "romeo", "garden");
    romeo.send(&format!("<presence to='new@conference.localhost/Romeo'><x xmlns='{MUC}'/></presence>"));
    let refused = romeo.read_until("</presence>", WAIT);
    assert!(refused.contains("<not-allowed ") && refused.contains(&format!("<x xmlns='{MUC}'/>")), "{refused}");
    let mut juliet = online(&server, "juliet", "balcony");
    let created = enter(&mut juliet, "new@conference.localhost", "Juliet");
    assert!(created.contains("<status code='201'/>"), "{created}");
    drop((juliet, romeo));
    let server = Server::start_with("muc_max_rooms_per_user = 1\n");
    users(&server);
    let mut romeo = online(&server, "romeo", "garden");
    assert!(enter(&mut romeo, "one@conference.localhost", "Romeo").contains("<status code='201'/>"));
    romeo.send("<presence to='two@conference.localhost/Romeo'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let refused = romeo.read_until("</presence>", WAIT);
    assert!(refused.contains("<resource-constraint "), "{refused}");
}

#[test]
fn on_sigterm_every_occupant_hears_it_is_out_of_the_room_with_332() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    let _ = romeo.sync("before");
    server.signal("TERM");
    for (c, nick) in [(&mut juliet, "Juliet"), (&mut romeo, "Romeo")] {
        let out = c.read_until("<status code='332'/>", WAIT);
        assert!(out.contains(&format!("from='{ROOM}/{nick}'")) && out.contains("type='unavailable'"), "{out}");
    }
}

#[test]
fn the_owner_limits_private_messages_invitations_and_the_history_kept() {
    let server = Server::start();
    users(&server);
    let (mut juliet, mut romeo) = juliet_and_romeo_in_the_room(&server);
    configure(
        &mut juliet,
        "o",
        &[
            ("muc#roomconfig_allowpm", "moderators"),
            ("muc#roomconfig_allowinvites", "0"),
            ("muc#roomconfig_historylength", "1"),
        ],
    );
    romeo.read_until("<status code='104'/>", WAIT);
    romeo.read_until("</message>", WAIT);
    // A participant's private message and invitation are refused.
    romeo.send(&format!("<message to='{ROOM}/Juliet' type='chat'><body>psst</body></message>"));
    let refused = romeo.read_until("</message>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<not-acceptable "), "{refused}");
    romeo.send(&format!("<message to='{ROOM}'><x xmlns='{MUC}#user'><invite to='nurse@localhost'/></x></message>"));
    let refused = romeo.read_until("</message>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
    // The moderator's go through.
    juliet.send(&format!("<message to='{ROOM}/Romeo' type='chat'><body>hello</body></message>"));
    assert!(romeo.read_until("</message>", WAIT).contains("<body>hello</body>"));
    // One message kept for a newcomer.
    for n in 1..=3 {
        juliet.send(&format!("<message to='{ROOM}' type='groupchat'><body>h{n}</body></message>"));
        romeo.read_until(&format!("<body>h{n}</body>"), WAIT);
    }
    let mut nurse = online(&server, "nurse", "kitchen");
    let got = enter_with(&mut nurse, "");
    assert!(got.contains("<body>h3</body>") && !got.contains("<body>h2</body>"), "{got}");
}
