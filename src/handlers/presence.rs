//! Presence (RFC 6121 §4) and presence subscriptions (§3, Appendix A) between local
//! accounts: initial presence broadcast to subscribers and the user's own
//! resources, probes answered from the contacts' last presence, inbound requests
//! kept and redelivered at the next initial presence, directed presence tracked,
//! and unavailable presence broadcast on logout or a dropped connection.
//! Subscription changes update both rosters and push them (§3.1–§3.3).

use super::blocking;
use super::roster_items::push_to_interested;
use super::subscription;
use crate::hub::{Address, Hub};
use crate::jid::{BareJid, Jid};
use crate::ns::{NS_CLIENT, NS_DELAY};
use crate::sessions::{LastPresence, Session, MAX_DIRECTED};
use crate::store::roster::RosterItem;
use crate::xml::writer::{write_element, Override, XmlWriter};
use crate::xml::Element;
use std::rc::Rc;

/// A presence stanza from a bound session (the router sends presence for a
/// gateway's users to the gateway before it gets here).
pub fn route(hub: &Hub<'_>, sender: &Rc<Session>, stanza: &Element<'_>, out: &mut Vec<u8>) {
    // XEP-0398 §4: available presence carries the avatar's hash.
    if stanza.attr("type").is_none() {
        if let Some(bytes) = crate::services::pep::avatar::with_photo_hash(hub, &sender.jid.to_bare(), stanza) {
            crate::xml::for_each_stanza(&bytes, |amended| route_as_sent(hub, sender, amended, out));
            return;
        }
    }
    route_as_sent(hub, sender, stanza, out)
}

fn route_as_sent(hub: &Hub<'_>, sender: &Rc<Session>, stanza: &Element<'_>, out: &mut Vec<u8>) {
    let presence_type = stanza.attr("type");
    let to = stanza.attr("to").map(|t| t.parse::<Jid>());
    // XEP-0191 §3.5: no presence from an address a local recipient blocks
    // (dropped silently; the router checked the sender's own blocklist, §3.4).
    if let Some(Ok(j)) = &to {
        if j.local().is_some()
            && j.domain() == hub.domain.as_str()
            && blocking::blocked(hub, &j.to_bare(), &Jid::Full(sender.jid.clone()))
        {
            return;
        }
    }
    match (to, presence_type.as_deref()) {
        (None, None) => available(hub, sender, stanza, out),
        (None, Some("unavailable")) => unavailable(hub, sender, Some(stanza), out),
        // Subscription types need an addressee; probes come from servers.
        (None, _) | (Some(Err(_)), _) | (Some(_), Some("probe")) => {}
        (Some(Ok(to)), Some(t)) if subscription::Kind::parse(t).is_some() => {
            if let Some(kind) = subscription::Kind::parse(t) {
                subscription::outbound(hub, sender, to.to_bare(), kind, subscription::payload_of(stanza), out)
            }
        }
        (Some(Ok(to)), t) => directed(hub, sender, stanza, &to, t, out),
    }
}

/// The bytes of `stanza` re-emitted with `from` and `to` stamped.
fn stamped(stanza: &Element<'_>, from: &str, to: Option<&str>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(200);
    let to_override = to.map_or(Override::Remove("to"), |t| Override::Set("to", t));
    write_element(&mut bytes, stanza, NS_CLIENT, None, &[Override::Set("from", from), to_override]);
    bytes
}

