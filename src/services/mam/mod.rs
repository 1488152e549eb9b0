//! XEP-0313 message archive management for accounts, with XEP-0359 stanza ids.
//!
//! - What is archived (§5.1.1 of XEP-0313, XEP-0334 hints): chat and normal
//!   messages with a body (or `<store/>`), not errors, not `<no-store/>` or
//!   `<no-permanent-store/>`; once for the recipient (as delivered, or stored
//!   offline) and once for a local sender.
//! - XEP-0359 §3: the recipient's copy carries `<stanza-id by='account'/>` with its
//!   archive id; a stanza-id claiming to be by the account that came from outside
//!   is removed first (§7). `<origin-id/>` is kept.
//! - Rows go to the store writer's batch (group commit); a query writes what is
//!   queued first, so it reads everything archived before it.
//! - The query (§4): the `urn:xmpp:mam:2` form (`with`, `start`, `end`, and
//!   `#extended`'s `before-id`, `after-id`, `ids`), XEP-0059 paging (`max` bounded
//!   by `mam_page_max`, `after`, `before`, an empty `<before/>` for the newest
//!   page), results as forwarded messages before the `<fin/>`; the metadata query
//!   (§4.4, the first and last ids).

use crate::handlers::{Handler, IqReply, IqRequest, IqType};
use crate::hub::Hub;
use crate::jid::BareJid;
use crate::ns::{NS_CLIENT, NS_DELAY, NS_FORWARD, NS_HINTS};
use crate::stanza::{Condition, StanzaError};
use crate::store::archive::{ArchiveId, ArchiveIds, Archived, Direction, Filter, Page};
use crate::xml::writer::{write_element, XmlWriter};
use crate::xml::Element;
pub use prefs::AllPrefs;
use prefs::{Decision, Prefs};
use std::sync::Arc;

pub mod prefs;

pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_DATA: &str = "jabber:x:data";

/// The bytes of one page's results, at most (past it the page ends early and is
/// not `complete`; XEP-0059 lets the server return fewer than `max`).
const MAX_PAGE_BYTES: usize = 1 << 20;

/// Paging bounds (config keys `mam_page_default`, `mam_page_max`).
#[derive(Clone, Copy, Debug)]
pub struct MamLimits {
    pub page_default: usize,
    pub page_max: usize,
}

/// The archive service's state: the id source and the accounts' preferences
/// (the rows are in the store).
pub struct Mam {
    pub ids: ArchiveIds,
    pub limits: MamLimits,
    pub prefs: AllPrefs,
}

impl Mam {
    pub fn new(newest: Option<ArchiveId>, limits: MamLimits, prefs: AllPrefs) -> Mam {
        Mam { ids: ArchiveIds::starting_after(newest), limits, prefs }
    }

    /// The next archive id (ids only grow).
    pub fn next_id(&self) -> ArchiveId {
        self.ids.next(now_micros())
    }

    /// Does `owner`'s archive keep a message with `with` (XEP-0441)?
    fn keeps(&self, hub: &Hub<'_>, owner: &BareJid, with: &str) -> bool {
        match self.prefs.decide(owner, with) {
            Decision::Keep => true,
            Decision::Skip => false,
            Decision::IfInRoster => with
                .parse::<crate::jid::Jid>()
                .ok()
                .and_then(|j| hub.store.roster_item(owner, &j.to_bare()).ok().flatten())
                .is_some(),
        }
    }
}

/// The XEP-0359 stanza-id a message got in one archive: a copy of it (a
/// carbon) carries the same.
#[derive(Clone, Debug)]
pub struct Stamp {
    by: BareJid,
    id: ArchiveId,
    /// The message carried a stanza-id claiming to be by `by` (taken out).
    forged: bool,
}

