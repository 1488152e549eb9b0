//! XEP-0280: Message Carbons. A resource that enables carbons gets a copy of the
//! chat messages its account sends from other resources (`<sent/>`) and of those
//! delivered to other resources (`<received/>`), wrapped per XEP-0297.

use super::{Handler, Hub, IqReply, IqRequest, IqType};
use crate::ns::NS_CLIENT;
use crate::ns::{NS_CARBONS, NS_FORWARD, NS_HINTS};
use crate::services::mam::Stamp;
use crate::sessions::Session;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::{write_element, Override, XmlWriter};
use crate::xml::Element;
use std::rc::Rc;

pub const ENABLE: Handler = Handler {
    namespace: NS_CARBONS,
    element: "enable",
    features: &[NS_CARBONS],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle: enable,
};

pub const DISABLE: Handler = Handler {
    namespace: NS_CARBONS,
    element: "disable",
    features: &[],
    for_server: true,
    advertised_on_server: true,
    for_account: true,
    for_remote: false,
    handle: disable,
};

fn set(req: &IqRequest<'_>, on: bool) -> IqReply {
    if req.iq_type != IqType::Set || req.on_behalf_of.is_some_and(|b| *b != req.sender.jid.to_bare()) {
        return IqReply::Error(StanzaError::new(Condition::BadRequest));
    }
    req.sender.carbons.set(on);
    IqReply::Result(None)
}

fn enable(_: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    set(req, true)
}

fn disable(_: &Hub<'_>, req: &IqRequest<'_>, _: &mut Vec<u8>) -> IqReply {
    set(req, false)
}

/// §6: which messages are copied: chat, or normal with a body; never one marked
/// private or no-copy.
pub fn eligible(message: &Element<'_>) -> bool {
    let kind_ok = match message.attr("type").as_deref() {
        Some("chat") => true,
        None | Some("normal") => message.child("body", NS_CLIENT).is_some(),
        _ => false,
    };
    kind_ok && message.child("private", NS_CARBONS).is_none() && message.child("no-copy", NS_HINTS).is_none()
}

/// What is copied: the message, which way it went, and who sent it.
pub struct Copy<'m, 'e> {
    /// `sent` or `received`.
    pub direction: &'static str,
    pub message: &'m Element<'e>,
    /// The inner message's `from`.
    pub from: &'m str,
}

/// The copy for `to`: `<message from=bare to=full type='chat'><sent|received>
/// <forwarded><message …/></forwarded></…></message>`, the inner message carrying
/// `from` = `copy.from` and the stanza-id it got in the account's archive
/// (XEP-0313 §5.1.3: a client matches a carbon with the archive by it).
pub fn wrap(copy: &Copy<'_, '_>, stamp: Option<&Stamp>, account: &str, to: &str) -> Vec<u8> {
    let (direction, message) = (copy.direction, copy.message);
    let mut out = Vec::with_capacity(400);
    XmlWriter::new(&mut out)
        .start("message")
        .attr("from", account)
        .attr("to", to)
        .attr("type", message.attr("type").as_deref().unwrap_or("normal"))
        .open()
        .start(direction)
        .attr("xmlns", NS_CARBONS)
        .open()
        .start("forwarded")
        .attr("xmlns", NS_FORWARD)
        .open();
    // The forwarded message is in jabber:client, whichever stream it came on.
    let from = [Override::Set("from", copy.from)];
    match stamp {
        None => write_element(&mut out, message, NS_FORWARD, Some(NS_CLIENT), &from),
        Some(stamp) => {
            let mut inner = Vec::with_capacity(300);
            write_element(&mut inner, message, NS_CLIENT, Some(NS_CLIENT), &from);
            out.extend_from_slice(&crate::services::mam::as_forwarded(&stamp.apply(&inner)));
        }
    }
    XmlWriter::new(&mut out).end("forwarded").end(direction).end("message");
    out
}

/// Received copies of a message from another server for the account's
/// carbons-enabled sessions, except `skip` (those that got the message itself).
pub fn copy_inbound(sessions: &[Rc<Session>], skip: &[&Rc<Session>], copy: &Copy<'_, '_>, stamp: Option<&Stamp>) {
    for s in sessions.iter().filter(|s| s.carbons.get() && !skip.iter().any(|k| Rc::ptr_eq(k, s))) {
        let _ = s.push(wrap(copy, stamp, s.jid.to_bare().as_str(), s.jid.as_str()));
    }
}

/// Copies to the account's carbons-enabled sessions, except `skip` (the sessions
/// that sent or already received the message).
pub fn copy_to(
    sessions: &[Rc<Session>],
    skip: &[&Rc<Session>],
    copy: &Copy<'_, '_>,
    stamp: Option<&Stamp>,
    current: &Rc<Session>,
    out: &mut Vec<u8>,
) {
    for s in sessions.iter().filter(|s| s.carbons.get() && !skip.iter().any(|k| Rc::ptr_eq(k, s))) {
        let account = s.jid.to_bare();
        let bytes = wrap(copy, stamp, account.as_str(), s.jid.as_str());
        if Rc::ptr_eq(s, current) {
            out.extend_from_slice(&bytes);
        } else {
            let _ = s.push(bytes);
        }
    }
}
