//! RFC 6121 §2: roster get, set and remove, with pushes to every interested
//! resource (§2.1.6) and roster versioning (§2.6): a client that sends the version
//! it has gets an empty result and pushes for what changed since.
//! Subscription states are kept on the items; the presence subscription handshake
//! that changes them is the next piece of IM support.

use super::roster_items::{push_bytes, push_to_interested, write_item};
use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::jid::BareJid;
use crate::ns::NS_ROSTER;
use crate::stanza::{Condition, StanzaError};
use crate::store::roster::{RosterItem, RosterRead};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;

/// Names and group names are limited to the size of a JID part.
const MAX_TEXT: usize = 1023;

pub const HANDLER: Handler = Handler {
    namespace: NS_ROSTER,
    element: "query",
    features: &[NS_ROSTER],
    for_server: false,
    advertised_on_server: false,
    for_account: true,
    for_remote: false,
    handle,
};

fn store_error(e: crate::store::StoreError) -> IqReply {
    if matches!(e, crate::store::StoreError::RosterFull) {
        return IqReply::Error(StanzaError::with_text(Condition::NotAllowed, "the roster is full (max_roster_items)"));
    }
    log::error!("roster: {e}");
    IqReply::Error(StanzaError::new(Condition::InternalServerError))
}

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, out: &mut Vec<u8>) -> IqReply {
    let owner = req.sender.jid.to_bare();
    // §2.1.5: only the account itself may read or change its roster.
    if req.on_behalf_of.is_some_and(|b| *b != owner) {
        return IqReply::Error(StanzaError::new(Condition::Forbidden));
    }
    match req.iq_type {
        IqType::Get => get(hub, req, &owner),
        IqType::Set => set(hub, req, &owner, out),
    }
}

/// §2.2 and §2.6.3.
fn get(hub: &Hub<'_>, req: &IqRequest<'_>, owner: &BareJid) -> IqReply {
    req.sender.roster_interested.set(true);
    let client_ver = req.payload.attr("ver").and_then(|v| v.parse::<u64>().ok());
    match hub.store.roster(owner, client_ver) {
        Err(e) => store_error(e),
        Ok(RosterRead::Full { ver, items }) => {
            let mut p = Vec::new();
            let mut w = XmlWriter::new(&mut p);
            w.start("query").attr("xmlns", NS_ROSTER).attr("ver", &ver.to_string());
            if items.is_empty() {
                w.close_empty();
            } else {
                w.open();
                for item in &items {
                    write_item(item, &mut p);
                }
                XmlWriter::new(&mut p).end("query");
            }
            IqReply::Result(Some(p))
        }
        // The empty result goes first, then a push per change (§2.6.3).
        Ok(RosterRead::Changes { items, .. }) => {
            IqReply::ResultThen(items.iter().map(|item| push_bytes(item, req.sender.jid.as_str())).collect())
        }
    }
}

/// §2.3 (add or update) and §2.5 (remove).
fn set(hub: &Hub<'_>, req: &IqRequest<'_>, owner: &BareJid, out: &mut Vec<u8>) -> IqReply {
    let mut items = req.payload.children().filter(|c| c.is("item", NS_ROSTER));
    let (Some(el), None) = (items.next(), items.next()) else {
        return IqReply::Error(StanzaError::with_text(Condition::BadRequest, "a roster set carries exactly one item"));
    };
    let jid = match el.attr("jid").map(|j| j.parse::<BareJid>()) {
        Some(Ok(j)) => j,
        Some(Err(e)) => return IqReply::Error(StanzaError::with_text(Condition::JidMalformed, e.to_string())),
        None => return IqReply::Error(StanzaError::with_text(Condition::BadRequest, "the item has no jid")),
    };
    if jid == *owner {
        return IqReply::Error(StanzaError::with_text(Condition::NotAllowed, "an account is not its own contact"));
    }
    let stored = match el.attr("subscription").as_deref() {
        Some("remove") => match hub.store.roster_item(owner, &jid).and_then(|item| {
            if let Some(item) = item {
                super::presence::cancel_both_ways(hub, req.sender, &item, out);
            }
            hub.store.remove_roster_item(owner, &jid)
        }) {
            Ok(Some(tombstone)) => tombstone,
            Ok(None) => return IqReply::Error(StanzaError::new(Condition::ItemNotFound)),
            Err(e) => return store_error(e),
        },
        None | Some("none") => match update(hub, owner, jid, &el) {
            Ok(item) => item,
            Err(reply) => return reply,
        },
        Some(_) => {
            return IqReply::Error(StanzaError::with_text(
                Condition::BadRequest,
                "a client may set subscription only to 'remove'",
            ))
        }
    };
    push_to_interested(hub, owner, &stored, Some(req.sender), out);
    IqReply::Result(None)
}

/// Creates or updates an item from a roster set (keeping its subscription state).
fn update(hub: &Hub<'_>, owner: &BareJid, jid: BareJid, el: &Element<'_>) -> Result<RosterItem, IqReply> {
    let existing = hub.store.roster_item(owner, &jid).map_err(store_error)?;
    if existing.is_none() {
        let count = hub.store.roster_len(owner).map_err(store_error)?;
        if count >= hub.limits.max_roster_items {
            return Err(IqReply::Error(StanzaError::with_text(
                Condition::NotAllowed,
                "the roster is full (max_roster_items)",
            )));
        }
    }
    let mut groups: Vec<String> = Vec::new();
    for g in el.children().filter(|c| c.is("group", NS_ROSTER)) {
        let name = g.text().into_owned();
        if name.is_empty() || name.len() > MAX_TEXT {
            return Err(IqReply::Error(StanzaError::with_text(
                Condition::NotAcceptable,
                "empty or too long group name",
            )));
        }
        if groups.contains(&name) {
            return Err(IqReply::Error(StanzaError::with_text(Condition::BadRequest, "a group is named twice")));
        }
        groups.push(name);
    }
    let name = el.attr("name").map(|n| n.into_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > MAX_TEXT) {
        return Err(IqReply::Error(StanzaError::with_text(Condition::NotAcceptable, "the name is too long")));
    }
    let mut item = existing.unwrap_or_else(|| RosterItem::new(jid));
    item.name = name;
    item.groups = groups;
    // R4: an item that only held a pending request becomes a contact the owner
    // sees (and gets pushed) once the owner adds it.
    item.hidden = false;
    hub.store.put_roster_item(owner, item).map_err(store_error)
}
