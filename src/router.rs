//! One delivery pipeline for every origin (REVIEW A5): a local session, an
//! external component, a remote server, or a stanza routed again because the
//! session it was queued for closed (D1). [`Hub::send`] looks the addressee's
//! domain up in the address table ([`Hub::address`]), then delivers (RFC 6121
//! §8.5, written once), answers (the handler table), or bounces; an error always
//! goes back where the stanza came from, never into silence.
//!
//! The sender's `from` is stamped by its session (local) or was checked by its
//! stream (component, s2s); a stanza is forwarded by re-emitting it from its
//! view, never by copying input bytes. Presence from local sessions and to local
//! accounts from other servers and gateways is the presence module's (RFC 6121
//! §3–§4: subscriptions change rosters on the way).

use crate::components::Link;
use crate::handlers::{self, blocking, carbons, presence, IqReply, IqRequest, IqType};
use crate::hub::{Address, Hub};
use crate::jid::{BareJid, Domain, FullJid, Jid};
use crate::ns::{NS_CLIENT, NS_COMPONENT, NS_SERVER};
use crate::s2s::Bounce;
use crate::services::{mam, pep};
use crate::sessions::Session;
use crate::stanza::{Condition, Kind, StanzaError};
use crate::store::writer::Refusal;
use crate::xml::writer::{write_element, Override};
use crate::xml::Element;
use std::borrow::Cow;
use std::rc::Rc;

/// The resource a detached sender without one gets (never seen on the wire).
const DETACHED_RESOURCE: &str = "wrenhub-detached";

/// Where a stanza came from: decides who may send what, and where its errors go.
#[derive(Clone, Copy)]
pub enum Origin<'a> {
    /// A bound session of a local account (errors go to its own output).
    Local(&'a Rc<Session>),
    /// An external component (errors go to its own output).
    Component(&'a Rc<Link>),
    /// A remote server: the domain its inbound stream authenticated (errors go
    /// back over federation).
    Remote(&'a Domain),
    /// Queued for a session that ended before writing it: routed again as if it
    /// had just arrived, errors addressed to its sender.
    Redelivery,
}

impl Hub<'_> {
    /// Routes a stanza; replies for the sender's own stream are written to `out`.
    pub fn send(&self, origin: Origin<'_>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        let Some(kind) = Kind::of(stanza) else { return };
        let from: Cow<'_, str> = match origin {
            Origin::Local(session) => Cow::Borrowed(session.jid.as_str()),
            _ => Cow::Owned(stanza.attr("from").map(Cow::into_owned).unwrap_or_default()),
        };
        let to = stanza.attr("to").map(Cow::into_owned);
        let stanza_type = stanza.attr("type");
        let sender_bare = match origin {
            Origin::Local(session) => Some(session.jid.to_bare()),
            _ => None,
        };
        let delivery = Delivery {
            hub: *self,
            origin,
            stanza,
            kind,
            stanza_type: stanza_type.as_deref(),
            from: &from,
            sender_bare: sender_bare.as_ref(),
            to: to.as_deref(),
            out,
            archived_bytes: Default::default(),
        };
        delivery.run();
    }

    /// A stanza from a bound session.
    pub fn route(&self, sender: &Rc<Session>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        self.send(Origin::Local(sender), stanza, out);
    }

    /// A stanza from a component (its `from` already checked to lie within its
    /// domain).
    pub fn route_from_component(&self, link: &Rc<Link>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        self.send(Origin::Component(link), stanza, out);
    }

    /// A stanza from a remote server on an inbound s2s stream (its `from` domain
    /// authenticated on that stream, its `to` a domain served here).
    pub fn route_from_remote(&self, origin: &Domain, stanza: &Element<'_>) {
        self.send(Origin::Remote(origin), stanza, &mut Vec::new());
    }

    /// A stanza queued for a session that closed before writing it: delivered to
    /// another resource, else kept offline, else bounced to its sender, as RFC 6121
    /// §8.5.3.2 says for a resource that is gone (REVIEW D1). Never dropped, but
    /// for what RFC 6121 drops anyway (presence, errors, headlines).
    pub fn redeliver(&self, stanza: &Element<'_>) {
        self.send(Origin::Redelivery, stanza, &mut Vec::new());
    }

    /// What a built-in service at `service` (group chat) sends to `jid`: a local
    /// session, a remote user over federation from the service's own domain, or
    /// whoever else serves the domain. False when it was not taken: a local
    /// session's queue or the remote domain's is full (the service then removes
    /// that occupant).
    pub fn push_from_service(&self, service: &Domain, jid: &str, bytes: Vec<u8>) -> bool {
        let Ok(parsed) = jid.parse::<Jid>() else { return true };
        match self.address(parsed.domain()) {
            Address::Accounts => match &parsed {
                Jid::Full(full) => self.registry.get(full).is_none_or(|s| s.push(bytes).is_ok()),
                // A bare JID (an invitation): RFC 6121 §8.5 picks the resources,
                // or offline storage.
                Jid::Bare(_) => {
                    crate::xml::for_each_stanza(&bytes, |el| self.redeliver(el));
                    true
                }
            },
            Address::Remote(domain) => self.s2s.is_some_and(|s2s| s2s.send_from(service, &domain, bytes, None).is_ok()),
            _ => {
                self.send_bytes_to(jid, bytes);
                true
            }
        }
    }

    /// Sends bytes to whoever serves `jid`'s domain, with no answer expected (an
    /// error reply, a refusal): a local session, a component, or federation.
    pub fn send_bytes_to(&self, jid: &str, bytes: Vec<u8>) {
        let Ok(jid) = jid.parse::<Jid>() else { return };
        match self.address(jid.domain()) {
            Address::Accounts => {
                if let Jid::Full(full) = &jid {
                    if let Some(s) = self.registry.get(full) {
                        let _ = s.push(bytes);
                    }
                }
            }
            Address::Component(link) => {
                let _ = link.push(bytes);
            }
            Address::Muc => {
                if let Some(muc) = self.muc {
                    muc.handle_bytes(self, &bytes);
                }
            }
            Address::Remote(domain) => {
                if let Some(s2s) = self.s2s {
                    let _ = s2s.send(&domain, bytes, None);
                }
            }
            // The directory and the upload service expect no answers.
            Address::Directory | Address::Upload | Address::Proxy65 | Address::ComponentAbsent | Address::Nowhere => {}
        }
    }
}