/// Stored presence (re-emitted by wrenhub, without `to`) addressed to `to`, with
/// a XEP-0203 `<delay/>` saying when it was sent (RFC 6121 §4.3.2: the answer to
/// a probe is not fresh). The attribute goes last in the start tag, as
/// [`stamped`] writes it; the writer escapes `>` in attribute values, so the
/// first `>` ends the start tag.
pub(super) fn with_to(last: &LastPresence, to: &str) -> Vec<u8> {
    let stored = &last.bytes[..];
    let end = stored.iter().position(|&b| b == b'>').unwrap_or(stored.len());
    let self_closing = end > 0 && stored.get(end - 1) == Some(&b'/');
    let cut = if self_closing { end - 1 } else { end };
    let mut out = Vec::with_capacity(stored.len() + to.len() + 80);
    out.extend_from_slice(&stored[..cut]);
    XmlWriter::new(&mut out).attr("to", to);
    let stamp = crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(last.sent_at));
    let mut delay = Vec::with_capacity(72);
    XmlWriter::new(&mut delay).start("delay").attr("xmlns", NS_DELAY).attr("stamp", &stamp).close_empty();
    const CLOSE: &[u8] = b"</presence>";
    let has_delay = stored.windows(NS_DELAY.len()).any(|w| w == NS_DELAY.as_bytes());
    if self_closing {
        out.push(b'>');
        out.extend_from_slice(&delay);
        out.extend_from_slice(CLOSE);
    } else if stored.ends_with(CLOSE) && !has_delay {
        let body_end = stored.len() - CLOSE.len();
        out.extend_from_slice(&stored[end.min(body_end)..body_end]);
        out.extend_from_slice(&delay);
        out.extend_from_slice(CLOSE);
    } else {
        out.extend_from_slice(&stored[cut..]);
    }
    out
}

/// A presence stanza the server makes: `<presence from to type/>`.
pub(super) fn simple(from: &str, to: &str, presence_type: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(120);
    XmlWriter::new(&mut out)
        .start("presence")
        .attr("from", from)
        .attr("to", to)
        .attr_opt("type", presence_type)
        .close_empty();
    out
}

/// Puts bytes to a session: its own output if it is the one being served.
fn send(session: &Rc<Session>, current: &Rc<Session>, bytes: Vec<u8>, out: &mut Vec<u8>) {
    if Rc::ptr_eq(session, current) {
        out.extend_from_slice(&bytes);
    } else {
        let _ = session.push(bytes);
    }
}

fn roster(hub: &Hub<'_>, owner: &BareJid) -> Vec<RosterItem> {
    hub.store.roster_items(owner).unwrap_or_else(|e| {
        log::error!("roster of {owner}: {e}");
        Vec::new()
    })
}

/// The roster without contacts the user blocks or who block the user (XEP-0191):
/// they neither get its presence nor are probed.
fn unblocked(hub: &Hub<'_>, sender: &Session, items: Vec<RosterItem>) -> Vec<RosterItem> {
    // One read transaction for the user's list and every local contact's (S10);
    // a remote contact's list is on its own server.
    let mut owners = vec![sender.jid.to_bare()];
    owners.extend(items.iter().filter(|i| i.jid.domain() == hub.domain.as_str()).map(|i| i.jid.clone()));
    let mut lists = hub.store.blocklists(&owners).unwrap_or_default().into_iter();
    let mine = lists.next().unwrap_or_default();
    let theirs: std::collections::HashMap<BareJid, Vec<String>> =
        owners.into_iter().skip(1).zip(lists).filter(|(_, l)| !l.is_empty()).collect();
    let me = Jid::Full(sender.jid.clone());
    items
        .into_iter()
        .filter(|i| {
            !blocking::matches(&mine, &Jid::Bare(i.jid.clone()))
                && !theirs.get(&i.jid).is_some_and(|list| blocking::matches(list, &me))
        })
        .collect()
}

