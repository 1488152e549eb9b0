//! XEP-0045 multi-user chat at `muc_domain`: the service (its rooms, disco,
//! creation policy and bounds) and the dispatch of stanzas to rooms. A room
//! (`room/`) is a sans-I/O core: it takes a stanza from a real JID and returns
//! the stanzas to send, which go out through the hub like any other (local
//! sessions, gateways, federation).
//!
//! The room (`room/`) covers entering and leaving with the status codes,
//! nickname changes and conflicts, history and the subject, private messages,
//! roles and affiliations (muc#admin), configuration (muc#owner, locked new
//! rooms, instant rooms), reserved nicknames, voice requests, the room's vCard,
//! iqs to occupants, invitations, destruction and persistence; this module is the
//! service: its rooms and their bounds, who creates them, its disco, and sending
//! what rooms produce (a slow occupant is removed, status 333).

mod room;

use crate::config::{MucConfig, RoomCreation};
use crate::hub::Hub;
use crate::jid::{BareJid, Domain, Jid};
use crate::ns::{NS_CLIENT, NS_INFO, NS_ITEMS, NS_PING};
use crate::services::mam;
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use room::Room;
use std::cell::RefCell;
use std::collections::BTreeMap;

pub use crate::ns::NS_MUC;
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// The group-chat service.
pub struct Muc {
    pub config: MucConfig,
    /// Rooms by their local part (at most `max_rooms`).
    rooms: RefCell<BTreeMap<Box<str>, Room>>,
}

/// Stanzas a room or the service sends: (to, bytes).
pub type Outgoing = Vec<(String, Vec<u8>)>;

impl Muc {
    pub fn new(config: MucConfig) -> Muc {
        Muc { config, rooms: RefCell::new(BTreeMap::new()) }
    }

    pub fn domain(&self) -> &Domain {
        &self.config.domain
    }

    /// Reads the persistent rooms (at start), each with its history from its
    /// archive.
    pub fn load(&self, store: &crate::store::Store) {
        let records = match store.muc_rooms(self.config.max_rooms) {
            Ok(r) => r,
            Err(e) => {
                log::error!("group-chat rooms: {e}");
                return;
            }
        };
        let mut rooms = self.rooms.borrow_mut();
        for (name, record) in records {
            let Ok(jid) = format!("{name}@{}", self.config.domain).parse::<BareJid>() else { continue };
            match Room::decode(jid, &record, &self.config) {
                Some(mut room) => {
                    if room.archives() {
                        let newest = crate::store::archive::Page::Backward { before: None };
                        let all = crate::store::archive::Filter::default();
                        match store.archive_page(&room.jid, &all, newest, self.config.history) {
                            Ok(read) => room.fill_history(&read.messages),
                            Err(e) => log::error!("group-chat room {name}: its archive: {e}"),
                        }
                    }
                    rooms.insert(name.into(), room);
                }
                None => log::warn!("group-chat room {name}: its stored record does not decode; left out"),
            }
        }
        if !rooms.is_empty() {
            log::info!("{} persistent group-chat room(s) at {}", rooms.len(), self.config.domain);
        }
    }

    /// A stanza for the service or one of its rooms, from `from` (a full JID as
    /// its stream checked it); what it causes is sent through `hub`.
    pub fn handle(&self, hub: &Hub<'_>, from: &str, stanza: &Element<'_>) {
        let mut out = Outgoing::new();
        let room = self.handle_into(hub, from, stanza, &mut out);
        let stalled = deliver(hub, self.domain(), out);
        // A slow occupant never stalls the room: one whose queue is full is taken
        // out (status 333), and only it.
        if let (Some(room), false) = (room, stalled.is_empty()) {
            let mut out = Outgoing::new();
            let mut rooms = self.rooms.borrow_mut();
            if let Some(r) = rooms.get_mut(&*room) {
                for real in &stalled {
                    r.technical_removal(real, &mut out);
                }
                if r.is_empty() && !r.persistent {
                    end_room(hub, &mut rooms, &room);
                }
            }
            drop(rooms);
            deliver(hub, self.domain(), out);
        }
    }

    /// The server stops: every occupant hears it is out of its room (status 332).
    pub fn shutdown(&self, hub: &Hub<'_>) {
        let mut out = Outgoing::new();
        for room in self.rooms.borrow_mut().values_mut() {
            room.shut_down(&mut out);
        }
        deliver(hub, self.domain(), out);
    }

    /// A stanza wrenhub wrote itself (presence on a session's behalf: its
    /// unavailable when the session ends), framed again.
    pub fn handle_bytes(&self, hub: &Hub<'_>, bytes: &[u8]) {
        crate::xml::for_each_stanza(bytes, |el| {
            if let Some(from) = el.attr("from") {
                self.handle(hub, &from, el);
            }
        });
    }