impl Stamp {
    /// `bytes` (one `<message/>` in `jabber:client`) with this stanza-id.
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        with_stanza_id(bytes, &self.by, self.id, self.forged)
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Is this message archived (XEP-0313 §5.1.1 with XEP-0334's hints)?
pub fn archivable(message: &Element<'_>) -> bool {
    let kind = message.attr("type");
    if !matches!(kind.as_deref(), None | Some("chat") | Some("normal")) {
        return false;
    }
    let hint = |name: &str| message.child(name, NS_HINTS).is_some();
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    message.child("body", message.ns()).is_some() || message.child("body", NS_CLIENT).is_some() || hint("store")
}

/// The message as written for a client (`bytes`, one `<message/>`), with every
/// `<stanza-id/>` by `owner` taken out (only this server may say what its
/// archive's ids are) and its own added.
fn with_stanza_id(bytes: &[u8], owner: &BareJid, id: ArchiveId, forged: bool) -> Vec<u8> {
    // Nothing to take out (nearly always): the id goes before the end tag.
    if !forged {
        if let Some(out) = insert_stanza_id(bytes, owner, id) {
            return out;
        }
    }
    match without_stanza_ids_by(bytes, owner) {
        Some(clean) => insert_stanza_id(&clean, owner, id).unwrap_or(clean),
        None => bytes.to_vec(),
    }
}

/// `bytes` with `owner`'s stanza-id before the end tag (None: the message does
/// not end with one).
fn insert_stanza_id(bytes: &[u8], owner: &BareJid, id: ArchiveId) -> Option<Vec<u8>> {
    let at = bytes.len().checked_sub(b"</message>".len()).filter(|_| bytes.ends_with(b"</message>"))?;
    let mut out = Vec::with_capacity(bytes.len() + 96);
    out.extend_from_slice(&bytes[..at]);
    XmlWriter::new(&mut out)
        .start("stanza-id")
        .attr("xmlns", NS_SID)
        .attr("by", owner.as_str())
        .attr("id", &id.text())
        .close_empty();
    out.extend_from_slice(b"</message>");
    Some(out)
}

/// The message written again without the stanza-ids claiming to be by `owner`
/// (None: it does not parse).
fn without_stanza_ids_by(bytes: &[u8], owner: &BareJid) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    crate::xml::for_each_stanza(bytes, |m| {
        let mut w = XmlWriter::new(&mut out);
        w.start(m.name());
        for a in m.attrs().filter(|a| a.ns.is_empty()) {
            w.attr(a.name, &a.value());
        }
        if let Some(lang) = m.attr_ns(crate::xml::NS_XML, "lang") {
            w.attr("xml:lang", &lang);
        }
        w.open();
        for child in m.children() {
            let forged = child.is("stanza-id", NS_SID) && child.attr("by").as_deref() == Some(owner.as_str());
            if !forged {
                write_element(&mut out, &child, NS_CLIENT, None, &[]);
            }
        }
        XmlWriter::new(&mut out).end(m.name());
    });
    (!out.is_empty()).then_some(out)
}

/// An archived message as its owner reads it: with the owner's stanza-id when
/// the archive keeps it without (the bytes shared with the sender's copy).
pub fn as_read<'m>(owner: &BareJid, m: &'m Archived) -> std::borrow::Cow<'m, [u8]> {
    match m.stamped.then(|| insert_stanza_id(&m.stanza, owner, m.id)).flatten() {
        Some(stamped) => std::borrow::Cow::Owned(stamped),
        None => std::borrow::Cow::Borrowed(&m.stanza),
    }
}

/// Does the message carry a stanza-id claiming to be by `owner` (XEP-0359 §7)?
pub fn claims_stanza_id_of(message: &Element<'_>, owner: &BareJid) -> bool {
    message.children().any(|c| c.is("stanza-id", NS_SID) && c.attr("by").as_deref() == Some(owner.as_str()))
}