/// §4.2 initial presence and §4.4 presence updates.
fn available(hub: &Hub<'_>, sender: &Rc<Session>, stanza: &Element<'_>, out: &mut Vec<u8>) {
    let previous = sender.priority.get();
    let initial = previous.is_none();
    let priority = stanza.child("priority", NS_CLIENT).and_then(|p| p.text().trim().parse::<i8>().ok()).unwrap_or(0);
    sender.priority.set(Some(priority));
    // Offline messages go to a resource once its priority becomes non-negative.
    let offline_target = priority >= 0 && previous.is_none_or(|p| p < 0);
    let from = sender.jid.as_str();
    let bytes = stamped(stanza, from, None).into_boxed_slice();
    *sender.last_presence.borrow_mut() = Some(LastPresence { bytes, sent_at: crate::clock::now_unix() });
    let owner = sender.jid.to_bare();
    let items = unblocked(hub, sender, roster(hub, &owner));
    // To every contact subscribed to the user (from/both), at their available resources.
    for item in items.iter().filter(|i| i.subscription.has_from()) {
        let bytes = stamped(stanza, from, Some(item.jid.as_str()));
        if hub.send_to_domain(item.jid.domain(), &bytes) {
            continue;
        }
        for s in hub.registry.sessions(&item.jid).iter().filter(|s| s.available()) {
            send(s, sender, bytes.clone(), out);
        }
    }
    // To the user's own available resources, the sender included (§4.2.2).
    for s in hub.registry.sessions(&owner).iter().filter(|s| s.available()) {
        send(s, sender, stamped(stanza, from, Some(s.jid.as_str())), out);
    }
    if offline_target {
        super::offline::deliver(hub, sender, out);
    }
    crate::services::pep::presence_available(hub, sender, stanza, out);
    if !initial {
        return;
    }
    // R7: a new resource learns of the account's other available resources.
    for s in hub.registry.sessions(&owner).iter().filter(|s| s.available() && !Rc::ptr_eq(s, sender)) {
        if let Some(last) = s.last_presence.borrow().as_ref() {
            out.extend_from_slice(&with_to(last, from));
        }
    }
    // §4.3: probe the contacts the user is subscribed to (to/both), answered here
    // from their last presence.
    for item in items.iter().filter(|i| i.subscription.has_to()) {
        // A contact on another server is probed there (§4.3.1).
        if hub.send_to_domain(item.jid.domain(), &simple(owner.as_str(), item.jid.as_str(), Some("probe"))) {
            continue;
        }
        let online: Vec<Rc<Session>> = hub.registry.sessions(&item.jid).into_iter().filter(|s| s.available()).collect();
        if online.is_empty() {
            out.extend_from_slice(&simple(item.jid.as_str(), from, Some("unavailable")));
        }
        for s in online {
            if let Some(last) = s.last_presence.borrow().as_ref() {
                out.extend_from_slice(&with_to(last, from));
            }
        }
    }
    // §3.1.3: subscription requests that waited for an available resource, as
    // they came.
    for item in items.iter().filter(|i| i.pending_in) {
        let bytes = subscription::with_payload(item.jid.as_str(), owner.as_str(), "subscribe", item.request.as_deref());
        out.extend_from_slice(&bytes);
    }
}

/// §4.5: unavailable presence, sent by the client (`stanza`) or on its behalf when
/// the session ends.
pub fn unavailable(hub: &Hub<'_>, sender: &Rc<Session>, stanza: Option<&Element<'_>>, out: &mut Vec<u8>) {
    let was_available = sender.priority.take().is_some();
    sender.last_presence.borrow_mut().take();
    // Available again later, it gets PEP's last items again (XEP-0163 §4.3.2).
    sender.caps.borrow_mut().take();
    let directed = std::mem::take(&mut *sender.directed.borrow_mut());
    let from = sender.jid.as_str();
    let bytes_for = |to: &str| match stanza {
        Some(s) => stamped(s, from, Some(to)),
        None => simple(from, to, Some("unavailable")),
    };
    let owner = sender.jid.to_bare();
    if was_available {
        for item in roster(hub, &owner).iter().filter(|i| i.subscription.has_from()) {
            let bytes = bytes_for(item.jid.as_str());
            if hub.send_to_domain(item.jid.domain(), &bytes) {
                continue;
            }
            for s in hub.registry.sessions(&item.jid).iter().filter(|s| s.available()) {
                send(s, sender, bytes.clone(), out);
            }
        }
        for s in hub.registry.sessions(&owner).iter().filter(|s| s.available() && !Rc::ptr_eq(s, sender)) {
            send(s, sender, bytes_for(s.jid.as_str()), out);
        }
        // §4.5.2: the resource that sent it gets it too (as for initial
        // presence, §4.2.2); a session that just ended has no stream for it.
        if stanza.is_some() {
            out.extend_from_slice(&bytes_for(from));
        }
    }
    if let Some(status) = stanza.and_then(|s| s.child("status", NS_CLIENT)) {
        let text = status.text();
        let mut end = text.len().min(super::last::MAX_STATUS);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        *sender.unavailable_status.borrow_mut() = Some(text[..end].into());
    }
    // §4.6.3: everyone who got directed presence learns the session is gone.
    for to in directed {
        deliver_to(hub, Some(sender), &to, bytes_for(&to), out);
    }
}

