//! XEP-0160 offline messages on their way out: what is kept (R8), and the backlog
//! sent to the first resource that becomes available with a non-negative priority,
//! in batches that fit its queue (REVIEW S3), each followed by a XEP-0199 ping.
//! A batch leaves the store only when the client answers that ping (D2): a phone
//! that loses its connection right after login gets the batch again next time.
//! With stream management (XEP-0198) an `<a h/>` that covers the ping
//! acknowledges the batch as well; a session that expires before that leaves the
//! batch in the store and does not route a second copy of it.

use crate::hub::Hub;
use crate::jid::BareJid;
use crate::ns::NS_CLIENT;
use crate::ns::NS_DELAY;
use crate::ns::NS_HINTS;
use crate::sessions::{OfflineBatch, Session};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use std::rc::Rc;

/// The id prefix of the ping that follows a batch.
const ACK_PREFIX: &str = "wrenhub-offline-";

/// Whether a message for an offline account is kept: it has a body (or asks to be
/// stored, XEP-0334 `<store/>`), and does not ask not to be (`<no-store/>`,
/// `<no-permanent-store/>`). Chat states, receipts and markers alone are not kept:
/// they would fill the quota and mean nothing later.
pub fn eligible(message: &Element<'_>) -> bool {
    let hint = |name: &str| message.child(name, NS_HINTS).is_some();
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    // In the stanza's own namespace: jabber:client, or jabber:server from a peer.
    message.child("body", NS_CLIENT).is_some() || message.child("body", message.ns()).is_some() || hint("store")
}

/// Sends the next batch of the account's backlog to `session` (into `out`, its own
/// output), unless a batch is already waiting for its acknowledgement.
pub fn deliver(hub: &Hub<'_>, session: &Rc<Session>, out: &mut Vec<u8>) {
    if session.offline_batch.borrow().is_some() {
        return;
    }
    deliver_after(hub, session, &session.jid.to_bare(), None, out);
}

fn deliver_after(hub: &Hub<'_>, session: &Rc<Session>, owner: &BareJid, after: Option<u64>, out: &mut Vec<u8>) {
    let messages = match hub.store.offline_batch(owner, after, hub.limits.offline_batch_bytes) {
        Ok(m) => m,
        Err(e) => {
            log::error!("offline messages of {owner}: {e}");
            return;
        }
    };
    let Some(last) = messages.last().map(|m| m.seq) else { return };
    let mut seqs = Vec::with_capacity(messages.len());
    for m in &messages {
        let stamp = crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.stamp));
        let mut delay = Vec::with_capacity(120);
        XmlWriter::new(&mut delay)
            .start("delay")
            .attr("xmlns", NS_DELAY)
            .attr("from", hub.domain.as_str())
            .attr("stamp", &stamp)
            .close_empty();
        // The stanza was re-emitted by wrenhub: it ends in `</message>` or `/>`.
        let s = &m.stanza;
        if let Some(body) = s.strip_suffix(b"</message>") {
            out.extend_from_slice(body);
        } else if let Some(open) = s.strip_suffix(b"/>") {
            out.extend_from_slice(open);
            out.push(b'>');
        } else {
            continue;
        }
        out.extend_from_slice(&delay);
        out.extend_from_slice(b"</message>");
        seqs.push(m.seq);
    }
    let id = format!("{ACK_PREFIX}{last}");
    XmlWriter::new(out)
        .start("iq")
        .attr("type", "get")
        .attr("id", &id)
        .attr("from", hub.domain.as_str())
        .attr("to", session.jid.as_str())
        .open()
        .empty_ns("ping", crate::ns::NS_PING)
        .end("iq");
    *session.offline_batch.borrow_mut() = Some(OfflineBatch { id, seqs, last });
}

/// An iq result from a session to the server: if it answers the ping after an
/// offline batch, the batch leaves the store and the next one follows.
pub fn acknowledged(hub: &Hub<'_>, session: &Rc<Session>, id: &str, out: &mut Vec<u8>) {
    let batch = {
        let mut current = session.offline_batch.borrow_mut();
        match current.as_ref() {
            Some(b) if b.id == id => current.take(),
            _ => None,
        }
    };
    let Some(batch) = batch else { return };
    let owner = session.jid.to_bare();
    if let Err(e) = hub.store.remove_offline(&owner, &batch.seqs) {
        // They stay stored and come again later: a duplicate, never a loss.
        log::error!("removing delivered offline messages: {e}");
        return;
    }
    deliver_after(hub, session, &owner, Some(batch.last), out);
}