/// Archives a message for its local recipient `owner` (from `from`) unless its
/// preferences say not to; returns the bytes to deliver (with the stanza-id) in
/// place of `bytes`, and the stamp for its carbons. The stream that brought it
/// waits for it (a kill after the sender's next answer loses nothing).
pub fn received(
    hub: &Hub<'_>,
    owner: &BareJid,
    from: &str,
    message: &Element<'_>,
    bytes: Arc<[u8]>,
) -> (Vec<u8>, Option<Stamp>) {
    let Some(mam) = hub.mam.filter(|m| m.keeps(hub, owner, from)) else { return (bytes.to_vec(), None) };
    let stamp =
        Stamp { by: owner.clone(), id: mam.ids.next(now_micros()), forged: claims_stanza_id_of(message, owner) };
    // The archive keeps the message without the stanza-id (the sender's copy
    // shares the bytes); one that came with a forged stanza-id, without it.
    let body = match stamp.forged {
        true => without_stanza_ids_by(&bytes, owner).map(Arc::from).unwrap_or(bytes),
        false => bytes,
    };
    let stamped = insert_stanza_id(&body, owner, stamp.id);
    let archived = Archived {
        id: stamp.id,
        direction: Direction::Received,
        with: from.to_string(),
        stamped: stamped.is_some(),
        stanza: Arc::clone(&body),
    };
    let delivered = stamped.unwrap_or_else(|| body.to_vec());
    hub.store.queue_archive(owner, archived, true);
    (delivered, Some(stamp))
}

/// Archives a message a local account sent to `to` unless its preferences say
/// not to (the sender's stream waits for it, as for every effect of its
/// stanzas); returns the stamp for its sent carbons. `bytes` are shared with
/// the recipient's copy.
pub fn sent(hub: &Hub<'_>, owner: &BareJid, to: &str, message: &Element<'_>, bytes: Arc<[u8]>) -> Option<Stamp> {
    let mam = hub.mam.filter(|m| m.keeps(hub, owner, to))?;
    let id = mam.ids.next(now_micros());
    let archived = Archived { id, direction: Direction::Sent, with: to.to_string(), stanza: bytes, stamped: false };
    hub.store.queue_archive(owner, archived, true);
    Some(Stamp { by: owner.clone(), id, forged: claims_stanza_id_of(message, owner) })
}

/// The message as it goes inside `<forwarded/>`: its namespace declared (the
/// archive keeps it as a client receives it; a query re-frames it).
pub(crate) fn as_forwarded(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 24);
    crate::xml::for_each_stanza(bytes, |m| write_element(&mut out, m, "", None, &[]));
    out
}

pub const QUERY: Handler = Handler {
    namespace: NS_MAM,
    element: "query",
    features: &[NS_MAM, NS_MAM_EXTENDED],
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    for_remote: false,
    handle: query,
};

pub const METADATA: Handler = Handler {
    namespace: NS_MAM,
    element: "metadata",
    features: &[],
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    for_remote: false,
    handle: metadata,
};

pub const PREFS: Handler = Handler {
    namespace: NS_MAM,
    element: "prefs",
    features: &[],
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    for_remote: false,
    handle: preferences,
};

/// XEP-0441 §2: the account's preferences, read or replaced (the answer holds
/// them as they now are).
fn preferences(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    let result = (|| {
        let owner = owner_of(req)?;
        let Some(mam) = hub.mam else { return Err(StanzaError::new(Condition::ServiceUnavailable)) };
        let prefs = match req.iq_type {
            IqType::Get => mam.prefs.get(&owner),
            _ => {
                let prefs = Prefs::parse(&req.payload)?;
                let mut xml = Vec::with_capacity(200);
                prefs.write(&mut xml);
                hub.store.put_account_xml(&owner, prefs::KEY, &xml, usize::MAX).map_err(internal)?;
                mam.prefs.set(&owner, prefs.clone());
                prefs
            }
        };
        let mut p = Vec::with_capacity(200);
        prefs.write(&mut p);
        Ok(IqReply::Result(Some(p)))
    })();
    result.unwrap_or_else(IqReply::Error)
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    log::error!("mam: {e}");
    StanzaError::new(Condition::InternalServerError)
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(Condition::BadRequest, text)
}