/// The session ends (logout or dropped connection): unavailable presence for it.
pub fn session_ended(hub: &Hub<'_>, session: &Rc<Session>) {
    let mut out = Vec::new();
    unavailable(hub, session, None, &mut out);
}

/// Delivers presence to a JID: a full JID's session, a bare JID's available
/// resources, or to another domain (federation or a gateway). `current` is the
/// session being served (its own presence goes to `out`).
pub(super) fn deliver_to(hub: &Hub<'_>, current: Option<&Rc<Session>>, to: &str, bytes: Vec<u8>, out: &mut Vec<u8>) {
    let Ok(jid) = to.parse::<Jid>() else { return };
    if hub.send_to_domain(jid.domain(), &bytes) {
        return;
    }
    let put = |s: &Rc<Session>, bytes: Vec<u8>, out: &mut Vec<u8>| match current {
        Some(c) => send(s, c, bytes, out),
        None => {
            let _ = s.push(bytes);
        }
    };
    match jid {
        Jid::Full(full) => {
            if let Some(s) = hub.registry.get(&full) {
                put(&s, bytes, out);
            }
        }
        Jid::Bare(bare) => {
            for s in hub.registry.sessions(&bare).iter().filter(|s| s.available()) {
                put(s, bytes.clone(), out);
            }
        }
    }
}

/// §4.6: directed presence, tracked so that unavailable presence follows it.
fn directed(
    hub: &Hub<'_>,
    sender: &Rc<Session>,
    stanza: &Element<'_>,
    to: &Jid,
    presence_type: Option<&str>,
    out: &mut Vec<u8>,
) {
    let to_text = to.as_str().to_string();
    if presence_type.is_none() && !directed_available_sent(hub, sender, stanza, to, out) {
        return;
    }
    {
        let mut directed = sender.directed.borrow_mut();
        match presence_type {
            None if !directed.iter().any(|d| **d == *to_text) && directed.len() < MAX_DIRECTED => {
                directed.push(to_text.clone().into_boxed_str());
            }
            Some("unavailable") => directed.retain(|d| **d != *to_text),
            _ => {}
        }
    }
    let bytes = stamped(stanza, sender.jid.as_str(), Some(&to_text));
    deliver_to(hub, Some(sender), &to_text, bytes, out);
}

/// Directed available presence to another domain (a group-chat join, most often):
/// RFC 6120 §8.3 and §10.4.3, an address that cannot be reached gets an error
/// presence back rather than silence, now (an unknown domain, a gateway that is
/// not connected, no federation) or when the link fails (the s2s queue's bounce).
/// True when the caller delivers it (local addresses, gateways); false when it is
/// dealt with here: queued for the remote domain, or refused (the error in `out`).
fn directed_available_sent(
    hub: &Hub<'_>,
    sender: &Rc<Session>,
    stanza: &Element<'_>,
    to: &Jid,
    out: &mut Vec<u8>,
) -> bool {
    use crate::stanza::{Condition, StanzaError};
    let refuse = |condition: Condition, text: &str, out: &mut Vec<u8>| {
        let mut e = StanzaError::with_text(condition, text);
        e.by = Some(hub.domain.as_str().to_string());
        e.write_reply(stanza, sender.jid.as_str(), Some(to.as_str()), out);
        false
    };
    match hub.address(to.domain()) {
        Address::Accounts
        | Address::Component(_)
        | Address::Muc
        | Address::Directory
        | Address::Upload
        | Address::Proxy65 => true,
        Address::Nowhere => refuse(Condition::RemoteServerNotFound, "no such domain", out),
        Address::ComponentAbsent => refuse(Condition::ServiceUnavailable, "the gateway is not connected", out),
        Address::Remote(domain) => {
            let Some(s2s) = hub.s2s else {
                return refuse(Condition::RemoteServerNotFound, "this server does not federate", out);
            };
            let bytes = stamped(stanza, sender.jid.as_str(), Some(to.as_str()));
            let bounce = crate::s2s::Bounce {
                kind: crate::stanza::Kind::Presence,
                from: sender.jid.as_str().to_string(),
                to: to.as_str().to_string(),
                id: stanza.attr("id").map(|i| i.into_owned()),
            };
            match s2s.send(&domain, bytes, Some(bounce)) {
                Ok(()) => {
                    let mut directed = sender.directed.borrow_mut();
                    let to_text = to.as_str();
                    if !directed.iter().any(|d| **d == *to_text) && directed.len() < MAX_DIRECTED {
                        directed.push(to_text.into());
                    }
                    false
                }
                Err(e) => {
                    let mut error = e.stanza_error();
                    error.by = Some(hub.domain.as_str().to_string());
                    error.write_reply(stanza, sender.jid.as_str(), Some(to.as_str()), out);
                    false
                }
            }
        }
    }
}

