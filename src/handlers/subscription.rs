//! Presence subscriptions (RFC 6121 §3, Appendix A) as two halves, the way the
//! RFC describes them (REVIEW A5): the **outbound** half runs on the user's
//! server when the user sends `subscribe`/`subscribed`/`unsubscribe`/
//! `unsubscribed`; the **inbound** half runs on the contact's server when that
//! stanza arrives. The halves are joined by the address table: to another server
//! or a gateway the stanza goes out and the peer runs the inbound half; to a local
//! account the inbound half runs here, in the same [`Exchange`].
//!
//! An exchange collects the roster rows both halves change and stores them in
//! one transaction (REVIEW D3: both sides of a local subscription, or neither),
//! then pushes them, then sends the presence the halves produced.

use super::presence::{deliver_to, simple, with_to};
use super::roster_items::push_to_interested;
use crate::hub::{Address, Hub};
use crate::jid::BareJid;
use crate::sessions::Session;
use crate::store::roster::{RosterItem, MAX_REQUEST_PAYLOAD};
use crate::store::StoreError;
use crate::xml::Element;
use std::rc::Rc;

/// The children of a subscription stanza (a `<status/>`, a XEP-0379 `<preauth/>`),
/// re-emitted in `jabber:client`, as many as fit in [`MAX_REQUEST_PAYLOAD`] bytes.
pub fn payload_of(stanza: &Element<'_>) -> Option<Box<[u8]>> {
    let mut out = Vec::new();
    crate::xml::writer::write_children(&mut out, stanza, crate::ns::NS_CLIENT, &[], MAX_REQUEST_PAYLOAD);
    (!out.is_empty()).then(|| out.into_boxed_slice())
}

/// A subscription stanza with its children, if any.
pub(super) fn with_payload(from: &str, to: &str, kind: &str, payload: Option<&[u8]>) -> Vec<u8> {
    let Some(payload) = payload else { return simple(from, to, Some(kind)) };
    let mut out = Vec::with_capacity(120 + payload.len());
    crate::xml::writer::XmlWriter::new(&mut out)
        .start("presence")
        .attr("from", from)
        .attr("to", to)
        .attr("type", kind)
        .open();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"</presence>");
    out
}

/// The four subscription stanzas (§3.1–§3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl Kind {
    pub fn parse(presence_type: &str) -> Option<Kind> {
        match presence_type {
            "subscribe" => Some(Kind::Subscribe),
            "subscribed" => Some(Kind::Subscribed),
            "unsubscribe" => Some(Kind::Unsubscribe),
            "unsubscribed" => Some(Kind::Unsubscribed),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Subscribed => "subscribed",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Unsubscribed => "unsubscribed",
        }
    }
}

/// The outbound half, for a stanza a local user sent to `contact`.
pub fn outbound(
    hub: &Hub<'_>,
    sender: &Rc<Session>,
    contact: BareJid,
    kind: Kind,
    payload: Option<Box<[u8]>>,
    out: &mut Vec<u8>,
) {
    let user = sender.jid.to_bare();
    if contact == user {
        return;
    }
    let reachable = match hub.address(contact.domain()) {
        Address::Accounts | Address::Component(_) | Address::Muc => true,
        Address::Remote(_) => hub.s2s.is_some(),
        Address::Directory | Address::Upload | Address::Proxy65 | Address::ComponentAbsent | Address::Nowhere => false,
    };
    if !reachable {
        // Federation is off, or the gateway is down: a request cannot be delivered.
        if kind == Kind::Subscribe {
            out.extend_from_slice(&simple(contact.as_str(), user.as_str(), Some("unsubscribed")));
        }
        return;
    }
    let mut exchange = Exchange { hub, changes: Vec::new(), sends: Vec::new(), approved: Vec::new(), payload };
    if exchange.user_side(&user, &contact, kind) {
        exchange.route(&user, &contact, kind);
        exchange.after_sent(&user, &contact, kind);
    }
    exchange.finish(Some(sender), out);
}