/// Only the account itself reads its archive.
fn owner_of(req: &IqRequest<'_>) -> Result<BareJid, StanzaError> {
    let me = req.sender.jid.to_bare();
    match req.on_behalf_of {
        Some(o) if *o != me => Err(StanzaError::new(Condition::Forbidden)),
        _ => Ok(me),
    }
}

/// The form's fields as a filter (§4.1, §4.1.1 and `#extended`).
fn filter_of(query: &Element<'_>) -> Result<Filter, StanzaError> {
    let mut filter = Filter::default();
    let Some(form) = query.child("x", NS_DATA) else { return Ok(filter) };
    let id = |v: &str| ArchiveId::parse(v).ok_or_else(|| StanzaError::new(Condition::ItemNotFound));
    let time = |v: &str| crate::clock::parse_utc_timestamp(v).ok_or_else(|| bad("a date-time as XEP-0082 says"));
    for (var, values) in crate::services::pep::node::form_fields(&form) {
        let first = values.first().map(String::as_str).unwrap_or("");
        match var.as_str() {
            "with" => {
                let jid = first.parse::<crate::jid::Jid>().map_err(|_| StanzaError::new(Condition::JidMalformed))?;
                filter.with = Some(jid.as_str().to_string());
            }
            "start" => filter.start = Some(time(first)?.saturating_mul(1_000_000)),
            "end" => filter.end = Some(time(first)?.saturating_mul(1_000_000).saturating_add(999_999)),
            "after-id" => filter.after_id = Some(id(first)?),
            "before-id" => filter.before_id = Some(id(first)?),
            "ids" => {
                if values.len() > 1000 {
                    return Err(StanzaError::with_text(Condition::PolicyViolation, "at most 1000 ids"));
                }
                filter.ids = values.iter().map(|v| id(v)).collect::<Result<_, _>>()?;
            }
            _ => return Err(bad(&format!("the archive has no field {var}"))),
        }
    }
    Ok(filter)
}

/// XEP-0059: the page asked for, and its size within the bounds.
fn page_of(query: &Element<'_>, limits: MamLimits) -> Result<(Page, usize), StanzaError> {
    let Some(set) = query.child("set", NS_RSM) else { return Ok((Page::Forward { after: None }, limits.page_default)) };
    let max = match set.child("max", NS_RSM) {
        None => limits.page_default,
        Some(m) => m.text().trim().parse::<usize>().map_err(|_| bad("max is a number"))?.min(limits.page_max),
    };
    let id = |s: &str| ArchiveId::parse(s).ok_or_else(|| StanzaError::new(Condition::ItemNotFound));
    let page = match (set.child("after", NS_RSM), set.child("before", NS_RSM)) {
        (Some(a), _) => Page::Forward { after: Some(id(a.text().trim())?) },
        (None, Some(b)) if b.text().trim().is_empty() => Page::Backward { before: None },
        (None, Some(b)) => Page::Backward { before: Some(id(b.text().trim())?) },
        (None, None) => Page::Forward { after: None },
    };
    Ok((page, max))
}

fn query(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    let result = (|| {
        let owner = owner_of(req)?;
        match answer(hub, &owner, req.sender.jid.as_str(), &req.payload, req.iq_type == IqType::Get)? {
            Answer::Form(form) => Ok(IqReply::Result(Some(form))),
            Answer::Page { results, fin } => Ok(IqReply::ResultAfter(results, Some(fin))),
        }
    })();
    result.unwrap_or_else(IqReply::Error)
}

/// What a query on an archive is answered with.
pub enum Answer {
    /// §5.1.1: the form's fields (a `get`).
    Form(Vec<u8>),
    /// The result messages (written one after another, before the iq's answer),
    /// and the `<fin/>` the answer carries.
    Page { results: Vec<u8>, fin: Vec<u8> },
}