    /// Handles a stanza; returns the room it was for.
    fn handle_into(&self, hub: &Hub<'_>, from: &str, stanza: &Element<'_>, out: &mut Outgoing) -> Option<Box<str>> {
        let sender = from.parse::<Jid>().ok()?;
        let to = stanza.attr("to").and_then(|t| t.parse::<Jid>().ok())?;
        let error = |e: StanzaError, out: &mut Outgoing| {
            if let Some(bytes) = error_reply(stanza, to.as_str(), from, self.domain().as_str(), e) {
                out.push((from.to_string(), bytes));
            }
        };
        let Some(room_name) = to.local() else {
            match stanza.name() {
                "iq" => self.service_iq(from, &to, stanza, out),
                "message" | "presence" if stanza.attr("type").as_deref() == Some("error") => {}
                "message" => error(StanzaError::new(Condition::ServiceUnavailable), out),
                _ => {}
            }
            return None;
        };
        let mut rooms = self.rooms.borrow_mut();
        if !rooms.contains_key(room_name) {
            let joining = stanza.name() == "presence" && stanza.attr("type").is_none() && to.resource().is_some();
            if !joining {
                if stanza.name() == "iq" || stanza.name() == "message" {
                    error(StanzaError::with_text(Condition::ItemNotFound, "no such room"), out);
                }
                return None;
            }
            // Creating a room: who may, and how many there are.
            let creator = sender.to_bare();
            let local = sender.domain() == hub.domain.as_str();
            let admin = self.config.admins.contains(&creator);
            let refusal = match self.config.creation {
                RoomCreation::Anyone => None,
                RoomCreation::Local if local => None,
                RoomCreation::Local => Some("only the hub's accounts create rooms"),
                RoomCreation::Admins if admin => None,
                RoomCreation::Admins => Some("only the hub's admins create rooms"),
            };
            if let Some(text) = refusal {
                error(StanzaError::with_text(Condition::NotAllowed, text), out);
                return None;
            }
            if rooms.len() >= self.config.max_rooms {
                error(StanzaError::with_text(Condition::ResourceConstraint, "muc_max_rooms rooms exist"), out);
                return None;
            }
            let owned = rooms.values().filter(|r| r.is_owned_by(&creator)).count();
            if !admin && owned >= self.config.max_rooms_per_user {
                let text = "you own muc_max_rooms_per_user rooms already";
                error(StanzaError::with_text(Condition::ResourceConstraint, text), out);
                return None;
            }
            let jid = format!("{room_name}@{}", self.config.domain).parse::<BareJid>().ok()?;
            rooms.insert(room_name.into(), Room::new(jid, sender.to_bare(), &self.config));
        }
        let room = rooms.get_mut(room_name)?;
        // XEP-0313 on the room's JID: its archive, for those the room lets read it.
        if let Some(query) = archive_request(stanza, &to) {
            let answer = self.archive_query(hub, room, &sender, stanza, &query);
            match answer {
                Ok((results, payload)) => {
                    if !results.is_empty() {
                        out.push((from.to_string(), results));
                    }
                    out.push((from.to_string(), iq_reply(stanza, to.as_str(), from, Ok(()), &payload)));
                }
                Err(e) => out.push((from.to_string(), iq_reply(stanza, to.as_str(), from, Err(e), &[]))),
            }
            return Some(room_name.into());
        }
        if let (Some(mam), true) = (hub.mam, stanza.name() == "message" && room.archives()) {
            room.offer_archive_id(mam.next_id());
        }
        room.handle(&sender, to.resource(), stanza, out);
        for archived in room.take_archived() {
            // The sender's stream waits for it, as for its own messages.
            hub.store.queue_archive(&room.jid, archived, true);
        }
        if let Some(record) = room.take_store_change() {
            // What a persistent room keeps is stored before the answers go out.
            if let Err(e) = hub.store.put_muc_room(room_name, record.as_deref()) {
                log::error!("group-chat room {}: {e}", room.jid);
            }
        }
        if room.is_empty() && !room.persistent {
            log::debug!("room {} is empty: it ends", room.jid);
            end_room(hub, &mut rooms, room_name);
        }
        Some(room_name.into())
    }

    /// A MAM query or metadata request on a room: (the result messages, the
    /// iq answer's payload).
    fn archive_query(
        &self,
        hub: &Hub<'_>,
        room: &Room,
        sender: &Jid,
        iq: &Element<'_>,
        query: &Element<'_>,
    ) -> Result<(Vec<u8>, Vec<u8>), StanzaError> {
        if !room.archives() {
            return Err(StanzaError::with_text(Condition::ServiceUnavailable, "the room keeps no archive"));
        }
        room.may_read_archive(sender)?;
        let get = iq.attr("type").as_deref() == Some("get");
        if query.name() == "metadata" {
            return Ok((Vec::new(), mam::metadata_of(hub, &room.jid)?));
        }
        match mam::answer(hub, &room.jid, sender.as_str(), query, get)? {
            mam::Answer::Form(form) => Ok((Vec::new(), form)),
            mam::Answer::Page { results, fin } => Ok((results, fin)),
        }
    }

