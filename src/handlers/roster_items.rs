//! Roster items on the wire (RFC 6121 §2.1): the `<item/>` element and roster
//! pushes (§2.1.6), shared by the roster and presence handlers (a subscription
//! change is a roster change).

use crate::hub::Hub;
use crate::jid::BareJid;
use crate::ns::NS_ROSTER;
use crate::sessions::Session;
use crate::store::roster::RosterItem;
use crate::xml::writer::XmlWriter;
use std::rc::Rc;

/// §2.1.6: a push to every resource of the account that requested the roster.
/// `current` is the session being served: its push goes to `out`.
pub fn push_to_interested(
    hub: &Hub<'_>,
    owner: &BareJid,
    item: &RosterItem,
    current: Option<&Rc<Session>>,
    out: &mut Vec<u8>,
) {
    if item.hidden {
        return;
    }
    for session in hub.registry.sessions(owner) {
        if !session.roster_interested.get() {
            continue;
        }
        let bytes = push_bytes(item, session.jid.as_str());
        if current.is_some_and(|c| Rc::ptr_eq(&session, c)) {
            out.extend_from_slice(&bytes);
        } else {
            let _ = session.push(bytes);
        }
    }
}

fn push_id() -> String {
    format!("push-{}", &crate::stream::header::new_stream_id()[..12])
}

/// `<iq type='set' to=… id=…><query ver=…><item/></query></iq>` (§2.1.6).
pub fn push_bytes(item: &RosterItem, to: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    write_push(item, to, &mut out);
    out
}

fn write_push(item: &RosterItem, to: &str, out: &mut Vec<u8>) {
    XmlWriter::new(out).start("iq").attr("to", to).attr("id", &push_id()).attr("type", "set").open();
    XmlWriter::new(out).start("query").attr("xmlns", NS_ROSTER).attr("ver", &item.ver.to_string()).open();
    write_item(item, out);
    XmlWriter::new(out).end("query").end("iq");
}

pub fn write_item(item: &RosterItem, out: &mut Vec<u8>) {
    let mut w = XmlWriter::new(out);
    w.start("item").attr("jid", item.jid.as_str());
    if item.removed {
        w.attr("subscription", "remove").close_empty();
        return;
    }
    w.attr_opt("name", item.name.as_deref()).attr("subscription", item.subscription.wire_name());
    if item.ask {
        w.attr("ask", "subscribe");
    }
    if item.approved {
        w.attr("approved", "true");
    }
    if item.groups.is_empty() {
        w.close_empty();
        return;
    }
    w.open();
    for g in &item.groups {
        XmlWriter::new(out).start("group").open().text(g).end("group");
    }
    XmlWriter::new(out).end("item");
}