/// Answers `query` (a `<query xmlns=urn:xmpp:mam:2/>`) on `owner`'s archive (an
/// account's or a room's) for `requester` (a full JID; who may ask was checked).
pub fn answer(
    hub: &Hub<'_>,
    owner: &BareJid,
    requester: &str,
    query: &Element<'_>,
    get: bool,
) -> Result<Answer, StanzaError> {
    let Some(mam) = hub.mam else { return Err(StanzaError::new(Condition::ServiceUnavailable)) };
    if get {
        let mut p = Vec::new();
        write_fields_form(&mut p);
        return Ok(Answer::Form(p));
    }
    let filter = filter_of(query)?;
    let (page, max) = page_of(query, mam.limits)?;
    hub.store.flush_archive().map_err(internal)?;
    let mut read = hub.store.archive_page(owner, &filter, page, max).map_err(internal)?;
    // A page is bounded in bytes too: it is written to the requester at once.
    let backward = matches!(page, Page::Backward { .. });
    let mut total = 0;
    let fits = |m: &Archived, total: &mut usize| {
        *total += m.stanza.len() + 300;
        *total <= MAX_PAGE_BYTES
    };
    let keep = if backward {
        read.messages.iter().rev().take_while(|m| fits(m, &mut total)).count()
    } else {
        read.messages.iter().take_while(|m| fits(m, &mut total)).count()
    };
    // At least one message, whatever its size, so that paging moves on.
    let keep = keep.max(1).min(read.messages.len());
    if keep < read.messages.len() {
        read.complete = false;
        if backward {
            read.messages.drain(..read.messages.len() - keep);
        } else {
            read.messages.truncate(keep);
        }
    }
    let query_id = query.attr("queryid");
    let mut results = Vec::new();
    for m in &read.messages {
        write_result(&mut results, owner, requester, query_id.as_deref(), m);
    }
    let mut fin = Vec::with_capacity(200);
    let mut w = XmlWriter::new(&mut fin);
    w.start("fin").attr("xmlns", NS_MAM);
    if read.complete {
        w.attr("complete", "true");
    }
    w.open().start("set").attr("xmlns", NS_RSM);
    match (read.messages.first(), read.messages.last()) {
        (Some(first), Some(last)) => {
            w.open().start("first").open().text(&first.id.text()).end("first");
            w.start("last").open().text(&last.id.text()).end("last").end("set");
        }
        _ => {
            w.close_empty();
        }
    }
    XmlWriter::new(&mut fin).end("fin");
    Ok(Answer::Page { results, fin })
}

/// `<message><result queryid id><forwarded><delay stamp/>…</forwarded></result></message>`
/// (§4.2).
fn write_result(out: &mut Vec<u8>, owner: &BareJid, to: &str, query_id: Option<&str>, m: &Archived) {
    let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_micros(m.id.micros());
    let mut w = XmlWriter::new(out);
    w.start("message").attr("from", owner.as_str()).attr("to", to).open();
    w.start("result").attr("xmlns", NS_MAM).attr_opt("queryid", query_id).attr("id", &m.id.text()).open();
    w.start("forwarded").attr("xmlns", NS_FORWARD).open();
    w.start("delay").attr("xmlns", NS_DELAY).attr("stamp", &crate::clock::utc_timestamp(stamp)).close_empty();
    out.extend_from_slice(&as_forwarded(&as_read(owner, m)));
    XmlWriter::new(out).end("forwarded").end("result").end("message");
}

fn write_fields_form(out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start("query").attr("xmlns", NS_MAM).open();
    w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
    w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
    w.start("value").open().text(NS_MAM).end("value").end("field");
    for (var, kind) in [
        ("with", "jid-single"),
        ("start", "text-single"),
        ("end", "text-single"),
        ("after-id", "text-single"),
        ("before-id", "text-single"),
        ("ids", "text-multi"),
    ] {
        w.start("field").attr("var", var).attr("type", kind).close_empty();
    }
    w.end("x").end("query");
}