fn item_of(hub: &Hub<'_>, owner: &BareJid, contact: &BareJid) -> Option<RosterItem> {
    hub.store.roster_item(owner, contact).unwrap_or_else(|e| {
        log::error!("roster of {owner}: {e}");
        None
    })
}

/// XEP-0191 §3.3: presence follows the blocklist. A blocked JID (local or remote,
/// full or bare) sees the user's available resources go unavailable; an unblocked
/// contact the user's presence is shared with gets it again, and the user gets the
/// contact's (from its last presence here, or a probe for a remote contact).
pub fn blocklist_changed(
    hub: &Hub<'_>,
    sender: &Rc<Session>,
    blocked: &[String],
    unblocked: &[String],
    out: &mut Vec<u8>,
) {
    let owner = sender.jid.to_bare();
    let mine: Vec<Rc<Session>> = hub.registry.sessions(&owner).into_iter().filter(|s| s.available()).collect();
    let local = |jid: &Jid| jid.domain() == hub.domain.as_str();
    for jid in blocked.iter().filter_map(|b| b.parse::<Jid>().ok()).filter(|j| j.local().is_some()) {
        for s in &mine {
            if local(&jid) {
                for peer in hub.registry.sessions(&jid.to_bare()).iter().filter(|p| p.available()) {
                    if matches!(&jid, Jid::Full(f) if *f != peer.jid) {
                        continue;
                    }
                    send(peer, sender, simple(s.jid.as_str(), peer.jid.as_str(), Some("unavailable")), out);
                }
            } else {
                hub.send_to_domain(jid.domain(), &simple(s.jid.as_str(), jid.as_str(), Some("unavailable")));
            }
        }
    }
    for jid in unblocked.iter().filter_map(|b| b.parse::<Jid>().ok()).filter(|j| j.local().is_some()) {
        let contact = jid.to_bare();
        let Some(item) = item_of(hub, &owner, &contact) else { continue };
        if item.subscription.has_from() {
            for s in &mine {
                let Some(last) = s.last_presence.borrow().clone() else { continue };
                if local(&jid) {
                    for peer in hub.registry.sessions(&contact).iter().filter(|p| p.available()) {
                        send(peer, sender, with_to(&last, peer.jid.as_str()), out);
                    }
                } else {
                    hub.send_to_domain(jid.domain(), &with_to(&last, contact.as_str()));
                }
            }
        }
        if item.subscription.has_to() {
            if local(&jid) {
                for peer in hub.registry.sessions(&contact).iter().filter(|p| p.available()) {
                    let Some(last) = peer.last_presence.borrow().clone() else { continue };
                    for m in &mine {
                        send(m, sender, with_to(&last, m.jid.as_str()), out);
                    }
                }
            } else {
                hub.send_to_domain(jid.domain(), &simple(owner.as_str(), contact.as_str(), Some("probe")));
            }
        }
    }
}