/// One stanza on its way.
struct Delivery<'a, 'e> {
    hub: Hub<'a>,
    origin: Origin<'a>,
    stanza: &'a Element<'e>,
    kind: Kind,
    stanza_type: Option<&'a str>,
    /// The sender: stamped (local) or as its stream checked it.
    from: &'a str,
    /// A local sender's account.
    sender_bare: Option<&'a BareJid>,
    /// The address as the sender wrote it (the `from` of an error reply).
    to: Option<&'a str>,
    /// The sender's own output (local sessions and components).
    out: &'a mut Vec<u8>,
    /// [`Delivery::for_client`], made once for the archive: the sender's and
    /// the recipient's copies share it.
    archived_bytes: std::cell::OnceCell<std::sync::Arc<[u8]>>,
}

impl<'a> Delivery<'a, '_> {
    fn local_sender(&self) -> Option<&'a Rc<Session>> {
        match self.origin {
            Origin::Local(s) => Some(s),
            _ => None,
        }
    }

    fn run(mut self) {
        if self.kind == Kind::Iq && !valid_iq(self.stanza) {
            let text = "an iq needs an id, a type, and a get/set exactly one child";
            return self.bounce(StanzaError::with_text(Condition::BadRequest, text));
        }
        let to = match self.to.map(str::parse::<Jid>) {
            Some(Ok(j)) => j,
            Some(Err(e)) => return self.bounce(StanzaError::with_text(Condition::JidMalformed, e.to_string())),
            None => match (self.local_sender(), self.sender_bare) {
                // RFC 6120 §10.3: no 'to' is the sender's own account (and
                // presence without 'to' is a broadcast).
                (Some(sender), _) if self.kind == Kind::Presence => {
                    return presence::route(&self.hub, sender, self.stanza, self.out)
                }
                (Some(_), Some(me)) => return self.account_gets(me, None),
                _ => return self.bounce(StanzaError::new(Condition::JidMalformed)),
            },
        };
        // XEP-0191 §3.4: nothing goes to an address a local sender blocks.
        if self.sender_bare.is_some_and(|me| blocking::blocked(&self.hub, me, &to)) {
            if self.kind != Kind::Presence {
                self.bounce(blocking::outbound_error());
            }
            return;
        }
        let address = self.hub.address(to.domain());
        if let (Address::Accounts, Some(_)) = (&address, to.local()) {
            if self.recipient_blocks_sender(&to.to_bare()) {
                return;
            }
        }
        let mut sent_stamp = None;
        if let (Some(me), Kind::Message) = (self.sender_bare, self.kind) {
            // XEP-0313: what a local account sends is in its own archive.
            if self.hub.mam.is_some() && mam::archivable(self.stanza) {
                sent_stamp = mam::sent(&self.hub, me, to.as_str(), self.stanza, self.archived_bytes());
            }
        }
        if let Some(sender) = self.local_sender() {
            if self.kind == Kind::Message && carbons::eligible(self.stanza) {
                // XEP-0280 §6: the sender's other resources see what it sent
                // (with its stanza-id in the sender's archive).
                let own = self.sender_bare.map(|me| self.hub.registry.sessions(me)).unwrap_or_default();
                let copy = carbons::Copy { direction: "sent", message: self.stanza, from: self.from };
                carbons::copy_to(&own, &[sender], &copy, sent_stamp.as_ref(), sender, self.out);
            }
        }
        match address {
            // Presence to a gateway's users is the presence module's too: their
            // subscriptions are on the user's roster, directed presence is tracked.
            Address::Component(_) if self.kind == Kind::Presence && self.local_sender().is_some() => {
                if let Some(sender) = self.local_sender() {
                    presence::route(&self.hub, sender, self.stanza, self.out)
                }
            }
            // Presence from a local session is the presence module's first (it
            // tracks directed presence, so the room hears when the session ends).
            Address::Muc if self.kind == Kind::Presence && self.local_sender().is_some() => {
                if let Some(sender) = self.local_sender() {
                    presence::route(&self.hub, sender, self.stanza, self.out)
                }
            }
            Address::Muc => {
                if let Some(muc) = self.hub.muc {
                    muc.handle(&self.hub, self.from, self.stanza);
                }
            }
            Address::Directory => {
                if let Some(directory) = self.hub.directory {
                    directory.handle(&self.hub, self.from, self.stanza);
                }
            }
            Address::Upload => {
                if let Some(upload) = self.hub.upload {
                    upload.handle(&self.hub, self.from, self.stanza);
                }
            }
            Address::Proxy65 => {
                if let Some(proxy) = self.hub.proxy65 {
                    proxy.handle(&self.hub, self.from, self.stanza);
                }
            }
            Address::Component(link) => self.forward_to_component(&link),
            Address::ComponentAbsent => {
                let e = StanzaError::with_text(Condition::ServiceUnavailable, "the gateway is not connected");
                self.bounce(e)
            }
            Address::Nowhere => self.bounce(StanzaError::new(Condition::RemoteServerNotFound)),
            Address::Remote(domain) => match self.origin {
                Origin::Local(sender) if self.kind == Kind::Presence => {
                    presence::route(&self.hub, sender, self.stanza, self.out)
                }
                Origin::Local(_) => self.forward_to_remote(&domain),
                // No relaying: other servers and gateways reach what is served here.
                _ => self.bounce(StanzaError::new(Condition::RemoteServerNotFound)),
            },
            Address::Accounts => match (self.origin, self.kind) {
                (Origin::Local(sender), Kind::Presence) => presence::route(&self.hub, sender, self.stanza, self.out),
                (Origin::Remote(_) | Origin::Component(_), Kind::Presence) => {
                    presence::inbound(&self.hub, self.stanza, self.from, &to)
                }
                _ => match &to {
                    j if j.local().is_none() => self.server_answers(),
                    Jid::Bare(bare) => self.account_gets(bare, None),
                    Jid::Full(full) => self.account_gets(&full.to_bare(), Some(full)),
                },
            },
        }
    }

    /// XEP-0191 §3.5: nothing reaches an account from an address it blocks (the
    /// sender hears `service-unavailable`, as if there were no such account).
    /// Presence from local sessions and other servers is checked by the presence
    /// module, which drops it silently.
    fn recipient_blocks_sender(&mut self, owner: &BareJid) -> bool {
        let presence_checked_later =
            self.kind == Kind::Presence && matches!(self.origin, Origin::Local(_) | Origin::Remote(_));
        if presence_checked_later || self.sender_bare == Some(owner) {
            return false;
        }
        let sender = match self.origin {
            Origin::Local(s) => Jid::Full(s.jid.clone()),
            _ => match self.from.parse::<Jid>() {
                Ok(j) => j,
                Err(_) => return false,
            },
        };
        if !blocking::blocked(&self.hub, owner, &sender) {
            return false;
        }
        if self.kind != Kind::Presence {
            self.bounce(StanzaError::new(Condition::ServiceUnavailable));
        }
        true
    }

    /// RFC 6120 §10.3 / RFC 6121 §8.5.1: the server answers for itself.
    fn server_answers(&mut self) {
        match self.kind {
            Kind::Iq => self.server_iq(None),
            Kind::Message => self.bounce(StanzaError::new(Condition::ServiceUnavailable)),
            // Presence to the server itself carries nothing to act on yet.
            Kind::Presence => {}
        }
    }

    /// An iq for the server itself (`on_behalf_of` = None) or for an account on its
    /// behalf, dispatched through the handler table (`handlers::HANDLERS`). Other
    /// servers and components get the handlers marked `for_remote`.
    fn server_iq(&mut self, on_behalf_of: Option<&BareJid>) {
        let iq_type = match self.stanza_type {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            // The server's own queries: XEP-0115 caps for PEP (answered or
            // refused, by a local or a remote resource), and the offline batch
            // the client has (XEP-0160, D2).
            Some(t @ ("result" | "error")) if on_behalf_of.is_none() => {
                let Some(id) = self.stanza.attr("id") else { return };
                match self.origin {
                    Origin::Local(sender) if id.starts_with(pep::caps::QUERY_ID_PREFIX) => {
                        pep::caps_answered(&self.hub, sender.jid.as_str(), Some(sender), self.stanza, self.out)
                    }
                    Origin::Local(sender) if t == "result" => {
                        handlers::offline::acknowledged(&self.hub, sender, &id, self.out)
                    }
                    Origin::Remote(_) if id.starts_with(pep::caps::QUERY_ID_PREFIX) => {
                        pep::caps_answered(&self.hub, self.from, None, self.stanza, &mut Vec::new())
                    }
                    _ => {}
                }
                return;
            }
            // Answers to nothing the server asked: dropped (RFC 6120 §8.2.3).
            _ => return,
        };
        let Some(payload) = self.stanza.children().next() else { return };
        let local = self.local_sender().is_some();
        let handler = handlers::find(&payload).filter(|h| local || h.for_remote).filter(|h| {
            if on_behalf_of.is_some() {
                h.for_account
            } else {
                h.for_server
            }
        });
        let Some(handler) = handler else {
            return self.bounce(StanzaError::new(Condition::ServiceUnavailable));
        };
        // Another server's entity is, to the handlers, a session no one else can see
        // or reach.
        let detached;
        let sender = match self.origin {
            Origin::Local(sender) => sender,
            Origin::Redelivery => return,
            // A domain or bare sender (a gateway, a remote server) gets a resource
            // only the handlers see; the answer goes to `from` as it was.
            Origin::Component(_) | Origin::Remote(_) => match self
                .from
                .parse::<FullJid>()
                .or_else(|_| format!("{}/{DETACHED_RESOURCE}", self.from).parse::<FullJid>())
            {
                Ok(jid) => {
                    detached = Rc::new(Session::detached(jid));
                    &detached
                }
                Err(_) => return self.bounce(StanzaError::new(Condition::ServiceUnavailable)),
            },
        };
        let request = IqRequest { iq_type, payload, sender, on_behalf_of };
        let mut pushes = Vec::new();
        let reply = (handler.handle)(&self.hub, &request, &mut pushes);
        let id = self.stanza.attr("id");
        let mut bytes = Vec::with_capacity(256);
        match reply {
            IqReply::Result(payload) => {
                handlers::write_result(id.as_deref(), self.to, self.from, payload.as_deref(), &mut bytes)
            }
            IqReply::ResultAfter(before, payload) => {
                if local {
                    bytes.extend_from_slice(&before);
                }
                handlers::write_result(id.as_deref(), self.to, self.from, payload.as_deref(), &mut bytes)
            }
            IqReply::ResultThen(stanzas) => {
                handlers::write_result(id.as_deref(), self.to, self.from, None, &mut bytes);
                if local {
                    stanzas.iter().for_each(|s| bytes.extend_from_slice(s));
                }
            }
            IqReply::Error(e) => return self.bounce(e),
        }
        // Pushes a handler sent to a local sender itself follow its answer.
        if local {
            bytes.extend_from_slice(&pushes);
        }
        self.reply(bytes);
    }

    /// RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID) for a local account.
    fn account_gets(&mut self, bare: &BareJid, full: Option<&FullJid>) {
        let sessions = self.hub.registry.sessions(bare);
        let exists = !sessions.is_empty() || matches!(self.hub.store.account(bare), Ok(Some(_)));
        if !exists {
            // §8.5.2.2.1 / §8.5.3.1: no such account.
            if self.kind != Kind::Presence {
                self.bounce(StanzaError::new(Condition::ServiceUnavailable));
            }
            return;
        }
        let stanza_type = self.stanza_type;
        if let Some(full) = full {
            if let Some(session) = sessions.iter().find(|s| s.jid == *full) {
                let (bytes, stamp) = self.archived_for(bare);
                self.deliver_bytes(&[session], bytes);
                if self.kind == Kind::Message && carbons::eligible(self.stanza) {
                    self.carbons_received(&sessions, &[session], stamp.as_ref());
                }
                return;
            }
            // §8.5.3.2: no such resource. A message (but groupchat) goes as if to
            // the bare JID; presence is the presence module's or dropped.
            match self.kind {
                Kind::Message if stanza_type != Some("groupchat") => {}
                Kind::Presence => return,
                _ => return self.bounce(StanzaError::new(Condition::ServiceUnavailable)),
            }
        }
        match self.kind {
            // §8.5.2.1.3: an iq to a bare JID is answered by the server on its behalf.
            // The handlers decide what another account may ask (a vCard yes, a
            // roster no); anything they don't answer is service-unavailable.
            Kind::Iq => self.server_iq(Some(bare)),
            Kind::Presence => {
                let available: Vec<&Rc<Session>> = sessions.iter().filter(|s| s.available()).collect();
                self.deliver(&available);
            }
            Kind::Message => {
                let available: Vec<&Rc<Session>> =
                    sessions.iter().filter(|s| s.available() && s.priority.get().is_some_and(|p| p >= 0)).collect();
                let targets: Vec<&Rc<Session>> = match stanza_type {
                    Some("error") => return,
                    // §8.5.2.1.2 / §8.5.2.2.1: not for an account's bare JID.
                    Some("groupchat") => return self.bounce(StanzaError::new(Condition::ServiceUnavailable)),
                    Some("headline") => available,
                    // chat / normal: the resources with the highest priority (§8.5.2.1.1).
                    _ => {
                        let top = available.iter().filter_map(|s| s.priority.get()).max();
                        available.into_iter().filter(|s| s.priority.get() == top).collect()
                    }
                };
                let (bytes, stamp) =
                    if stanza_type == Some("headline") { (self.for_client(), None) } else { self.archived_for(bare) };
                if targets.is_empty() {
                    // §8.5.2.2.1: a headline for nobody is dropped silently, and so is
                    // what offline storage does not keep (chat states, receipts: R8).
                    if stanza_type != Some("headline") && handlers::offline::eligible(self.stanza) {
                        self.store_offline(bare, bytes);
                    }
                    return;
                }
                self.deliver_bytes(&targets, bytes);
                if carbons::eligible(self.stanza) {
                    self.carbons_received(&sessions, &targets, stamp.as_ref());
                }
            }
        }
    }

    /// The stanza as a local session receives it.
    fn for_client(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256);
        match self.origin {
            Origin::Local(sender) => {
                write_element(&mut bytes, self.stanza, NS_CLIENT, None, &[Override::Set("from", sender.jid.as_str())])
            }
            _ => write_element(&mut bytes, self.stanza, NS_CLIENT, Some(NS_CLIENT), &[]),
        }
        bytes
    }

    /// The message as its local recipient `owner` gets it: archived for it
    /// (XEP-0313) with its stanza-id when it is a message the archive keeps. A
    /// redelivered message was archived when it first arrived.
    fn archived_for(&self, owner: &BareJid) -> (Vec<u8>, Option<mam::Stamp>) {
        let skip = self.hub.mam.is_none() || self.kind != Kind::Message || matches!(self.origin, Origin::Redelivery);
        if skip || !mam::archivable(self.stanza) {
            return (self.for_client(), None);
        }
        mam::received(&self.hub, owner, self.from, self.stanza, self.archived_bytes())
    }

    /// The message as a client gets it, once for all of its archive copies.
    fn archived_bytes(&self) -> std::sync::Arc<[u8]> {
        self.archived_bytes.get_or_init(|| self.for_client().into()).clone()
    }

    /// Into the recipients' queues (a local sender's own session: its output). A
    /// full queue refuses the stanza and the sender hears of it (S5), never the
    /// recipient.
    fn deliver(&mut self, targets: &[&Rc<Session>]) {
        let bytes = self.for_client();
        self.deliver_bytes(targets, bytes);
    }

    /// [`Delivery::deliver`] of these bytes (the stanza as the recipients get it).
    fn deliver_bytes(&mut self, targets: &[&Rc<Session>], mut bytes: Vec<u8>) {
        if targets.is_empty() {
            return;
        }
        let mut refused = false;
        for (i, target) in targets.iter().enumerate() {
            let bytes = if i + 1 == targets.len() { std::mem::take(&mut bytes) } else { bytes.clone() };
            if self.local_sender().is_some_and(|s| Rc::ptr_eq(s, target)) {
                self.out.extend_from_slice(&bytes);
            } else if target.push(bytes).is_err() {
                refused = true;
            }
        }
        if refused && self.kind != Kind::Presence {
            self.bounce(StanzaError::with_text(Condition::ResourceConstraint, "the recipient is not reading"));
        }
    }

    /// XEP-0280 §6: the account's other resources see what it received (a
    /// redelivered message had its copies when it first arrived).
    /// They carry the stanza-id the message got in the account's archive.
    fn carbons_received(&mut self, sessions: &[Rc<Session>], targets: &[&Rc<Session>], stamp: Option<&mam::Stamp>) {
        let copy = carbons::Copy { direction: "received", message: self.stanza, from: self.from };
        match self.origin {
            Origin::Local(sender) => carbons::copy_to(sessions, targets, &copy, stamp, sender, self.out),
            Origin::Redelivery => {}
            _ => carbons::copy_inbound(sessions, targets, &copy, stamp),
        }
    }

    /// XEP-0160: keeps a chat/normal message for an account with no available
    /// resource, durably before anything else happens on the sender's stream (it
    /// waits for the store writer's batch); when the quota is reached the sender
    /// gets `service-unavailable`, never silence.
    fn store_offline(&mut self, owner: &BareJid, bytes: Vec<u8>) {
        let text = "the recipient is offline and its offline storage is full";
        let mut e = StanzaError::with_text(Condition::ServiceUnavailable, text);
        e.by = Some(self.hub.domain.as_str().to_string());
        let mut answer = Vec::with_capacity(300);
        e.write_reply(self.stanza, self.from, self.to, &mut answer);
        let refusal = match self.origin {
            Origin::Local(_) | Origin::Component(_) => Refusal::Out(answer),
            Origin::Remote(domain) => Refusal::Remote(domain.clone(), answer),
            Origin::Redelivery => Refusal::To(self.from.to_string(), answer),
        };
        let wait = !matches!(self.origin, Origin::Redelivery);
        let now = crate::clock::now_unix();
        self.hub.store.queue_offline(owner, now, bytes, self.hub.limits.offline, refusal, wait);
    }

    /// Into a component's queue, in its content namespace (XEP-0114).
    fn forward_to_component(&mut self, link: &Rc<Link>) {
        if let Origin::Component(me) = self.origin {
            if Rc::ptr_eq(me, link) {
                // A component's stanza to its own domain would come straight back.
                return self.bounce(StanzaError::new(Condition::RemoteServerNotFound));
            }
        }
        let mut bytes = Vec::with_capacity(256);
        let from = [Override::Set("from", self.from)];
        write_element(&mut bytes, self.stanza, NS_COMPONENT, Some(NS_COMPONENT), &from);
        if link.push(bytes).is_err() && self.kind != Kind::Presence {
            self.bounce(StanzaError::with_text(Condition::ResourceConstraint, "the component is not reading"));
        }
    }

    /// Over federation (local senders only), re-emitted in `jabber:server`.
    fn forward_to_remote(&mut self, domain: &Domain) {
        let Some(s2s) = self.hub.s2s else {
            let e = StanzaError::with_text(Condition::RemoteServerNotFound, "federation is not enabled on this server");
            return self.bounce(e);
        };
        let mut bytes = Vec::with_capacity(256);
        let from = [Override::Set("from", self.from)];
        write_element(&mut bytes, self.stanza, NS_SERVER, Some(NS_SERVER), &from);
        let answered = matches!(self.stanza_type, Some("error") | Some("result"));
        let bounce = (self.kind != Kind::Presence && !answered).then(|| Bounce {
            kind: self.kind,
            from: self.from.to_string(),
            to: self.to.unwrap_or_default().to_string(),
            id: self.stanza.attr("id").map(Cow::into_owned),
        });
        if let Err(e) = s2s.send(domain, bytes, bounce) {
            self.bounce(e.stanza_error());
        }
    }

    /// Bytes for the sender: its own output, its server's link, or (a
    /// redelivery) wherever its address is served.
    fn reply(&mut self, bytes: Vec<u8>) {
        match self.origin {
            Origin::Local(_) | Origin::Component(_) => self.out.extend_from_slice(&bytes),
            Origin::Remote(domain) => {
                if let Some(s2s) = self.hub.s2s {
                    let _ = s2s.send(domain, bytes, None);
                }
            }
            Origin::Redelivery => self.hub.send_bytes_to(self.from, bytes),
        }
    }

    /// An error reply to the sender (RFC 6120 §8.3), never for an error or a
    /// result.
    fn bounce(&mut self, mut e: StanzaError) {
        if self.kind == Kind::Iq && self.stanza_type == Some("result") {
            return;
        }
        e.by = Some(self.hub.domain.as_str().to_string());
        let mut bytes = Vec::with_capacity(300);
        if e.write_reply(self.stanza, self.from, self.to, &mut bytes) {
            self.reply(bytes);
        }
    }
}

/// RFC 6120 §8.2.3: an iq has an id and a type; get and set carry exactly one child.
fn valid_iq(iq: &Element<'_>) -> bool {
    let children = iq.children().count();
    iq.attr("id").is_some()
        && match iq.attr("type").as_deref() {
            Some("get") | Some("set") => children == 1,
            Some("result") => children <= 1,
            Some("error") => true,
            _ => false,
        }
}
