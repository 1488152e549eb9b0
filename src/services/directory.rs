//! XEP-0055 user directory at `directory_domain`: `jabber:iq:search` with a data
//! form (and the legacy fields), answered from the accounts' vCards (XEP-0054).
//! Who is listed: accounts whose vCard has something to match, unless its
//! `<CLASS><PRIVATE/></CLASS>` (or CONFIDENTIAL, RFC 2426 §3.7.1) keeps them out.
//! Who may search: the hub's accounts; remote users get `forbidden` unless
//! `directory_remote`. Results are bounded by `directory_max_results`.

use crate::config::DirectoryConfig;
use crate::hub::Hub;
use crate::jid::{Domain, Jid};
use crate::ns::{NS_INFO, NS_ITEMS};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;

const NS_SEARCH: &str = "jabber:iq:search";
const NS_DATA: &str = "jabber:x:data";
const NS_VCARD: &str = "vcard-temp";
/// Longest search term kept.
const MAX_TERM: usize = 100;

/// The search fields: (form var and legacy element, label).
const FIELDS: [(&str, &str); 5] = [
    ("first", "Given name"),
    ("last", "Family name"),
    ("nick", "Nickname"),
    ("email", "Email"),
    ("text", "Any of these"),
];

/// The user directory service.
pub struct Directory {
    pub config: DirectoryConfig,
}

/// What a search asks for: lower-case terms by field (empty: not asked).
#[derive(Default)]
struct Query {
    terms: [String; 5],
    /// Asked with a data form (answered with one), or with the legacy fields.
    form: bool,
}

/// One account's listing.
#[derive(Default)]
struct Entry {
    jid: String,
    first: String,
    last: String,
    nick: String,
    email: String,
    full_name: String,
}

impl Entry {
    /// From a stored vCard; `None` when it keeps the account out of the directory.
    fn from_vcard(jid: &str, vcard: &Element<'_>) -> Option<Entry> {
        if let Some(class) = vcard.child("CLASS", NS_VCARD) {
            if class.child("PRIVATE", NS_VCARD).is_some() || class.child("CONFIDENTIAL", NS_VCARD).is_some() {
                return None;
            }
        }
        let text = |el: Option<Element<'_>>| el.map(|e| e.text().trim().to_string()).unwrap_or_default();
        let n = vcard.child("N", NS_VCARD);
        let email = vcard.child("EMAIL", NS_VCARD);
        let entry = Entry {
            jid: jid.to_string(),
            first: text(n.as_ref().and_then(|n| n.child("GIVEN", NS_VCARD))),
            last: text(n.as_ref().and_then(|n| n.child("FAMILY", NS_VCARD))),
            nick: text(vcard.child("NICKNAME", NS_VCARD)),
            email: text(email.as_ref().and_then(|e| e.child("USERID", NS_VCARD))),
            full_name: text(vcard.child("FN", NS_VCARD)),
        };
        let listed = [&entry.first, &entry.last, &entry.nick, &entry.email, &entry.full_name];
        listed.iter().any(|f| !f.is_empty()).then_some(entry)
    }

    /// Does every asked term occur (case-insensitively) in its field?
    fn matches(&self, q: &Query) -> bool {
        let has = |field: &str, term: &str| field.to_lowercase().contains(term);
        let [first, last, nick, email, text] = &q.terms;
        let any = [&self.first, &self.last, &self.nick, &self.email, &self.full_name, &self.jid];
        (first.is_empty() || has(&self.first, first) || has(&self.full_name, first))
            && (last.is_empty() || has(&self.last, last) || has(&self.full_name, last))
            && (nick.is_empty() || has(&self.nick, nick))
            && (email.is_empty() || has(&self.email, email))
            && (text.is_empty() || any.iter().any(|f| has(f, text)))
    }
}

impl Directory {
    pub fn new(config: DirectoryConfig) -> Directory {
        Directory { config }
    }

    pub fn domain(&self) -> &Domain {
        &self.config.domain
    }