/// §4.4: the archive's first and last message.
fn metadata(hub: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    let result = (|| {
        let owner = owner_of(req)?;
        if req.iq_type != IqType::Get {
            return Err(StanzaError::new(Condition::BadRequest));
        }
        Ok(IqReply::Result(Some(metadata_of(hub, &owner)?)))
    })();
    result.unwrap_or_else(IqReply::Error)
}

/// `<metadata><start id timestamp/><end id timestamp/></metadata>` of `owner`'s
/// archive (§4.4).
pub fn metadata_of(hub: &Hub<'_>, owner: &BareJid) -> Result<Vec<u8>, StanzaError> {
    hub.store.flush_archive().map_err(internal)?;
    let all = Filter::default();
    let first = hub.store.archive_page(owner, &all, Page::Forward { after: None }, 1).map_err(internal)?;
    let last = hub.store.archive_page(owner, &all, Page::Backward { before: None }, 1).map_err(internal)?;
    let mut p = Vec::with_capacity(200);
    let mut w = XmlWriter::new(&mut p);
    w.start("metadata").attr("xmlns", NS_MAM);
    match (first.messages.first(), last.messages.first()) {
        (Some(a), Some(b)) => {
            w.open();
            for (name, m) in [("start", a), ("end", b)] {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(m.id.micros());
                XmlWriter::new(&mut p)
                    .start(name)
                    .attr("id", &m.id.text())
                    .attr("timestamp", &crate::clock::utc_timestamp(at))
                    .close_empty();
            }
            XmlWriter::new(&mut p).end("metadata");
        }
        _ => {
            w.close_empty();
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_then<R>(xml: &str, f: impl FnOnce(&Element<'_>) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        crate::xml::for_each_stanza(xml.as_bytes(), |el| {
            if let Some(f) = f.take() {
                out = Some(f(el));
            }
        });
        out.expect("one element")
    }

    #[test]
    fn chat_and_normal_messages_with_a_body_are_archived_unless_hinted_not_to_be() {
        let cases = [
            ("<message type='chat'><body>hi</body></message>", true),
            ("<message><body>hi</body></message>", true),
            ("<message type='headline'><body>news</body></message>", false),
            ("<message type='error'><body>x</body></message>", false),
            ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>", false),
            ("<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", false),
            (
                "<message type='chat'><received xmlns='urn:xmpp:receipts'/><store xmlns='urn:xmpp:hints'/></message>",
                true,
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(parse_then(xml, archivable), want, "{xml}");
        }
    }

    #[test]
    fn a_stanza_id_by_the_account_from_outside_is_replaced_and_others_kept() {
        let owner: BareJid = "juliet@localhost".parse().unwrap();
        let forged = b"<message from='romeo@remote.example/a' type='chat'><body>hi</body>\
                       <stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='forged'/>\
                       <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@remote.example' id='theirs'/>\
                       <origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>";
        let plain = b"<message from='romeo@remote.example/a' type='chat'><body>hi</body></message>";
        let out = String::from_utf8(with_stanza_id(plain, &owner, ArchiveId(0x10), false)).unwrap();
        assert_eq!(
            out,
            "<message from='romeo@remote.example/a' type='chat'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='0000000000000010'/></message>"
        );
        let out = String::from_utf8(with_stanza_id(forged, &owner, ArchiveId(0x10), true)).unwrap();
        assert!(!out.contains("forged"), "{out}");
        assert!(out.contains("by='romeo@remote.example' id='theirs'") && out.contains("<origin-id"), "{out}");
        assert!(
            out.ends_with("<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='0000000000000010'/></message>"),
            "{out}"
        );
        let inner = String::from_utf8(as_forwarded(out.as_bytes())).unwrap();
        assert!(inner.starts_with("<message xmlns='jabber:client' from="), "{inner}");
    }
}
