//! Who gets a stanza (RFC 6120 §8.5 core rules, with RFC 6121 §8.5 where it
//! decides between the resources of a local account). The sender's `from` is
//! stamped by the session, never trusted from input; a stanza is forwarded by
//! re-emitting it from its view, never by copying input bytes.
//!
//! Until presence (RFC 6121), offline storage and federation arrive, a stanza with
//! nowhere to go gets an error back (`service-unavailable`,
//! `remote-server-not-found`), never a silent drop.

use crate::components::{ComponentRegistry, Link};
use crate::config::ComponentConfig;
use crate::handlers::{self, blocking, carbons, ImLimits, IqReply, IqRequest, IqType, Services};
use crate::jid::{BareJid, Domain, FullJid, Jid};
use crate::ns::NS_CLIENT;
use crate::ns::NS_COMPONENT;
use crate::ns::NS_SERVER;
use crate::s2s::{Bounce, S2s};
use crate::sessions::{QueueFull, Registry, Session};
use crate::stanza::{Condition, Kind, StanzaError};
use crate::store::writer::Refusal;
use crate::store::Store;
use crate::xml::writer::{write_element, Override};
use crate::xml::Element;
use std::rc::Rc;

/// What the router needs to know.
pub struct Router<'a> {
    pub domain: &'a Domain,
    pub registry: &'a Registry,
    pub store: &'a Store,
    pub limits: ImLimits,
    pub components: &'a ComponentRegistry,
    pub configured_components: &'a [ComponentConfig],
    /// Federation, when enabled.
    pub s2s: Option<&'a S2s>,
}