/// R3: an account was deleted (its rows are gone, the other local rosters updated
/// in the same transaction): local contacts get the roster push of their changed
/// item, remote ones `unsubscribe` and `unsubscribed` from it.
pub fn account_deleted(hub: &Hub<'_>, gone: &BareJid, items: &[RosterItem]) {
    hub.pep.remote.forget(gone);
    for item in items {
        let contact = &item.jid;
        if contact.domain() != hub.domain.as_str() {
            for kind in ["unsubscribe", "unsubscribed"] {
                hub.send_to_domain(contact.domain(), &simple(gone.as_str(), contact.as_str(), Some(kind)));
            }
            continue;
        }
        if let Some(theirs) = hub.store.roster_item(contact, gone).ok().flatten() {
            push_to_interested(hub, contact, &theirs, None, &mut Vec::new());
        }
    }
}

/// RFC 6121 §2.5.2: removing a contact cancels the subscriptions both ways, as if
/// the user had sent `unsubscribe` and `unsubscribed` (REVIEW R1); called before
/// the item is removed.
pub fn cancel_both_ways(hub: &Hub<'_>, sender: &Rc<Session>, item: &RosterItem, out: &mut Vec<u8>) {
    if item.subscription.has_to() || item.ask {
        subscription::outbound(hub, sender, item.jid.clone(), subscription::Kind::Unsubscribe, None, out);
    }
    if item.subscription.has_from() || item.pending_in {
        subscription::outbound(hub, sender, item.jid.clone(), subscription::Kind::Unsubscribed, None, out);
    }
}

/// Presence from another server or a gateway to a local JID (RFC 6121 §3 and §4,
/// the contact's server: the inbound half): subscription requests and answers
/// update the local account's roster, probes are answered from its resources'
/// last presence, and presence is delivered to its available resources.
pub fn inbound(hub: &Hub<'_>, stanza: &Element<'_>, from: &str, to: &Jid) {
    let Ok(sender) = from.parse::<Jid>() else { return };
    let user = to.to_bare();
    let contact = sender.to_bare();
    if blocking::blocked(hub, &user, &sender) {
        return;
    }
    let presence_type = stanza.attr("type");
    let exists = matches!(hub.store.account(&user), Ok(Some(_)));
    let available: Vec<Rc<Session>> = hub.registry.sessions(&user).into_iter().filter(|s| s.available()).collect();
    let deliver = |bytes: &[u8]| {
        for s in &available {
            let _ = s.push(bytes.to_vec());
        }
    };
    let item = if exists { item_of(hub, &user, &contact) } else { None };
    match presence_type.as_deref() {
        Some(t) if subscription::Kind::parse(t).is_some() => {
            if let Some(kind) = subscription::Kind::parse(t) {
                subscription::inbound(hub, &contact, &user, kind, subscription::payload_of(stanza));
            }
        }
        Some("probe") => {
            // §4.3.2: answered only for a contact with a subscription to the user.
            if !item.is_some_and(|i| i.subscription.has_from()) {
                return;
            }
            if available.is_empty() {
                hub.send_to_domain(contact.domain(), &simple(user.as_str(), from, Some("unavailable")));
            }
            for s in &available {
                if let Some(last) = s.last_presence.borrow().as_ref() {
                    hub.send_to_domain(contact.domain(), &with_to(last, from));
                }
            }
        }
        t => {
            if let (Jid::Bare(owner), Jid::Full(resource), None | Some("unavailable")) = (to, &sender, t) {
                if exists {
                    crate::services::pep::remote_presence(hub, owner, resource, stanza);
                }
            }
            let mut bytes = Vec::with_capacity(256);
            write_element(&mut bytes, stanza, NS_CLIENT, Some(NS_CLIENT), &[]);
            match to {
                // RFC 6121 §8.5.3.1: to a full JID, the connected resource gets it,
                // available or not (a client that only joined a group chat hears
                // the room's occupants).
                Jid::Full(f) => {
                    if let Some(s) = hub.registry.get(f) {
                        let _ = s.push(bytes);
                    }
                }
                Jid::Bare(_) => deliver(&bytes),
            }
        }
    }
}
