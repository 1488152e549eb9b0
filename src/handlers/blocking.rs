//! XEP-0191: Blocking Command. An account keeps a list of JIDs (full, bare or a
//! domain) whose stanzas it does not receive and to which it sends none; changes
//! are pushed to every resource that asked for the list (§3.3), and a newly
//! blocked contact gets unavailable presence from the account's resources.

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::jid::{BareJid, Jid};
use crate::ns::{NS_BLOCKING, NS_BLOCKING_ERRORS};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use std::rc::Rc;

pub const BLOCKLIST: Handler = Handler {
    namespace: NS_BLOCKING,
    element: "blocklist",
    features: &[NS_BLOCKING],
    for_server: false,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle,
};
pub const BLOCK: Handler = Handler {
    namespace: NS_BLOCKING,
    element: "block",
    features: &[],
    for_server: false,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle,
};
pub const UNBLOCK: Handler = Handler {
    namespace: NS_BLOCKING,
    element: "unblock",
    features: &[],
    for_server: false,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle,
};

/// Does an entry of `list` match `jid` (§3.2: full, bare or domain match)?
pub fn matches(list: &[String], jid: &Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    let bare = jid.to_bare();
    list.iter().any(|b| b == jid.as_str() || b == bare.as_str() || b == jid.domain())
}

/// Is `peer` blocked by the account `owner`?
pub fn blocked(hub: &Hub<'_>, owner: &BareJid, peer: &Jid) -> bool {
    hub.store.blocklist(owner).map(|l| matches(&l, peer)).unwrap_or(false)
}

fn items_of(req: &IqRequest<'_>) -> Result<Vec<String>, IqReply> {
    let mut items = Vec::new();
    for item in req.payload.children().filter(|c| c.is("item", NS_BLOCKING)) {
        match item.attr("jid").map(|j| j.parse::<Jid>()) {
            Some(Ok(j)) => items.push(j.as_str().to_string()),
            _ => return Err(IqReply::Error(StanzaError::new(Condition::JidMalformed))),
        }
    }
    Ok(items)
}

fn handle(hub: &Hub<'_>, req: &IqRequest<'_>, out: &mut Vec<u8>) -> IqReply {
    let owner = req.sender.jid.to_bare();
    if req.on_behalf_of.is_some_and(|b| *b != owner) {
        return IqReply::Error(StanzaError::new(Condition::Forbidden));
    }
    let items = match items_of(req) {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let store_error = |e: crate::store::StoreError| {
        log::error!("blocklist: {e}");
        IqReply::Error(StanzaError::new(Condition::InternalServerError))
    };
    match (req.iq_type, req.payload.name()) {
        (IqType::Get, "blocklist") => {
            req.sender.blocklist_interested.set(true);
            let list = match hub.store.blocklist(&owner) {
                Ok(l) => l,
                Err(e) => return store_error(e),
            };
            IqReply::Result(Some(list_element("blocklist", &list)))
        }
        (IqType::Set, "block") if items.is_empty() => IqReply::Error(StanzaError::new(Condition::BadRequest)),
        (IqType::Set, name @ ("block" | "unblock")) => {
            let (add, remove, all): (&[String], &[String], bool) = match name {
                "block" => (&items, &[], false),
                _ => (&[], &items, items.is_empty()),
            };
            // Unblocking everything unblocks what the list held.
            let unblocked = match (name, all) {
                ("unblock", true) => hub.store.blocklist(&owner).unwrap_or_default(),
                ("unblock", false) => items.clone(),
                _ => Vec::new(),
            };
            match hub.store.update_blocklist(&owner, add, remove, all, hub.limits.max_roster_items) {
                Ok(true) => {}
                Ok(false) => {
                    return IqReply::Error(StanzaError::with_text(Condition::NotAllowed, "the blocklist is full"))
                }
                Err(e) => return store_error(e),
            }
            let push = list_element(name, &items);
            for s in hub.registry.sessions(&owner).iter().filter(|s| s.blocklist_interested.get()) {
                let mut iq = Vec::new();
                XmlWriter::new(&mut iq)
                    .start("iq")
                    .attr("to", s.jid.as_str())
                    .attr("id", "block-push")
                    .attr("type", "set")
                    .open();
                iq.extend_from_slice(&push);
                XmlWriter::new(&mut iq).end("iq");
                if Rc::ptr_eq(s, req.sender) {
                    out.extend_from_slice(&iq);
                } else {
                    let _ = s.push(iq);
                }
            }
            let blocked: &[String] = if name == "block" { &items } else { &[] };
            super::presence::blocklist_changed(hub, req.sender, blocked, &unblocked, out);
            IqReply::Result(None)
        }
        _ => IqReply::Error(StanzaError::new(Condition::BadRequest)),
    }
}

fn list_element(name: &str, items: &[String]) -> Vec<u8> {
    let mut p = Vec::new();
    let mut w = XmlWriter::new(&mut p);
    w.start(name).attr("xmlns", NS_BLOCKING);
    if items.is_empty() {
        w.close_empty();
        return p;
    }
    w.open();
    for i in items {
        XmlWriter::new(&mut p).start("item").attr("jid", i).close_empty();
    }
    XmlWriter::new(&mut p).end(name);
    p
}

/// The error a sender gets for a stanza to a JID it blocks (§3.4).
pub fn outbound_error() -> StanzaError {
    StanzaError {
        app: Some(("blocked", NS_BLOCKING_ERRORS)),
        ..StanzaError::with_text(Condition::NotAcceptable, "you block this address")
    }
}
