//! XEP-0055 user directory at directory.localhost on the wire: the search form,
//! searches by form and by the legacy fields over the accounts' vCards, who is
//! kept out (CLASS PRIVATE, no vCard), the result bound, and who may search.

mod common;
use common::*;

const DIR: &str = "directory.localhost";
const SEARCH: &str = "jabber:iq:search";

fn set_vcard(server: &Server, user: &str, vcard: &str) {
    let mut c = server.login(user, "pw", "setup");
    c.send(&format!("<iq type='set' id='v'><vCard xmlns='vcard-temp'>{vcard}</vCard></iq>"));
    c.read_until("id='v' type='result'", WAIT);
}

fn search_form(fields: &[(&str, &str)]) -> String {
    let fields: String = fields.iter().map(|(v, x)| format!("<field var='{v}'><value>{x}</value></field>")).collect();
    format!(
        "<query xmlns='{SEARCH}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{SEARCH}</value></field>{fields}</x></query>"
    )
}

fn ask(c: &mut Client, id: &str, kind: &str, payload: &str) -> String {
    c.send(&format!("<iq type='{kind}' to='{DIR}' id='{id}'>{payload}</iq>"));
    c.read_until_any(&[&format!("id='{id}' type='result'/>"), "</iq>"])
}

fn users(server: &Server) {
    for u in ["juliet", "romeo", "nurse", "tybalt"] {
        server.add_user(u, "pw");
    }
    set_vcard(
        server,
        "juliet",
        "<FN>Juliet Capulet</FN><N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N><NICKNAME>jules</NICKNAME>\
         <EMAIL><INTERNET/><USERID>juliet@verona.example</USERID></EMAIL>",
    );
    set_vcard(server, "romeo", "<FN>Romeo Montague</FN><CLASS><PRIVATE/></CLASS>");
    set_vcard(server, "tybalt", "<FN>Tybalt Capulet</FN><NICKNAME>prince of cats</NICKNAME>");
}

#[test]
fn the_directory_is_listed_offers_its_form_and_finds_accounts_by_their_vcards() {
    let server = Server::start();
    users(&server);
    let mut nurse = server.login("nurse", "pw", "kitchen");
    nurse.send("<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    let items = nurse.read_until("</iq>", WAIT);
    assert!(items.contains(&format!("<item jid='{DIR}'/>")), "{items}");
    let info = ask(&mut nurse, "info", "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    assert!(info.contains("category='directory' type='user'") && info.contains(&format!("var='{SEARCH}'")), "{info}");
    let form = ask(&mut nurse, "form", "get", &format!("<query xmlns='{SEARCH}'/>"));
    for var in ["first", "last", "nick", "email", "text"] {
        assert!(form.contains(&format!("var='{var}'")), "{form}");
    }
    assert!(form.contains("<first/>") && form.contains("<nick/>"), "legacy fields: {form}");
    // By nickname, with the form: only Juliet; her name, nickname and email.
    let found = ask(&mut nurse, "s1", "set", &search_form(&[("nick", "JUL")]));
    assert!(
        found.contains("<value>juliet@localhost</value>") && found.contains("<value>Juliet Capulet</value>"),
        "{found}"
    );
    assert!(
        found.contains("<value>jules</value>") && found.contains("<value>juliet@verona.example</value>"),
        "{found}"
    );
    assert!(!found.contains("tybalt@localhost"), "{found}");
    // Free text over every field: both Capulets; Romeo's vCard is PRIVATE.
    let found = ask(&mut nurse, "s2", "set", &search_form(&[("text", "capulet")]));
    assert!(
        found.contains("<value>juliet@localhost</value>") && found.contains("<value>tybalt@localhost</value>"),
        "{found}"
    );
    let hidden = ask(&mut nurse, "s3", "set", &search_form(&[("text", "romeo")]));
    assert!(hidden.contains("<reported>") && !hidden.contains("romeo@localhost"), "{hidden}");
    // The legacy fields (§2): items with first/last/nick/email.
    let legacy = ask(
        &mut nurse,
        "s4",
        "set",
        &format!("<query xmlns='{SEARCH}'><last>capulet</last><first>jul</first></query>"),
    );
    assert!(legacy.contains("<item jid='juliet@localhost'><first>Juliet</first><last>Capulet</last>"), "{legacy}");
    assert!(!legacy.contains("tybalt"), "{legacy}");
    // A search with no term is refused.
    let empty = ask(&mut nurse, "s5", "set", &search_form(&[]));
    assert!(empty.contains("type='error'") && empty.contains("<not-acceptable "), "{empty}");
}

#[test]
fn results_are_bounded_and_remote_users_are_refused_unless_allowed() {
    let server =
        Server::start_with("directory_max_results = 1\n[[component]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n");
    users(&server);
    let mut nurse = server.login("nurse", "pw", "kitchen");
    let found = ask(&mut nurse, "s", "set", &search_form(&[("text", "capulet")]));
    assert_eq!(found.matches("<item>").count(), 1, "{found}");
    assert!(found.contains("<instructions>More users match"), "{found}");
    // Someone from another domain (here a gateway's user) gets forbidden.
    let mut gw = component_client(&server, "gw.localhost", "s3cret");
    gw.send(&format!(
        "<iq type='set' from='someone@gw.localhost' to='{DIR}' id='r'>{}</iq>",
        search_form(&[("text", "capulet")])
    ));
    let refused = gw.read_until("</iq>", WAIT);
    assert!(refused.contains("type='error'") && refused.contains("<forbidden "), "{refused}");
    let server =
        Server::start_with("directory_remote = true\n[[component]]\ndomain = 'gw.localhost'\nsecret = 's3cret'\n");
    users(&server);
    let mut gw = component_client(&server, "gw.localhost", "s3cret");
    gw.send(&format!(
        "<iq type='set' from='someone@gw.localhost' to='{DIR}' id='r'>{}</iq>",
        search_form(&[("nick", "jules")])
    ));
    let allowed = gw.read_until("</iq>", WAIT);
    assert!(allowed.contains("<value>juliet@localhost</value>"), "{allowed}");
}

#[test]
fn directory_domain_empty_turns_it_off() {
    let server = Server::start_with("directory_domain = ''\n");
    server.add_user("nurse", "pw");
    let mut nurse = server.login("nurse", "pw", "kitchen");
    nurse.send("<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    let items = nurse.read_until("</iq>", WAIT);
    assert!(!items.contains(DIR), "{items}");
}