    /// The service's own iqs: disco#info, disco#items (the public rooms), ping.
    fn service_iq(&self, from: &str, to: &Jid, iq: &Element<'_>, out: &mut Outgoing) {
        let Some(payload) = iq.children().next() else { return };
        let kind = iq.attr("type");
        if !matches!(kind.as_deref(), Some("get") | Some("set")) {
            return;
        }
        let mut body = Vec::new();
        let answer = match (kind.as_deref(), payload.ns(), payload.name()) {
            (Some("get"), NS_INFO, "query") if payload.attr("node").is_none() => {
                let mut w = XmlWriter::new(&mut body);
                w.start("query").attr("xmlns", NS_INFO).open();
                w.start("identity").attr("category", "conference").attr("type", "text").attr("name", "Group chats");
                w.close_empty();
                for f in [NS_INFO, NS_ITEMS, NS_MUC, NS_PING] {
                    w.start("feature").attr("var", f).close_empty();
                }
                w.end("query");
                Ok(())
            }
            (Some("get"), NS_ITEMS, "query") => {
                let mut w = XmlWriter::new(&mut body);
                w.start("query").attr("xmlns", NS_ITEMS).open();
                for room in self.rooms.borrow().values().filter(|r| r.is_public()) {
                    let jid = room.jid.as_str();
                    XmlWriter::new(&mut body).start("item").attr("jid", jid).attr("name", room.name()).close_empty();
                }
                XmlWriter::new(&mut body).end("query");
                Ok(())
            }
            (Some("get"), NS_PING, "ping") => Ok(()),
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        out.push((from.to_string(), iq_reply(iq, to.as_str(), from, answer, &body)));
    }
}

/// A room ends (destroyed, or its last occupant left a temporary room): its
/// archive goes with it, after what is queued for it.
fn end_room(hub: &Hub<'_>, rooms: &mut BTreeMap<Box<str>, Room>, name: &str) {
    if let Some(room) = rooms.remove(name) {
        hub.store.queue_archive_delete(&room.jid);
    }
}

/// The archive request in an iq to a room's bare JID, if it is one.
fn archive_request<'a>(stanza: &Element<'a>, to: &Jid) -> Option<Element<'a>> {
    if stanza.name() != "iq" || to.resource().is_some() {
        return None;
    }
    if !matches!(stanza.attr("type").as_deref(), Some("get") | Some("set")) {
        return None;
    }
    let payload = stanza.children().next()?;
    (payload.ns() == mam::NS_MAM && matches!(payload.name(), "query" | "metadata")).then_some(payload)
}

/// Sends what a room produced; returns the full JIDs whose queue was full.
fn deliver(hub: &Hub<'_>, service: &Domain, out: Outgoing) -> Vec<String> {
    let mut stalled = Vec::new();
    for (to, bytes) in out {
        if !hub.push_from_service(service, &to, bytes) && to.contains('/') && !stalled.contains(&to) {
            stalled.push(to);
        }
    }
    stalled
}

/// The error reply to `stanza` (none to an error), from `from` to `to`, `by` the
/// room or the service; to presence it carries `<x xmlns=muc/>`.
pub(crate) fn error_reply(stanza: &Element<'_>, from: &str, to: &str, by: &str, mut e: StanzaError) -> Option<Vec<u8>> {
    e.by = Some(by.to_string());
    let mut bytes = Vec::with_capacity(300);
    e.write_reply_with(stanza, to, Some(from), stanza.name() == "presence", &mut bytes).then_some(bytes)
}

/// An iq's answer: a result carrying `body`, or the error.
pub(crate) fn iq_reply(
    iq: &Element<'_>,
    from: &str,
    to: &str,
    answer: Result<(), StanzaError>,
    body: &[u8],
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(120 + body.len());
    match answer {
        Ok(()) => {
            let mut w = XmlWriter::new(&mut bytes);
            w.start("iq")
                .attr("from", from)
                .attr("to", to)
                .attr_opt("id", iq.attr("id").as_deref())
                .attr("type", "result");
            if body.is_empty() {
                w.close_empty();
            } else {
                w.open();
                bytes.extend_from_slice(body);
                XmlWriter::new(&mut bytes).end("iq");
            }
        }
        Err(e) => {
            e.write_reply(iq, to, Some(from), &mut bytes);
        }
    }
    bytes
}

/// The children of a stanza re-emitted in `jabber:client`, leaving out those in
/// `skip` namespaces (the MUC protocol elements a room rewrites).
pub(crate) fn children_except(stanza: &Element<'_>, skip: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::xml::writer::write_children(&mut out, stanza, NS_CLIENT, skip, usize::MAX);
    out
}