/// The inbound half, for a stanza from another server or a gateway to a local
/// account.
pub fn inbound(hub: &Hub<'_>, from: &BareJid, owner: &BareJid, kind: Kind, payload: Option<Box<[u8]>>) {
    let mut exchange = Exchange { hub, changes: Vec::new(), sends: Vec::new(), approved: Vec::new(), payload };
    exchange.contact_side(owner, from, kind);
    exchange.finish(None, &mut Vec::new());
}

/// What one subscription stanza changes, until it is stored and sent.
struct Exchange<'h> {
    hub: &'h Hub<'h>,
    /// Roster rows to store, in one transaction.
    changes: Vec<(BareJid, RosterItem)>,
    /// Presence to send once they are stored: (to, bytes).
    sends: Vec<(String, Vec<u8>)>,
    /// (owner, contact): the contact may now see the owner's presence (and PEP).
    approved: Vec<(BareJid, BareJid)>,
    /// The children of the stanza the exchange is for (kept with a request).
    payload: Option<Box<[u8]>>,
}

impl Exchange<'_> {
    /// A roster row as this exchange left it (or as stored).
    fn item(&self, owner: &BareJid, contact: &BareJid) -> Option<RosterItem> {
        if let Some((_, item)) = self.changes.iter().rev().find(|(o, i)| o == owner && i.jid == *contact) {
            return Some(item.clone());
        }
        self.hub.store.roster_item(owner, contact).unwrap_or_else(|e| {
            log::error!("roster of {owner}: {e}");
            None
        })
    }

    fn put(&mut self, owner: &BareJid, item: RosterItem) {
        self.changes.retain(|(o, i)| !(o == owner && i.jid == item.jid));
        self.changes.push((owner.clone(), item));
    }

    fn send(&mut self, to: &str, bytes: Vec<u8>) {
        self.sends.push((to.to_string(), bytes));
    }

    /// `from` says `kind` to `to`: the inbound half runs here when `to` is a
    /// local account, otherwise the stanza goes to its server or gateway.
    fn route(&mut self, from: &BareJid, to: &BareJid, kind: Kind) {
        if matches!(self.hub.address(to.domain()), Address::Accounts) {
            self.contact_side(to, from, kind);
        } else {
            let payload = self.payload.as_deref().filter(|_| kind == Kind::Subscribe);
            self.send(to.as_str(), with_payload(from.as_str(), to.as_str(), kind.name(), payload));
        }
    }

    /// The user's server, for what the user sent (§3.1.2, §3.1.5, §3.3.2,
    /// §3.2.2). False when there is nothing to send: approving a request that is
    /// not pending pre-approves it (§3.4.1) and tells the contact nothing.
    fn user_side(&mut self, user: &BareJid, contact: &BareJid, kind: Kind) -> bool {
        let mine = self.item(user, contact);
        match kind {
            Kind::Subscribe => {
                let mut item = mine.unwrap_or_else(|| RosterItem::new(contact.clone()));
                if !item.subscription.has_to() && (!item.ask || item.hidden) {
                    item.ask = true;
                    item.hidden = false;
                    self.put(user, item);
                }
            }
            Kind::Subscribed => match mine.clone().and_then(RosterItem::grant_from) {
                Some(item) => self.put(user, item),
                None => {
                    let item = mine.unwrap_or_else(|| RosterItem::new(contact.clone()));
                    if let Some(item) = item.pre_approve() {
                        self.put(user, item);
                    }
                    return false;
                }
            },
            Kind::Unsubscribe => {
                if let Some(item) = mine.and_then(RosterItem::cancel_to) {
                    self.put(user, item);
                }
            }
            Kind::Unsubscribed => {
                if let Some(item) = mine.and_then(RosterItem::cancel_from) {
                    self.put(user, item);
                }
            }
        }
        true
    }

    /// What the user's server sends after the stanza: an approved contact gets the
    /// user's current presence (§3.1.5), a cancelled one its unavailable (§3.2.2).
    fn after_sent(&mut self, user: &BareJid, contact: &BareJid, kind: Kind) {
        match kind {
            Kind::Subscribed => self.current_presence(user, contact),
            Kind::Unsubscribed => self.unavailable(user, contact),
            Kind::Subscribe | Kind::Unsubscribe => {}
        }
    }

    /// The contact's server, for what arrived from `from` (§3.1.3, §3.1.6,
    /// §3.3.3, §3.2.3): the owner's roster changes and its available resources
    /// are told; a stanza that changes nothing is ignored.
    fn contact_side(&mut self, owner: &BareJid, from: &BareJid, kind: Kind) {
        if !matches!(self.hub.store.account(owner), Ok(Some(_))) {
            // §3.1.3: no such user.
            if kind == Kind::Subscribe {
                self.route(owner, from, Kind::Unsubscribed);
            }
            return;
        }
        let item = self.item(owner, from);
        let changed = match kind {
            Kind::Subscribe => match item {
                // §3.4.2: pre-approved: granted now, and the owner is not asked.
                Some(i) if i.approved => {
                    if let Some(granted) = i.grant_pre_approved() {
                        self.put(owner, granted);
                    }
                    self.route(owner, from, Kind::Subscribed);
                    self.current_presence(owner, from);
                    return;
                }
                Some(i) if i.subscription.has_from() => {
                    // Already approved: answered on the owner's behalf, with its presence.
                    self.route(owner, from, Kind::Subscribed);
                    self.current_presence(owner, from);
                    return;
                }
                other => {
                    let mut i = other.unwrap_or_else(|| {
                        let mut fresh = RosterItem::new(from.clone());
                        fresh.hidden = true;
                        fresh
                    });
                    // A request again replaces what the last one carried.
                    if !i.pending_in || i.request != self.payload {
                        i.pending_in = true;
                        i.request = self.payload.clone();
                        self.put(owner, i);
                    }
                    true
                }
            },
            Kind::Subscribed => item.and_then(RosterItem::grant_to).map(|i| self.put(owner, i)).is_some(),
            Kind::Unsubscribe => item.and_then(RosterItem::cancel_from).map(|i| self.put(owner, i)).is_some(),
            Kind::Unsubscribed => item.and_then(RosterItem::cancel_to).map(|i| self.put(owner, i)).is_some(),
        };
        if !changed {
            return;
        }
        let payload = self.payload.as_deref().filter(|_| kind == Kind::Subscribe);
        self.send(owner.as_str(), with_payload(from.as_str(), owner.as_str(), kind.name(), payload));
        if kind == Kind::Unsubscribe {
            // §3.3.3: the unsubscriber stops seeing the owner.
            self.unavailable(owner, from);
        }
    }

    /// The last presence of each of `owner`'s available resources, to `to`.
    fn current_presence(&mut self, owner: &BareJid, to: &BareJid) {
        self.approved.push((owner.clone(), to.clone()));
        for s in self.hub.registry.sessions(owner).iter().filter(|s| s.available()) {
            if let Some(last) = s.last_presence.borrow().as_ref() {
                self.sends.push((to.as_str().to_string(), with_to(last, to.as_str())));
            }
        }
    }

    /// Unavailable from each of `owner`'s available resources, to `to`.
    fn unavailable(&mut self, owner: &BareJid, to: &BareJid) {
        for s in self.hub.registry.sessions(owner).iter().filter(|s| s.available()) {
            self.sends.push((to.as_str().to_string(), simple(s.jid.as_str(), to.as_str(), Some("unavailable"))));
        }
    }

    /// Stores the changes in one transaction, pushes them to each owner's
    /// interested resources, then sends the presence.
    fn finish(self, current: Option<&Rc<Session>>, out: &mut Vec<u8>) {
        let Exchange { hub, changes, sends, approved, .. } = self;
        if !changes.is_empty() {
            let owners: Vec<BareJid> = changes.iter().map(|(o, _)| o.clone()).collect();
            match hub.store.put_roster_items(changes) {
                Ok(stored) => {
                    for (owner, item) in owners.iter().zip(&stored) {
                        push_to_interested(hub, owner, item, current, out);
                    }
                }
                Err(StoreError::RosterFull) => log::debug!("a roster is full: subscription change not kept"),
                Err(e) => log::error!("rosters of {owners:?}: {e}"),
            }
        }
        for (to, bytes) in sends {
            deliver_to(hub, current, &to, bytes, out);
        }
        // XEP-0163 §4.3.2: an approved contact gets the last items it wants.
        for (owner, contact) in approved {
            crate::services::pep::subscription_approved(hub, &owner, &contact, current, out);
        }
    }
}