/// Where an inbound stanza came from.
enum Origin<'l> {
    Component(&'l Rc<Link>),
    /// A remote server (the authenticated domain of the inbound stream).
    Remote(&'l Domain),
    /// A stanza that was queued for a session that ended before writing it: routed
    /// again as if it had just arrived (REVIEW D1).
    Redelivery,
}

/// Where a stanza is addressed.
enum Target {
    /// The server itself (its domain, or no `to` on an iq).
    Server,
    /// A local account (bare) or one of its resources (full).
    Local(BareJid, Option<FullJid>),
    /// An external component's domain (XEP-0114).
    Component(Rc<Link>),
    /// Another domain.
    Remote,
}

impl Router<'_> {
    fn services(&self) -> Services<'_> {
        Services {
            domain: self.domain,
            store: self.store,
            registry: self.registry,
            limits: self.limits,
            components: self.components,
            s2s: self.s2s,
        }
    }

    /// Routes one stanza from a bound session. Replies from the server are written
    /// to `out` (the sender's own output).
    pub fn route(&self, sender: &Rc<Session>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        let Some(kind) = Kind::of(stanza) else { return };
        let stanza_type = stanza.attr("type");
        let stanza_type = stanza_type.as_deref();
        if kind == Kind::Iq && !valid_iq(stanza) {
            self.error(
                stanza,
                sender,
                None,
                StanzaError::with_text(
                    Condition::BadRequest,
                    "an iq needs an id, a type, and a get/set exactly one child",
                ),
                out,
            );
            return;
        }
        if kind == Kind::Presence {
            handlers::presence::route(&self.services(), sender, stanza, out);
            return;
        }
        let to = match stanza.attr("to") {
            None => None,
            Some(to) => match to.parse::<Jid>() {
                Ok(j) => Some(j),
                Err(e) => {
                    self.error(
                        stanza,
                        sender,
                        None,
                        StanzaError::with_text(Condition::JidMalformed, e.to_string()),
                        out,
                    );
                    return;
                }
            },
        };
        let to_text = to.as_ref().map(|j| j.as_str().to_string());
        let target = match &to {
            // §10.3.3: an iq without 'to' is handled on behalf of the sender's account.
            None if kind == Kind::Iq => Target::Local(sender.jid.to_bare(), None),
            None => Target::Local(sender.jid.to_bare(), None),
            Some(j) if j.domain() != self.domain.as_str() => match self.components.serving(j.domain()) {
                Some(link) => Target::Component(link),
                None => Target::Remote,
            },
            Some(j) if j.local().is_none() => Target::Server,
            Some(Jid::Bare(b)) => Target::Local(b.clone(), None),
            Some(Jid::Full(f)) => Target::Local(f.to_bare(), Some(f.clone())),
        };
        let sender_bare = sender.jid.to_bare();
        let services = self.services();
        // XEP-0191 §3.4: nothing goes to an address the sender blocks...
        if to.as_ref().is_some_and(|j| blocking::blocked(&services, &sender_bare, j)) {
            self.error(stanza, sender, to_text.as_deref(), blocking::outbound_error(), out);
            return;
        }
        // ...and §3.5: nothing reaches an account from an address it blocks.
        if let Target::Local(bare, _) = &target {
            if bare != &sender_bare && blocking::blocked(&services, bare, &Jid::Full(sender.jid.clone())) {
                self.error(stanza, sender, to_text.as_deref(), StanzaError::new(Condition::ServiceUnavailable), out);
                return;
            }
        }
        if kind == Kind::Message && carbons::eligible(stanza) {
            // XEP-0280 §6: the sender's other resources see what it sent.
            let own = self.registry.sessions(&sender.jid.to_bare());
            carbons::copy_to(&own, &[sender], "sent", stanza, sender.jid.as_str(), sender, out);
        }
        match target {
            Target::Component(link) => {
                if self.to_component(&link, stanza, sender.jid.as_str()).is_err() {
                    let e = StanzaError::with_text(Condition::ResourceConstraint, "the component is not reading");
                    self.error(stanza, sender, to_text.as_deref(), e, out);
                }
            }
            Target::Remote if self.configured_component(to.as_ref().map(|j| j.domain()).unwrap_or("")) => {
                let e = StanzaError::with_text(Condition::ServiceUnavailable, "the gateway is not connected");
                self.error(stanza, sender, to_text.as_deref(), e, out);
            }
            Target::Remote => {
                if let Some(to) = &to {
                    self.to_remote(kind, stanza, sender, to, out);
                }
            }
            Target::Server => self.to_server(kind, stanza, sender, to_text.as_deref(), out),
            Target::Local(bare, full) => {
                self.to_local(kind, stanza_type, stanza, sender, &bare, full.as_ref(), to_text.as_deref(), out)
            }
        }
    }

    /// §8.5.1 / §10.3: the server answers for itself (and for an account, on its behalf).
    fn to_server(&self, kind: Kind, stanza: &Element<'_>, sender: &Rc<Session>, to: Option<&str>, out: &mut Vec<u8>) {
        match kind {
            Kind::Iq => self.server_iq(stanza, sender, None, to, out),
            Kind::Message => {
                self.error(stanza, sender, to, StanzaError::new(Condition::ServiceUnavailable), out);
            }
            // Presence to the server itself carries nothing to act on yet.
            Kind::Presence => {}
        }
    }

    /// An iq for the server itself (`on_behalf_of` = None) or for an account on its
    /// behalf: dispatched through the handler table (`handlers::HANDLERS`).
    fn server_iq(
        &self,
        iq: &Element<'_>,
        sender: &Rc<Session>,
        on_behalf_of: Option<&BareJid>,
        to: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let iq_type = match iq.attr("type").as_deref() {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            // The client has the offline batch it was sent (XEP-0160, D2).
            Some("result") if on_behalf_of.is_none() => {
                if let Some(id) = iq.attr("id") {
                    handlers::offline::acknowledged(&self.services(), sender, &id, out);
                }
                return;
            }
            // Answers to nothing the server asked: dropped (§8.2.3).
            _ => return,
        };
        let Some(payload) = iq.children().next() else { return };
        let handler =
            handlers::find(&payload).filter(|h| if on_behalf_of.is_some() { h.for_account } else { h.for_server });
        let Some(handler) = handler else {
            self.error(iq, sender, to, StanzaError::new(Condition::ServiceUnavailable), out);
            return;
        };
        let services = self.services();
        let request = IqRequest { iq_type, payload, sender, on_behalf_of };
        let mut pushes = Vec::new();
        let reply = (handler.handle)(&services, &request, &mut pushes);
        let id = iq.attr("id");
        match reply {
            IqReply::Result(payload) => {
                handlers::write_result(id.as_deref(), to, sender.jid.as_str(), payload.as_deref(), out)
            }
            IqReply::ResultThen(stanzas) => {
                handlers::write_result(id.as_deref(), to, sender.jid.as_str(), None, out);
                for s in stanzas {
                    out.extend_from_slice(&s);
                }
            }
            IqReply::Error(e) => self.error(iq, sender, to, e, out),
        }
        // Pushes a handler sent to the sender itself follow its answer.
        out.extend_from_slice(&pushes);
    }

    #[allow(clippy::too_many_arguments)]
    fn to_local(
        &self,
        kind: Kind,
        stanza_type: Option<&str>,
        stanza: &Element<'_>,
        sender: &Rc<Session>,
        bare: &BareJid,
        full: Option<&FullJid>,
        to: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let sessions = self.registry.sessions(bare);
        let exists = !sessions.is_empty() || matches!(self.store.account(bare), Ok(Some(_)));
        if !exists {
            // RFC 6121 §8.5.2.2.1: no such account.
            if kind != Kind::Presence {
                self.error(stanza, sender, to, StanzaError::new(Condition::ServiceUnavailable), out);
            }
            return;
        }
        if let Some(full) = full {
            if let Some(session) = sessions.iter().find(|s| s.jid == *full) {
                self.deliver(stanza, sender, session, to, out);
                if kind == Kind::Message && carbons::eligible(stanza) {
                    carbons::copy_to(&sessions, &[session], "received", stanza, sender.jid.as_str(), sender, out);
                }
                return;
            }
            // RFC 6121 §8.5.3.2: no such resource.
            match kind {
                Kind::Message if stanza_type != Some("groupchat") => {}
                Kind::Presence => return,
                _ => {
                    self.error(stanza, sender, to, StanzaError::new(Condition::ServiceUnavailable), out);
                    return;
                }
            }
        }
        match kind {
            // §8.5.2.1.3: an iq to a bare JID is answered by the server on its behalf.
            // The handlers decide what another account may ask (a vCard yes, a
            // roster no); anything they don't answer is service-unavailable.
            Kind::Iq => self.server_iq(stanza, sender, Some(bare), to, out),
            Kind::Presence => {
                for s in sessions.iter().filter(|s| s.available()) {
                    self.deliver(stanza, sender, s, to, out);
                }
            }
            Kind::Message => {
                let available: Vec<&Rc<Session>> =
                    sessions.iter().filter(|s| s.priority.get().is_some_and(|p| p >= 0)).collect();
                let targets: Vec<&Rc<Session>> = match stanza_type {
                    Some("error") => return,
                    Some("groupchat") => {
                        self.error(stanza, sender, to, StanzaError::new(Condition::ServiceUnavailable), out);
                        return;
                    }
                    Some("headline") => available,
                    // chat / normal: the resources with the highest priority (§8.5.2.1.1).
                    _ => {
                        let top = available.iter().filter_map(|s| s.priority.get()).max();
                        available.into_iter().filter(|s| s.priority.get() == top).collect()
                    }
                };
                if targets.is_empty() {
                    // §8.5.2.2.1: a headline for nobody is dropped silently, and so is
                    // what offline storage does not keep (chat states, receipts: R8).
                    if stanza_type != Some("headline") && handlers::offline::eligible(stanza) {
                        self.store_offline(stanza, sender, bare, to);
                    }
                    return;
                }
                for s in &targets {
                    self.deliver(stanza, sender, s, to, out);
                }
                if carbons::eligible(stanza) {
                    carbons::copy_to(&sessions, &targets, "received", stanza, sender.jid.as_str(), sender, out);
                }
            }
        }
    }

    /// XEP-0160: keeps a chat/normal message for an account with no available
    /// resource, durably before anything else happens on this stream (the stream
    /// waits for the store writer's batch); when the quota is reached the sender
    /// gets `service-unavailable`, never silence.
    fn store_offline(&self, stanza: &Element<'_>, sender: &Rc<Session>, owner: &BareJid, to: Option<&str>) {
        let mut bytes = Vec::with_capacity(256);
        write_element(&mut bytes, stanza, NS_CLIENT, None, &[Override::Set("from", sender.jid.as_str())]);
        // The store writer commits it with others (S9); this stream reads on only
        // once it is durable, and writes this answer should the quota refuse it.
        let text = "the recipient is offline and its offline storage is full";
        let mut refusal = Vec::new();
        self.error(stanza, sender, to, StanzaError::with_text(Condition::ServiceUnavailable, text), &mut refusal);
        let now = crate::clock::now_unix();
        self.store.queue_offline(owner, now, bytes, self.limits.offline, Refusal::Out(refusal), true);
    }

    /// Is a domain (or a parent of it) configured for a component?
    fn configured_component(&self, domain: &str) -> bool {
        self.configured_components.iter().any(|c| {
            let d = c.domain.as_str();
            domain == d || domain.strip_suffix(d).is_some_and(|r| r.ends_with('.'))
        })
    }

    /// Re-emits a stanza into a component's queue, in its content namespace.
    fn to_component(&self, link: &Link, stanza: &Element<'_>, from: &str) -> Result<(), QueueFull> {
        let mut bytes = Vec::with_capacity(256);
        write_element(&mut bytes, stanza, NS_COMPONENT, Some(NS_COMPONENT), &[Override::Set("from", from)]);
        link.push(bytes)
    }

    /// A stanza from a component (its `from` already checked to lie within its
    /// domain): to local accounts, to another component, or an error back.
    pub fn route_from_component(&self, link: &Rc<Link>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        self.route_inbound(Origin::Component(link), stanza, out);
    }

    /// A stanza from a remote server on an inbound s2s stream (its `from` domain
    /// authenticated on that stream, its `to` a domain served here). Errors go
    /// back over the outbound link to the sender's domain.
    pub fn route_from_remote(&self, origin: &Domain, stanza: &Element<'_>) {
        let mut unused = Vec::new();
        self.route_inbound(Origin::Remote(origin), stanza, &mut unused);
    }

    /// A stanza queued for a session that closed before writing it: delivered to
    /// another resource, else kept offline, else bounced to its sender, as RFC 6121
    /// §8.5.3.2 says for a resource that is gone (REVIEW D1). Never dropped, but
    /// for what RFC 6121 drops anyway (presence, errors, headlines).
    pub fn redeliver(&self, stanza: &Element<'_>) {
        let mut unused = Vec::new();
        self.route_inbound(Origin::Redelivery, stanza, &mut unused);
    }

    /// The answer to an inbound message the offline quota refuses, addressed the
    /// way [`Router::bounce_inbound`] would send it.
    fn inbound_refusal(&self, origin: &Origin<'_>, stanza: &Element<'_>) -> Refusal {
        let from = stanza.attr("from").map(|f| f.into_owned()).unwrap_or_default();
        let to = stanza.attr("to").map(|t| t.into_owned());
        let mut e = StanzaError::with_text(Condition::ServiceUnavailable, "the recipient is offline");
        e.by = Some(self.domain.as_str().to_string());
        let mut bytes = Vec::with_capacity(300);
        if !e.write_reply(stanza, &from, to.as_deref(), &mut bytes) {
            return Refusal::Out(Vec::new());
        }
        match origin {
            Origin::Component(_) => Refusal::Out(bytes),
            Origin::Remote(domain) => Refusal::Remote((*domain).clone(), bytes),
            Origin::Redelivery => match from.parse::<Jid>() {
                Ok(Jid::Full(full)) if full.domain() == self.domain.as_str() => Refusal::Local(full, bytes),
                Ok(sender) => match sender.domain().parse::<Domain>() {
                    Ok(domain) => Refusal::Remote(domain, bytes),
                    Err(_) => Refusal::Out(Vec::new()),
                },
                Err(_) => Refusal::Out(Vec::new()),
            },
        }
    }

    /// Sends a stanza error back to where an inbound stanza came from.
    fn bounce_inbound(&self, origin: &Origin<'_>, stanza: &Element<'_>, mut e: StanzaError, out: &mut Vec<u8>) {
        let from = stanza.attr("from").map(|f| f.into_owned()).unwrap_or_default();
        let to = stanza.attr("to").map(|t| t.into_owned());
        match origin {
            Origin::Component(_) => {
                e.write_reply(stanza, &from, to.as_deref(), out);
            }
            Origin::Remote(domain) => {
                e.by = Some(self.domain.as_str().to_string());
                let mut bytes = Vec::with_capacity(300);
                if e.write_reply(stanza, &from, to.as_deref(), &mut bytes) {
                    if let Some(s2s) = self.s2s {
                        let _ = s2s.send(domain, bytes, None);
                    }
                }
            }
            Origin::Redelivery => {
                e.by = Some(self.domain.as_str().to_string());
                let mut bytes = Vec::with_capacity(300);
                if !e.write_reply(stanza, &from, to.as_deref(), &mut bytes) {
                    return;
                }
                let Ok(sender) = from.parse::<Jid>() else { return };
                if sender.domain() == self.domain.as_str() {
                    if let Jid::Full(full) = &sender {
                        if let Some(s) = self.registry.get(full) {
                            let _ = s.push(bytes);
                        }
                    }
                } else if let Some(link) = self.components.serving(sender.domain()) {
                    let _ = link.push(bytes);
                } else if let (Some(s2s), Ok(domain)) = (self.s2s, sender.domain().parse::<Domain>()) {
                    let _ = s2s.send(&domain, bytes, None);
                }
            }
        }
    }

    /// Routing for stanzas that come from outside (a component or a remote server).
    fn route_inbound(&self, origin: Origin<'_>, stanza: &Element<'_>, out: &mut Vec<u8>) {
        let Some(kind) = Kind::of(stanza) else { return };
        let from = stanza.attr("from").map(|f| f.into_owned()).unwrap_or_default();
        let to_text = stanza.attr("to").map(|t| t.into_owned()).unwrap_or_default();
        let stanza_type = stanza.attr("type");
        let answerable = kind == Kind::Iq && !matches!(stanza_type.as_deref(), Some("result") | Some("error"));
        let Ok(to) = to_text.parse::<Jid>() else {
            self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::JidMalformed), out);
            return;
        };
        if to.domain() != self.domain.as_str() {
            let other = self.components.serving(to.domain());
            match (other, &origin) {
                (Some(other), Origin::Component(link)) if Rc::ptr_eq(&other, link) => {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::RemoteServerNotFound), out)
                }
                (Some(other), _) => {
                    if self.to_component(&other, stanza, &from).is_err() {
                        self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ResourceConstraint), out);
                    }
                }
                (None, _) => {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::RemoteServerNotFound), out)
                }
            }
            return;
        }
        let remote = matches!(origin, Origin::Remote(_));
        if remote && kind == Kind::Presence {
            handlers::presence::from_remote(&self.services(), stanza, &from, &to);
            return;
        }
        let Some(_) = to.local() else {
            if answerable {
                if remote {
                    self.remote_iq(&origin, stanza, &from, None, out);
                } else {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ServiceUnavailable), out);
                }
            }
            return;
        };
        let bare = to.to_bare();
        if remote {
            // XEP-0191 §3.5: nothing reaches an account from an address it blocks.
            if let Ok(sender) = from.parse::<Jid>() {
                if blocking::blocked(&self.services(), &bare, &sender) {
                    if kind != Kind::Presence {
                        self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ServiceUnavailable), out);
                    }
                    return;
                }
            }
        }
        let sessions = self.registry.sessions(&bare);
        // A full queue refuses the stanza; the sender hears of it (S5), never the
        // recipient (for presence, lossy by nature, there is nothing to answer).
        let refused = std::cell::Cell::new(false);
        let deliver = |s: &Rc<Session>| {
            let mut bytes = Vec::with_capacity(256);
            write_element(&mut bytes, stanza, NS_CLIENT, Some(NS_CLIENT), &[]);
            if s.push(bytes).is_err() {
                refused.set(true);
            }
        };
        let not_reading = || StanzaError::with_text(Condition::ResourceConstraint, "the recipient is not reading");
        if let Jid::Full(full) = &to {
            if let Some(s) = sessions.iter().find(|s| s.jid == *full) {
                deliver(s);
                if refused.get() && kind != Kind::Presence && (kind == Kind::Message || answerable) {
                    self.bounce_inbound(&origin, stanza, not_reading(), out);
                }
                return;
            }
            if kind != Kind::Message {
                if answerable {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ServiceUnavailable), out);
                }
                return;
            }
        }
        let available: Vec<&Rc<Session>> = sessions.iter().filter(|s| s.available()).collect();
        match kind {
            Kind::Presence => available.iter().for_each(|s| deliver(s)),
            Kind::Iq => {
                if answerable && remote && matches!(to, Jid::Bare(_)) {
                    // RFC 6120 §10.5.4: an iq to a bare JID is answered by the server.
                    self.remote_iq(&origin, stanza, &from, Some(&bare), out);
                } else if answerable {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ServiceUnavailable), out);
                }
            }
            Kind::Message => {
                let top = available.iter().filter_map(|s| s.priority.get()).filter(|p| *p >= 0).max();
                let targets: Vec<_> =
                    available.into_iter().filter(|s| top.is_some() && s.priority.get() == top).collect();
                if !targets.is_empty() {
                    targets.iter().for_each(|s| deliver(s));
                    if refused.get() {
                        self.bounce_inbound(&origin, stanza, not_reading(), out);
                    }
                    // A redelivered message had its carbons when it first arrived.
                    if carbons::eligible(stanza) && !matches!(origin, Origin::Redelivery) {
                        let targets: Vec<&Rc<Session>> = targets.to_vec();
                        carbons::copy_inbound(&sessions, &targets, stanza, &from);
                    }
                    return;
                }
                if matches!(stanza_type.as_deref(), Some("error") | Some("headline") | Some("groupchat"))
                    || !handlers::offline::eligible(stanza)
                {
                    return;
                }
                let exists = matches!(self.store.account(&bare), Ok(Some(_)));
                if !exists {
                    self.bounce_inbound(&origin, stanza, StanzaError::new(Condition::ServiceUnavailable), out);
                    return;
                }
                let mut bytes = Vec::with_capacity(256);
                write_element(&mut bytes, stanza, NS_CLIENT, Some(NS_CLIENT), &[]);
                let refusal = self.inbound_refusal(&origin, stanza);
                let wait = !matches!(origin, Origin::Redelivery);
                let now = crate::clock::now_unix();
                self.store.queue_offline(&bare, now, bytes, self.limits.offline, refusal, wait);
            }
        }
    }

    /// An iq from a remote entity to the server or to an account's bare JID:
    /// only the handlers marked `for_remote` answer (disco, ping, version, time,
    /// vCard, last activity); the result goes back over s2s.
    fn remote_iq(
        &self,
        origin: &Origin<'_>,
        iq: &Element<'_>,
        from: &str,
        on_behalf_of: Option<&BareJid>,
        out: &mut Vec<u8>,
    ) {
        let Origin::Remote(domain) = origin else { return };
        let iq_type = match iq.attr("type").as_deref() {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            _ => return,
        };
        let payload = iq.children().next();
        let handler = payload
            .as_ref()
            .and_then(handlers::find)
            .filter(|h| h.for_remote && if on_behalf_of.is_some() { h.for_account } else { h.for_server });
        let (Some(handler), Some(payload), Ok(sender_jid)) = (handler, payload, from.parse::<FullJid>()) else {
            self.bounce_inbound(origin, iq, StanzaError::new(Condition::ServiceUnavailable), out);
            return;
        };
        // The remote sender, as a session no one else can see or reach.
        let sender = Rc::new(Session::detached(sender_jid));
        let request = IqRequest { iq_type, payload, sender: &sender, on_behalf_of };
        let mut pushes = Vec::new();
        let to = iq.attr("to").map(|t| t.into_owned());
        let reply = (handler.handle)(&self.services(), &request, &mut pushes);
        let mut bytes = Vec::with_capacity(300);
        match reply {
            IqReply::Result(payload) => {
                handlers::write_result(iq.attr("id").as_deref(), to.as_deref(), from, payload.as_deref(), &mut bytes)
            }
            IqReply::ResultThen(_) => {
                handlers::write_result(iq.attr("id").as_deref(), to.as_deref(), from, None, &mut bytes)
            }
            IqReply::Error(e) => return self.bounce_inbound(origin, iq, e, out),
        }
        if let Some(s2s) = self.s2s {
            let _ = s2s.send(domain, bytes, None);
        }
    }

    /// A stanza from a local session to another domain, over federation
    /// (re-emitted in `jabber:server` with `from` stamped).
    fn to_remote(&self, kind: Kind, stanza: &Element<'_>, sender: &Rc<Session>, to: &Jid, out: &mut Vec<u8>) {
        let to_text = to.as_str();
        let (Some(s2s), Ok(domain)) = (self.s2s, to.domain().parse::<Domain>()) else {
            let e = StanzaError::with_text(Condition::RemoteServerNotFound, "federation is not enabled on this server");
            self.error(stanza, sender, Some(to_text), e, out);
            return;
        };
        let mut bytes = Vec::with_capacity(256);
        write_element(&mut bytes, stanza, NS_SERVER, Some(NS_SERVER), &[Override::Set("from", sender.jid.as_str())]);
        let stanza_type = stanza.attr("type");
        let bounce = (kind != Kind::Presence && !matches!(stanza_type.as_deref(), Some("error") | Some("result")))
            .then(|| Bounce {
                kind,
                from: sender.jid.as_str().to_string(),
                to: to_text.to_string(),
                id: stanza.attr("id").map(|i| i.into_owned()),
            });
        if let Err(e) = s2s.send(&domain, bytes, bounce) {
            self.error(stanza, sender, Some(to_text), e.stanza_error(), out);
        }
    }

    /// Re-emits the stanza with `from` stamped into the recipient's queue.
    fn deliver(
        &self,
        stanza: &Element<'_>,
        sender: &Rc<Session>,
        recipient: &Rc<Session>,
        to: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let mut bytes = Vec::with_capacity(256);
        write_element(&mut bytes, stanza, NS_CLIENT, None, &[Override::Set("from", sender.jid.as_str())]);
        if Rc::ptr_eq(sender, recipient) {
            out.extend_from_slice(&bytes);
            return;
        }
        if recipient.push(bytes).is_err() {
            let e = StanzaError::with_text(Condition::ResourceConstraint, "the recipient is not reading");
            self.error(stanza, sender, to, e, out);
        }
    }

    /// Sends an error reply to the sender (never for an error stanza).
    fn error(&self, stanza: &Element<'_>, sender: &Session, to: Option<&str>, mut e: StanzaError, out: &mut Vec<u8>) {
        e.by = Some(self.domain.as_str().to_string());
        e.write_reply(stanza, sender.jid.as_str(), to, out);
    }
}

/// §8.2.3: an iq has an id and a type; get and set carry exactly one child.
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