    /// A stanza for the directory from `from` (as its stream checked it); the
    /// answer goes back through `hub`.
    pub fn handle(&self, hub: &Hub<'_>, from: &str, stanza: &Element<'_>) {
        let Ok(sender) = from.parse::<Jid>() else { return };
        let to = self.domain().as_str();
        let answer = |bytes: Vec<u8>| {
            hub.push_from_service(self.domain(), from, bytes);
        };
        let kind = stanza.attr("type");
        if stanza.name() != "iq" {
            if stanza.name() == "message" && kind.as_deref() != Some("error") {
                let mut bytes = Vec::new();
                let e = StanzaError::with_text(Condition::ServiceUnavailable, "the directory answers jabber:iq:search");
                if e.write_reply(stanza, from, Some(to), &mut bytes) {
                    answer(bytes);
                }
            }
            return;
        }
        if !matches!(kind.as_deref(), Some("get") | Some("set")) {
            return;
        }
        let Some(payload) = stanza.children().next() else { return };
        let local = sender.domain() == hub.domain.as_str();
        let mut body = Vec::new();
        let result = match (kind.as_deref(), payload.ns(), payload.name()) {
            (Some("get"), NS_INFO, "query") if payload.attr("node").is_none() => {
                super::write_info(&mut body, ("directory", "user", "Users"), &[NS_SEARCH], &[]);
                Ok(())
            }
            (Some("get"), NS_ITEMS, "query") => {
                XmlWriter::new(&mut body).empty_ns("query", NS_ITEMS);
                Ok(())
            }
            (_, NS_SEARCH, "query") if !local && !self.config.remote => {
                Err(StanzaError::with_text(Condition::Forbidden, "the directory is for the hub's own users"))
            }
            (Some("get"), NS_SEARCH, "query") => {
                write_search_form(&mut body);
                Ok(())
            }
            (Some("set"), NS_SEARCH, "query") => self.search(hub, &payload, &mut body),
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        answer(super::muc::iq_reply(stanza, to, from, result, &body));
    }

    /// §2: the matching accounts, at most `max_results`.
    fn search(&self, hub: &Hub<'_>, query: &Element<'_>, body: &mut Vec<u8>) -> Result<(), StanzaError> {
        let q = parse_query(query);
        if q.terms.iter().all(String::is_empty) {
            return Err(StanzaError::with_text(Condition::NotAcceptable, "give at least one search term"));
        }
        let mut found: Vec<Entry> = Vec::new();
        let mut truncated = false;
        let scan = hub.store.vcards(|jid, bytes| {
            crate::xml::for_each_stanza(bytes, |vcard| {
                if let Some(entry) = Entry::from_vcard(jid, vcard).filter(|e| e.matches(&q)) {
                    if found.len() < self.config.max_results {
                        found.push(entry);
                    } else {
                        truncated = true;
                    }
                }
            });
            !truncated
        });
        if let Err(e) = scan {
            log::error!("directory search: {e}");
            return Err(StanzaError::new(Condition::InternalServerError));
        }
        write_results(body, &q, &found, truncated);
        Ok(())
    }
}

/// The search form (§3), with the legacy fields for old clients (§2).
fn write_search_form(body: &mut Vec<u8>) {
    let mut w = XmlWriter::new(body);
    w.start("query").attr("xmlns", NS_SEARCH).open();
    w.start("instructions").open().text("Find the hub's users by name, nickname or email.").end("instructions");
    for name in ["first", "last", "nick", "email"] {
        w.start(name).close_empty();
    }
    w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
    w.start("title").open().text("User directory").end("title");
    w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
    w.start("value").open().text(NS_SEARCH).end("value").end("field");
    for (var, label) in FIELDS {
        w.start("field").attr("var", var).attr("type", "text-single").attr("label", label).close_empty();
    }
    w.end("x").end("query");
}

fn parse_query(query: &Element<'_>) -> Query {
    let mut q = Query::default();
    let clean = |s: &str| s.trim().chars().take(MAX_TERM).collect::<String>().to_lowercase();
    if let Some(form) = query.child("x", NS_DATA) {
        q.form = true;
        for f in form.children().filter(|c| c.name() == "field") {
            let var = f.attr("var").unwrap_or_default();
            if let Some(i) = FIELDS.iter().position(|(v, _)| *v == var) {
                let value = f.children().find(|c| c.name() == "value").map(|v| v.text().into_owned());
                q.terms[i] = clean(&value.unwrap_or_default());
            }
        }
    } else {
        for (i, (name, _)) in FIELDS.iter().enumerate().take(4) {
            if let Some(el) = query.child(name, NS_SEARCH) {
                q.terms[i] = clean(&el.text());
            }
        }
    }
    q
}

/// The results: a reported form (§3) or legacy items (§2).
fn write_results(body: &mut Vec<u8>, q: &Query, found: &[Entry], truncated: bool) {
    let mut w = XmlWriter::new(body);
    w.start("query").attr("xmlns", NS_SEARCH).open();
    if !q.form {
        for e in found {
            w.start("item").attr("jid", &e.jid).open();
            for (name, value) in [("first", &e.first), ("last", &e.last), ("nick", &e.nick), ("email", &e.email)] {
                w.start(name).open().text(value).end(name);
            }
            w.end("item");
        }
        w.end("query");
        return;
    }
    w.start("x").attr("xmlns", NS_DATA).attr("type", "result").open();
    if truncated {
        w.start("instructions").open().text("More users match: narrow the search.").end("instructions");
    }
    w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
    w.start("value").open().text(NS_SEARCH).end("value").end("field");
    w.start("reported").open();
    let columns = [("jid", "JID", "jid-single"), ("fn", "Name", "text-single"), ("nick", "Nickname", "text-single")];
    for (var, label, kind) in columns.into_iter().chain([("email", "Email", "text-single")]) {
        w.start("field").attr("var", var).attr("label", label).attr("type", kind).close_empty();
    }
    w.end("reported");
    for e in found {
        let name = if e.full_name.is_empty() {
            format!("{} {}", e.first, e.last).trim().to_string()
        } else {
            e.full_name.clone()
        };
        w.start("item").open();
        for (var, value) in [("jid", e.jid.as_str()), ("fn", &name), ("nick", &e.nick), ("email", &e.email)] {
            w.start("field").attr("var", var).open().start("value").open().text(value).end("value").end("field");
        }
        w.end("item");
    }
    w.end("x").end("query");
}
