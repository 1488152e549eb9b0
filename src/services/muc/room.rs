//! One room (XEP-0045): its occupants, subject and history, as a core that takes
//! a stanza from a real JID and appends what to send to [`Outgoing`].

use super::{children_except, iq_reply, Outgoing, NS_MUC, NS_MUC_OWNER, NS_MUC_USER};
use crate::config::MucConfig;
use crate::jid::{BareJid, Jid};
use crate::ns::{NS_DELAY, NS_INFO, NS_ITEMS, NS_PING};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use std::collections::VecDeque;

const NS_DATA: &str = "jabber:x:data";
const NS_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// Longest nickname kept (it is a JID resource too).
const MAX_NICK: usize = 64;

const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// Accounts with an affiliation one room keeps (owners, admins, members, bans).
const MAX_AFFILIATIONS: usize = 512;
/// Items one muc#admin request may change, invitations one message may carry.
const MAX_ITEMS: usize = 16;

/// A long-lived relation of an account to the room (§5.2), lowest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    const ALL: [Affiliation; 5] =
        [Affiliation::Outcast, Affiliation::None, Affiliation::Member, Affiliation::Admin, Affiliation::Owner];

    fn name(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    fn parse(s: &str) -> Option<Affiliation> {
        Affiliation::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The role an occupant with it enters with (§5.1, an unmoderated room).
    fn default_role(self) -> Role {
        match self {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            _ => Role::Participant,
        }
    }
}

/// A role while in the room (§5.1), lowest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    const ALL: [Role; 4] = [Role::None, Role::Visitor, Role::Participant, Role::Moderator];

    fn name(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Someone in the room under a nickname (one or more of one account's resources).
struct Occupant {
    nick: Box<str>,
    bare: BareJid,
    /// The real full JIDs joined under this nickname.
    real: Vec<Box<str>>,
    affiliation: Affiliation,
    role: Role,
    /// The children of its last presence (show, status, caps), re-emitted.
    presence: Box<[u8]>,
}

/// A message kept for those who join later.
struct Kept {
    nick: Box<str>,
    stamp: u64,
    /// The message's children, re-emitted.
    body: Box<[u8]>,
    chars: usize,
}

pub struct Room {
    pub jid: BareJid,
    name: String,
    description: String,
    public: bool,
    /// Real JIDs shown to every occupant (`muc#roomconfig_whois` = anyone).
    non_anonymous: bool,
    /// Only members (and up) may enter (§7.2.5: `registration-required`).
    members_only: bool,
    /// Occupants without an affiliation enter as visitors (§8.4).
    moderated: bool,
    /// Entering needs this password (§7.2.6: `not-authorized`).
    password: Option<String>,
    /// Participants may change the subject, not only moderators.
    participants_set_subject: bool,
    /// New rooms stay locked until their owner configures them (§10.1.3).
    locked: bool,
    /// Kept (in the store too) when its last occupant leaves.
    pub persistent: bool,
    /// What the store keeps changed since the service last saved it.
    dirty: bool,
    /// Accounts with an affiliation other than none (at most [`MAX_AFFILIATIONS`]).
    affiliations: Vec<(BareJid, Affiliation)>,
    /// Keys the XEP-0421 occupant ids (stable per account in this room).
    secret: [u8; 16],
    occupants: Vec<Occupant>,
    subject: Option<(Box<str>, Box<[u8]>)>,
    history: VecDeque<Kept>,
    max_history: usize,
    max_occupants: usize,
    /// The service's bound, which `muc#roomconfig_maxusers` cannot pass.
    service_max_occupants: usize,
}

/// What `<history/>` in a join asks for (§7.2.15).
#[derive(Default)]
struct HistoryWanted {
    maxstanzas: Option<usize>,
    maxchars: Option<usize>,
    since: Option<u64>,
}

impl Room {
    pub fn new(jid: BareJid, creator: BareJid, config: &MucConfig) -> Room {
        Room {
            name: jid.local().unwrap_or_default().to_string(),
            jid,
            description: String::new(),
            public: true,
            non_anonymous: false,
            members_only: false,
            moderated: false,
            password: None,
            participants_set_subject: false,
            locked: true,
            persistent: false,
            dirty: false,
            affiliations: vec![(creator, Affiliation::Owner)],
            secret: {
                let mut s = [0u8; 16];
                crate::random::fill(&mut s);
                s
            },
            occupants: Vec::new(),
            subject: None,
            history: VecDeque::new(),
            max_history: config.history,
            max_occupants: config.max_occupants,
            service_max_occupants: config.max_occupants,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    /// True once after a change the store keeps (configuration, affiliations,
    /// subject).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The store's record of a persistent room: `version 1, flags, name,
    /// description, password?, max occupants (u32), secret (16), subject? (nick,
    /// bytes), affiliations (u16 count, then jid and code each)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1];
        let flags = [
            self.public,
            self.non_anonymous,
            self.members_only,
            self.moderated,
            self.participants_set_subject,
            self.locked,
        ];
        out.push(flags.iter().enumerate().fold(0u8, |acc, (i, f)| acc | (u8::from(*f) << i)));
        put(&mut out, self.name.as_bytes());
        put(&mut out, self.description.as_bytes());
        put_opt(&mut out, self.password.as_deref().map(str::as_bytes));
        out.extend_from_slice(&(self.max_occupants as u32).to_be_bytes());
        out.extend_from_slice(&self.secret);
        match &self.subject {
            Some((nick, bytes)) => {
                out.push(1);
                put(&mut out, nick.as_bytes());
                put(&mut out, bytes);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.affiliations.len() as u16).to_be_bytes());
        for (jid, a) in &self.affiliations {
            put(&mut out, jid.as_str().as_bytes());
            out.push(Affiliation::ALL.iter().position(|x| x == a).unwrap_or(1) as u8);
        }
        out
    }

    /// A persistent room from its record; `None` if the record is not one.
    pub fn decode(jid: BareJid, record: &[u8], config: &MucConfig) -> Option<Room> {
        let mut r = Reader(record);
        if r.u8()? != 1 {
            return None;
        }
        let flags = r.u8()?;
        let flag = |i: u8| flags & (1 << i) != 0;
        let name = r.string()?;
        let description = r.string()?;
        let password = match r.u8()? {
            0 => None,
            _ => Some(r.string()?),
        };
        let max_occupants = (u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize).clamp(2, config.max_occupants);
        let mut secret = [0u8; 16];
        secret.copy_from_slice(r.take(16)?);
        let subject = match r.u8()? {
            0 => None,
            _ => Some((r.string()?.into_boxed_str(), r.bytes()?.into_boxed_slice())),
        };
        let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let mut affiliations = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let jid = r.string()?.parse::<BareJid>().ok()?;
            let a = *Affiliation::ALL.get(usize::from(r.u8()?))?;
            affiliations.push((jid, a));
        }
        let mut room = Room::new(jid, affiliations.first()?.0.clone(), config);
        room.public = flag(0);
        room.non_anonymous = flag(1);
        room.members_only = flag(2);
        room.moderated = flag(3);
        room.participants_set_subject = flag(4);
        room.locked = flag(5);
        room.name = name;
        room.description = description;
        room.password = password;
        room.max_occupants = max_occupants;
        room.secret = secret;
        room.subject = subject;
        room.affiliations = affiliations;
        room.persistent = true;
        Some(room)
    }

    pub fn is_public(&self) -> bool {
        self.public && !self.locked
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    fn by_real(&self, real: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.real.iter().any(|r| &**r == real))
    }

    fn affiliation_of(&self, bare: &BareJid) -> Affiliation {
        self.affiliations.iter().find(|(b, _)| b == bare).map_or(Affiliation::None, |(_, a)| *a)
    }

    /// XEP-0421: the same id for the same account in this room, nothing else.
    fn occupant_id(&self, bare: &BareJid) -> String {
        use base64::Engine;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let tag = ring::hmac::sign(&key, bare.as_str().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..12])
    }

    fn by_nick(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| &*o.nick == nick)
    }

    pub fn handle(&mut self, sender: &Jid, resource: Option<&str>, stanza: &Element<'_>, out: &mut Outgoing) {
        match stanza.name() {
            "presence" => self.presence(sender, resource, stanza, out),
            "message" => self.message(sender, resource, stanza, out),
            "iq" => self.iq(sender, resource, stanza, out),
            _ => {}
        }
    }

    fn error(&self, to: &Jid, resource: Option<&str>, stanza: &Element<'_>, e: StanzaError, out: &mut Outgoing) {
        let from = match resource {
            Some(n) => self.occupant_jid(n),
            None => self.jid.as_str().to_string(),
        };
        let mut bytes = Vec::new();
        if e.write_reply(stanza, to.as_str(), Some(&from), &mut bytes) {
            out.push((to.as_str().to_string(), bytes));
        }
    }

    // --- presence (§7.2, §7.6, §7.14) ---

    fn presence(&mut self, sender: &Jid, resource: Option<&str>, stanza: &Element<'_>, out: &mut Outgoing) {
        let real = sender.as_str();
        let kind = stanza.attr("type");
        let current = self.by_real(real);
        match (kind.as_deref(), current) {
            (Some("unavailable"), Some(i)) => {
                self.leave(i, real, &children_except(stanza, &[NS_MUC, NS_MUC_USER]), &[], out)
            }
            // §7.2.21 / XEP-0045 §18.1.1: an error from an occupant's client removes it.
            (Some("error"), Some(i)) => self.leave(i, real, &[], &["333"], out),
            (None, _) => {
                let Some(nick) = resource.filter(|n| !n.is_empty() && n.len() <= MAX_NICK) else {
                    let e = StanzaError::with_text(Condition::JidMalformed, "join with a nickname: room@service/nick");
                    return self.error(sender, resource, stanza, e, out);
                };
                match current {
                    Some(i) if &*self.occupants[i].nick == nick => {
                        // A presence update (§7.7): everyone sees it.
                        self.occupants[i].presence = children_except(stanza, &[NS_MUC, NS_MUC_USER]).into();
                        self.broadcast_presence(i, None, &[], out);
                    }
                    Some(i) => self.change_nick(i, real, nick, stanza, out),
                    None => self.join(sender, nick, stanza, out),
                }
            }
            _ => {}
        }
    }

    fn join(&mut self, sender: &Jid, nick: &str, stanza: &Element<'_>, out: &mut Outgoing) {
        let real = sender.as_str();
        let bare = sender.to_bare();
        let affiliation = self.affiliation_of(&bare);
        let owner = affiliation == Affiliation::Owner;
        if let Some(password) = &self.password {
            let given = stanza.child("x", NS_MUC).and_then(|x| x.child("password", NS_MUC)).map(|p| p.text());
            if given.as_deref() != Some(password.as_str()) {
                let e = StanzaError::with_text(Condition::NotAuthorized, "this room needs its password");
                return self.error(sender, Some(nick), stanza, e, out);
            }
        }
        if self.members_only && affiliation < Affiliation::Member {
            let e = StanzaError::with_text(Condition::RegistrationRequired, "this room is for its members");
            return self.error(sender, Some(nick), stanza, e, out);
        }
        if affiliation == Affiliation::Outcast {
            let e = StanzaError::with_text(Condition::Forbidden, "you are banned from this room");
            return self.error(sender, Some(nick), stanza, e, out);
        }
        let refuse = |room: &Room, condition: Condition, text: &str, out: &mut Outgoing| {
            room.error(sender, Some(nick), stanza, StanzaError::with_text(condition, text), out);
        };
        if self.locked && !owner {
            return refuse(self, Condition::ItemNotFound, "the room is being set up by its owner", out);
        }
        let created = self.occupants.is_empty() && self.locked && owner;
        let same_account = self.by_nick(nick).filter(|&i| self.occupants[i].bare == bare);
        if self.by_nick(nick).is_some() && same_account.is_none() {
            return refuse(self, Condition::Conflict, "that nickname is in use", out);
        }
        if same_account.is_none() && self.occupants.len() >= self.max_occupants {
            return refuse(self, Condition::ServiceUnavailable, "the room is full", out);
        }
        let presence: Box<[u8]> = children_except(stanza, &[NS_MUC, NS_MUC_USER]).into();
        let index = match same_account {
            // Another resource of the same account under the same nickname.
            Some(i) => {
                self.occupants[i].real.push(real.into());
                self.occupants[i].presence = presence;
                i
            }
            None => {
                let role = self.entering_role(affiliation);
                self.occupants.push(Occupant {
                    nick: nick.into(),
                    bare,
                    real: vec![real.into()],
                    affiliation,
                    role,
                    presence,
                });
                self.occupants.len() - 1
            }
        };
        // §7.2.3: the others' presence to the new occupant, then its own to all.
        let newcomer = &self.occupants[index];
        for (i, o) in self.occupants.iter().enumerate() {
            if i != index {
                out.push((real.to_string(), self.presence_of(o, newcomer, real, None, &[], false)));
            }
        }
        let mut codes: Vec<&str> = Vec::new();
        if self.non_anonymous {
            codes.push("100");
        }
        if created {
            codes.push("201");
        }
        self.broadcast_presence(index, None, &codes, out);
        if created {
            log::info!("room {} created by {}", self.jid, sender.to_bare());
        }
        // §7.2.15: history, then §7.2.16: the subject (empty if there is none).
        let wanted = history_wanted(stanza);
        for kept in self.history_for(&wanted) {
            let mut m = Vec::with_capacity(kept.body.len() + 200);
            XmlWriter::new(&mut m)
                .start("message")
                .attr("from", &self.occupant_jid(&kept.nick))
                .attr("to", real)
                .attr("type", "groupchat")
                .open();
            m.extend_from_slice(&kept.body);
            let stamp = crate::clock::utc_timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(kept.stamp));
            XmlWriter::new(&mut m)
                .start("delay")
                .attr("xmlns", NS_DELAY)
                .attr("from", self.jid.as_str())
                .attr("stamp", &stamp)
                .close_empty()
                .end("message");
            out.push((real.to_string(), m));
        }
        out.push((real.to_string(), self.subject_message(real)));
    }

    fn history_for(&self, wanted: &HistoryWanted) -> Vec<&Kept> {
        let mut picked: Vec<&Kept> = Vec::new();
        let mut chars = 0usize;
        for kept in self.history.iter().rev() {
            if wanted.maxstanzas.is_some_and(|m| picked.len() >= m) || wanted.since.is_some_and(|s| kept.stamp < s) {
                break;
            }
            chars += kept.chars;
            if wanted.maxchars.is_some_and(|m| chars > m) {
                break;
            }
            picked.push(kept);
        }
        picked.reverse();
        picked
    }

    fn subject_message(&self, to: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(160);
        let from = match &self.subject {
            Some((nick, _)) => self.occupant_jid(nick),
            None => self.jid.as_str().to_string(),
        };
        XmlWriter::new(&mut m).start("message").attr("from", &from).attr("to", to).attr("type", "groupchat").open();
        match &self.subject {
            Some((_, bytes)) => m.extend_from_slice(bytes),
            None => {
                XmlWriter::new(&mut m).start("subject").close_empty();
            }
        }
        XmlWriter::new(&mut m).end("message");
        m
    }

    /// §7.6: unavailable with 303 and the new nickname, then available as it.
    fn change_nick(&mut self, i: usize, real: &str, nick: &str, stanza: &Element<'_>, out: &mut Outgoing) {
        if let Some(j) = self.by_nick(nick) {
            if self.occupants[j].bare != self.occupants[i].bare {
                let sender: Jid = match real.parse() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let e = StanzaError::with_text(Condition::Conflict, "that nickname is in use");
                return self.error(&sender, Some(nick), stanza, e, out);
            }
        }
        self.broadcast_presence(i, Some(nick), &["303"], out);
        self.occupants[i].nick = nick.into();
        self.occupants[i].presence = children_except(stanza, &[NS_MUC, NS_MUC_USER]).into();
        self.broadcast_presence(i, None, &[], out);
    }

    /// An occupant's resource leaves (§7.14): its unavailable to everyone; the
    /// occupant goes when its last resource does.
    fn leave(&mut self, i: usize, real: &str, presence: &[u8], codes: &[&str], out: &mut Outgoing) {
        if self.occupants[i].real.len() > 1 {
            self.occupants[i].real.retain(|r| &**r != real);
            let o = &self.occupants[i];
            out.push((real.to_string(), self.presence_of(o, o, real, None, &["110"], true)));
            return;
        }
        self.occupants[i].presence = presence.into();
        self.broadcast(i, None, codes, true, out);
        self.occupants.remove(i);
    }

    /// Occupant `i`'s presence to every occupant (`new_nick`: the 303 form).
    fn broadcast_presence(&self, i: usize, new_nick: Option<&str>, codes: &[&str], out: &mut Outgoing) {
        self.broadcast(i, new_nick, codes, new_nick.is_some(), out);
    }

    /// Occupant `i`'s presence to every resource of every occupant, with `codes`
    /// (and 110 to its own resources).
    fn broadcast(&self, i: usize, new_nick: Option<&str>, codes: &[&str], unavailable: bool, out: &mut Outgoing) {
        let o = &self.occupants[i];
        for viewer in &self.occupants {
            let mut own: Vec<&str> = codes.to_vec();
            if viewer.bare == o.bare {
                own.push("110");
            }
            for to in &viewer.real {
                out.push((to.to_string(), self.presence_of(o, viewer, to, new_nick, &own, unavailable)));
            }
        }
    }

    /// `o`'s presence as `viewer` sees it (at its resource `to`): the real JID only
    /// to moderators, or to all in a non-anonymous room (§7.2.3, §7.2.4).
    fn presence_of(
        &self,
        o: &Occupant,
        viewer: &Occupant,
        to: &str,
        new_nick: Option<&str>,
        codes: &[&str],
        unavailable: bool,
    ) -> Vec<u8> {
        let show_jid = self.non_anonymous || viewer.role == Role::Moderator || codes.contains(&"110");
        let mut p = Vec::with_capacity(240 + o.presence.len());
        let mut w = XmlWriter::new(&mut p);
        w.start("presence").attr("from", &self.occupant_jid(&o.nick)).attr("to", to);
        if unavailable {
            w.attr("type", "unavailable");
        }
        w.open();
        p.extend_from_slice(&o.presence);
        let mut w = XmlWriter::new(&mut p);
        w.start("x").attr("xmlns", NS_MUC_USER).open();
        w.start("item")
            .attr("affiliation", o.affiliation.name())
            .attr("role", if unavailable && new_nick.is_none() { "none" } else { o.role.name() });
        if show_jid {
            if let Some(r) = o.real.first() {
                w.attr("jid", r);
            }
        }
        w.attr_opt("nick", new_nick).close_empty();
        for code in codes {
            w.start("status").attr("code", code).close_empty();
        }
        w.end("x");
        w.start("occupant-id").attr("xmlns", NS_OCCUPANT_ID).attr("id", &self.occupant_id(&o.bare)).close_empty();
        w.end("presence");
        p
    }

    // --- messages (§7.4, §7.5, §8.1) ---

    fn message(&mut self, sender: &Jid, resource: Option<&str>, stanza: &Element<'_>, out: &mut Outgoing) {
        let kind = stanza.attr("type");
        if kind.as_deref() == Some("error") {
            return;
        }
        if let (None, Some(x)) = (resource, stanza.child("x", NS_MUC_USER)) {
            if let Some(decline) = x.child("decline", NS_MUC_USER) {
                return self.decline(sender, &decline, out);
            }
        }
        let Some(i) = self.by_real(sender.as_str()) else {
            let e = StanzaError::with_text(Condition::NotAcceptable, "only occupants may send to the room");
            return self.error(sender, resource, stanza, e, out);
        };
        match (resource, kind.as_deref()) {
            (None, Some("groupchat")) => self.groupchat(i, stanza, out),
            (None, Some("normal") | None) if stanza.child("x", NS_MUC_USER).is_some() => {
                self.invitations(i, stanza, out)
            }
            (Some(nick), Some("chat") | Some("normal") | None) => {
                let Some(j) = self.by_nick(nick) else {
                    let e = StanzaError::with_text(Condition::ItemNotFound, "no occupant has that nickname");
                    return self.error(sender, resource, stanza, e, out);
                };
                // §7.5: a private message, from the sender's occupant JID.
                let body = children_except(stanza, &[NS_MUC_USER]);
                let from = self.occupant_jid(&self.occupants[i].nick);
                for to in &self.occupants[j].real {
                    let mut m = Vec::with_capacity(body.len() + 200);
                    let mut w = XmlWriter::new(&mut m);
                    w.start("message").attr("from", &from).attr("to", to).attr_opt("id", stanza.attr("id").as_deref());
                    w.attr_opt("type", kind.as_deref()).open();
                    m.extend_from_slice(&body);
                    XmlWriter::new(&mut m).empty_ns("x", NS_MUC_USER).end("message");
                    out.push((to.to_string(), m));
                }
            }
            _ => {
                let e = StanzaError::with_text(
                    Condition::BadRequest,
                    "to the room: type='groupchat'; to an occupant: chat",
                );
                self.error(sender, resource, stanza, e, out);
            }
        }
    }

    fn groupchat(&mut self, i: usize, stanza: &Element<'_>, out: &mut Outgoing) {
        let nick = self.occupants[i].nick.clone();
        if self.occupants[i].role < Role::Participant {
            let e = StanzaError::with_text(Condition::Forbidden, "visitors have no voice in this room");
            if let Some(real) = self.occupants[i].real.first().and_then(|r| r.parse::<Jid>().ok()) {
                self.error(&real, None, stanza, e, out);
            }
            return;
        }
        let mut body = children_except(stanza, &[NS_DELAY, NS_OCCUPANT_ID]);
        XmlWriter::new(&mut body)
            .start("occupant-id")
            .attr("xmlns", NS_OCCUPANT_ID)
            .attr("id", &self.occupant_id(&self.occupants[i].bare))
            .close_empty();
        let has_body = stanza.child("body", stanza.ns()).is_some();
        if let Some(subject) = stanza.child("subject", stanza.ns()).filter(|_| !has_body) {
            // §8.1: moderators change the subject (participants too, if allowed).
            let may = self.occupants[i].role == Role::Moderator || self.participants_set_subject;
            if !may {
                let e = StanzaError::with_text(Condition::Forbidden, "only moderators change the subject");
                if let Some(real) = self.occupants[i].real.first().and_then(|r| r.parse::<Jid>().ok()) {
                    self.error(&real, None, stanza, e, out);
                }
                return;
            }
            let mut s = Vec::new();
            XmlWriter::new(&mut s).start("subject").open().text(&subject.text()).end("subject");
            self.subject = Some((nick.clone(), s.into()));
            self.dirty = true;
        }
        let from = self.occupant_jid(&nick);
        for o in &self.occupants {
            for to in &o.real {
                let mut m = Vec::with_capacity(body.len() + 200);
                let mut w = XmlWriter::new(&mut m);
                w.start("message").attr("from", &from).attr("to", to).attr_opt("id", stanza.attr("id").as_deref());
                w.attr("type", "groupchat").open();
                m.extend_from_slice(&body);
                XmlWriter::new(&mut m).end("message");
                out.push((to.to_string(), m));
            }
        }
        if has_body && self.max_history > 0 {
            let chars = stanza.child("body", stanza.ns()).map_or(0, |b| b.text().chars().count());
            if self.history.len() >= self.max_history {
                self.history.pop_front();
            }
            self.history.push_back(Kept { nick, stamp: crate::clock::now_unix(), body: body.into(), chars });
        }
    }

    // --- invitations (§7.8.2) and declines (§7.8.3) ---

    /// A mediated invitation: the room passes it on, from the inviter's account.
    fn invitations(&mut self, i: usize, stanza: &Element<'_>, out: &mut Outgoing) {
        let Some(x) = stanza.child("x", NS_MUC_USER) else { return };
        let inviter = self.occupants[i].bare.as_str().to_string();
        for invite in x.children().filter(|c| c.is("invite", NS_MUC_USER)).take(MAX_ITEMS) {
            let Some(to) = invite.attr("to").and_then(|t| t.parse::<Jid>().ok()) else { continue };
            let reason = invite.child("reason", NS_MUC_USER).map(|r| r.text().into_owned());
            out.push((to.as_str().to_string(), self.user_notice(to.as_str(), "invite", &inviter, reason.as_deref())));
        }
    }

    /// A declined invitation goes back to whoever sent it.
    fn decline(&self, sender: &Jid, decline: &Element<'_>, out: &mut Outgoing) {
        let Some(to) = decline.attr("to").and_then(|t| t.parse::<Jid>().ok()) else { return };
        let reason = decline.child("reason", NS_MUC_USER).map(|r| r.text().into_owned());
        let from = sender.to_bare();
        out.push((to.as_str().to_string(), self.user_notice(to.as_str(), "decline", from.as_str(), reason.as_deref())));
    }

    /// `<message from=room><x muc#user><NAME from><reason/></NAME></x></message>`.
    fn user_notice(&self, to: &str, name: &str, from: &str, reason: Option<&str>) -> Vec<u8> {
        let mut m = Vec::with_capacity(240);
        let mut w = XmlWriter::new(&mut m);
        w.start("message").attr("from", self.jid.as_str()).attr("to", to).open();
        w.start("x").attr("xmlns", NS_MUC_USER).open();
        w.start(name).attr("from", from);
        match reason {
            Some(r) => {
                w.open().start("reason").open().text(r).end("reason").end(name);
            }
            None => {
                w.close_empty();
            }
        }
        w.end("x").end("message");
        m
    }

    // --- roles and affiliations (§8, §9, §10 with muc#admin) ---

    /// The sender's affiliation and role here.
    fn actor(&self, sender: &Jid) -> (Affiliation, Role) {
        let role = self.by_real(sender.as_str()).map_or(Role::None, |i| self.occupants[i].role);
        (self.affiliation_of(&sender.to_bare()), role)
    }

    /// §9.5, §10.5: the accounts with one affiliation (admins and owners ask), or
    /// the occupants with one role (moderators ask).
    fn admin_list(&self, sender: &Jid, query: &Element<'_>, body: &mut Vec<u8>) -> Result<(), StanzaError> {
        let (affiliation, role) = self.actor(sender);
        let Some(item) = query.child("item", NS_MUC_ADMIN) else {
            return Err(StanzaError::new(Condition::BadRequest));
        };
        let mut items = Vec::new();
        if let Some(wanted) = item.attr("affiliation").and_then(|a| Affiliation::parse(&a)) {
            if affiliation < Affiliation::Admin {
                return Err(StanzaError::new(Condition::Forbidden));
            }
            for (jid, _) in self.affiliations.iter().filter(|(_, a)| *a == wanted) {
                XmlWriter::new(&mut items)
                    .start("item")
                    .attr("affiliation", wanted.name())
                    .attr("jid", jid.as_str())
                    .close_empty();
            }
        } else if let Some(wanted) = item.attr("role").and_then(|r| Role::parse(&r)) {
            if role < Role::Moderator {
                return Err(StanzaError::new(Condition::Forbidden));
            }
            for o in self.occupants.iter().filter(|o| o.role == wanted) {
                XmlWriter::new(&mut items)
                    .start("item")
                    .attr("affiliation", o.affiliation.name())
                    .attr("role", wanted.name())
                    .attr("nick", &o.nick)
                    .attr("jid", o.real.first().map_or("", |r| r))
                    .close_empty();
            }
        } else {
            return Err(StanzaError::new(Condition::BadRequest));
        }
        XmlWriter::new(body).start("query").attr("xmlns", NS_MUC_ADMIN).open();
        body.extend_from_slice(&items);
        XmlWriter::new(body).end("query");
        Ok(())
    }

    /// §8.2–§8.6 (kick, voice, moderator) and §9–§10 (ban, member, admin, owner):
    /// every item is checked first, so an error changes nothing.
    fn admin_set(&mut self, sender: &Jid, query: &Element<'_>, out: &mut Outgoing) -> Result<(), StanzaError> {
        let (actor, actor_role) = self.actor(sender);
        let bad = || StanzaError::new(Condition::BadRequest);
        let mut changes: Vec<(BareJid, Option<Role>, Option<Affiliation>)> = Vec::new();
        for item in query.children().filter(|c| c.is("item", NS_MUC_ADMIN)).take(MAX_ITEMS) {
            if let Some(role) = item.attr("role") {
                let role = Role::parse(&role).ok_or_else(bad)?;
                let nick = item.attr("nick").ok_or_else(bad)?;
                let t = self.by_nick(&nick).ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                let target = &self.occupants[t];
                if actor_role < Role::Moderator {
                    return Err(StanzaError::with_text(Condition::Forbidden, "only moderators change roles"));
                }
                // §8.2: nobody lowers the role of someone with a higher affiliation
                // (nor an admin's or owner's, unless an owner).
                let protected = target.affiliation >= Affiliation::Admin && actor < Affiliation::Owner;
                if target.affiliation > actor || (protected && role < Role::Moderator) {
                    return Err(StanzaError::with_text(Condition::NotAllowed, "their affiliation protects their role"));
                }
                changes.push((target.bare.clone(), Some(role), None));
            } else if let Some(affiliation) = item.attr("affiliation") {
                let affiliation = Affiliation::parse(&affiliation).ok_or_else(bad)?;
                let bare = match (item.attr("jid"), item.attr("nick")) {
                    (Some(j), _) => {
                        j.parse::<Jid>().map(|j| j.to_bare()).map_err(|_| StanzaError::new(Condition::JidMalformed))?
                    }
                    (None, Some(n)) => {
                        let t = self.by_nick(&n).ok_or_else(|| StanzaError::new(Condition::ItemNotFound))?;
                        self.occupants[t].bare.clone()
                    }
                    (None, None) => return Err(bad()),
                };
                let current = self.affiliation_of(&bare);
                // §10: owners change any; admins only what is below admin, to below admin.
                let allowed = actor == Affiliation::Owner
                    || (actor == Affiliation::Admin
                        && current < Affiliation::Admin
                        && affiliation < Affiliation::Admin);
                if !allowed {
                    return Err(StanzaError::with_text(Condition::Forbidden, "your affiliation does not allow that"));
                }
                changes.push((bare, None, Some(affiliation)));
            } else {
                return Err(bad());
            }
        }
        if changes.is_empty() {
            return Err(bad());
        }
        // §10.9: a room keeps an owner; the table keeps its bound.
        let mut table = self.affiliations.clone();
        for (bare, _, affiliation) in &changes {
            if let Some(a) = affiliation {
                table.retain(|(b, _)| b != bare);
                if *a != Affiliation::None {
                    table.push((bare.clone(), *a));
                }
            }
        }
        if !table.iter().any(|(_, a)| *a == Affiliation::Owner) {
            return Err(StanzaError::with_text(Condition::Conflict, "the room must keep an owner"));
        }
        if table.len() > MAX_AFFILIATIONS {
            return Err(StanzaError::with_text(Condition::ResourceConstraint, "the room's affiliation lists are full"));
        }
        if self.affiliations != table {
            self.affiliations = table;
            self.dirty = true;
        }
        for (bare, role, affiliation) in changes {
            let Some(i) = self.occupants.iter().position(|o| o.bare == bare) else { continue };
            match (role, affiliation) {
                (Some(Role::None), _) => self.remove(i, "307", out),
                (_, Some(Affiliation::Outcast)) => self.remove(i, "301", out),
                (Some(r), _) => {
                    self.occupants[i].role = r;
                    self.broadcast_presence(i, None, &[], out);
                }
                (None, Some(a)) => {
                    self.occupants[i].affiliation = a;
                    self.occupants[i].role = self.entering_role(a);
                    self.broadcast_presence(i, None, &[], out);
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// A resource whose queue overflowed leaves (status 333, a technical
    /// removal); the others carry on.
    pub fn technical_removal(&mut self, real: &str, out: &mut Outgoing) {
        let Some(i) = self.by_real(real) else { return };
        if self.occupants[i].real.len() > 1 {
            self.occupants[i].real.retain(|r| &**r != real);
            return;
        }
        log::info!("room {}: {real} removed: its queue is full", self.jid);
        self.remove(i, "333", out);
    }

    /// Takes an occupant out (kicked: 307, banned: 301): every resource of it and
    /// every other occupant hear unavailable with the code.
    fn remove(&mut self, i: usize, code: &str, out: &mut Outgoing) {
        self.occupants[i].role = Role::None;
        self.occupants[i].presence = Box::default();
        self.broadcast(i, None, &[code], true, out);
        log::debug!("room {}: {} removed ({code})", self.jid, self.occupants[i].nick);
        self.occupants.remove(i);
    }

    // --- iq (§10.1, §6.4, XEP-0410) ---

    fn iq(&mut self, sender: &Jid, resource: Option<&str>, iq: &Element<'_>, out: &mut Outgoing) {
        let kind = iq.attr("type");
        if !matches!(kind.as_deref(), Some("get") | Some("set")) {
            return;
        }
        let Some(payload) = iq.children().next() else { return };
        let from = match resource {
            Some(n) => self.occupant_jid(n),
            None => self.jid.as_str().to_string(),
        };
        let occupant = self.by_real(sender.as_str());
        let mut body = Vec::new();
        let answer = match (resource, kind.as_deref(), payload.ns(), payload.name()) {
            // XEP-0410: am I still in the room under this nickname?
            (Some(nick), Some("get"), NS_PING, "ping") => match occupant {
                Some(i) if &*self.occupants[i].nick == nick => Ok(()),
                Some(_) => Err(StanzaError::new(Condition::ServiceUnavailable)),
                None => Err(StanzaError::with_text(Condition::NotAcceptable, "you are not in this room")),
            },
            (Some(_), _, _, _) => Err(StanzaError::new(Condition::ServiceUnavailable)),
            (None, Some("get"), NS_INFO, "query") if payload.attr("node").is_none() => {
                self.write_info(&mut body);
                Ok(())
            }
            (None, Some("get"), NS_ITEMS, "query") => {
                XmlWriter::new(&mut body).empty_ns("query", NS_ITEMS);
                Ok(())
            }
            (None, Some("get"), NS_PING, "ping") => Ok(()),
            (None, _, NS_MUC_OWNER, "query") => self.owner_query(sender, kind.as_deref(), &payload, &mut body, out),
            (None, Some("get"), NS_MUC_ADMIN, "query") => self.admin_list(sender, &payload, &mut body),
            (None, Some("set"), NS_MUC_ADMIN, "query") => self.admin_set(sender, &payload, out),
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        out.push((sender.as_str().to_string(), iq_reply(iq, &from, sender.as_str(), answer, &body)));
    }

    /// §6.4: the room's identity, features, and muc#roominfo.
    fn write_info(&self, body: &mut Vec<u8>) {
        let mut w = XmlWriter::new(body);
        w.start("query").attr("xmlns", NS_INFO).open();
        w.start("identity").attr("category", "conference").attr("type", "text").attr("name", &self.name).close_empty();
        let anonymity = if self.non_anonymous { "muc_nonanonymous" } else { "muc_semianonymous" };
        let visibility = if self.public { "muc_public" } else { "muc_hidden" };
        for f in [
            NS_MUC,
            NS_INFO,
            NS_ITEMS,
            NS_PING,
            NS_OCCUPANT_ID,
            if self.persistent { "muc_persistent" } else { "muc_temporary" },
            if self.members_only { "muc_membersonly" } else { "muc_open" },
            if self.moderated { "muc_moderated" } else { "muc_unmoderated" },
            if self.password.is_some() { "muc_passwordprotected" } else { "muc_unsecured" },
            anonymity,
            visibility,
        ] {
            w.start("feature").attr("var", f).close_empty();
        }
        w.start("x").attr("xmlns", NS_DATA).attr("type", "result").open();
        field(&mut w, "FORM_TYPE", Some("hidden"), NS_ROOMINFO);
        field(&mut w, "muc#roominfo_description", None, &self.description);
        field(&mut w, "muc#roominfo_occupants", None, &self.occupants.len().to_string());
        w.end("x").end("query");
    }

    /// §10.1.2–10.1.3: the owner configures a new room (an empty submit makes it an
    /// instant room) or asks for the form; `cancel` on a new room ends it.
    fn owner_query(
        &mut self,
        sender: &Jid,
        kind: Option<&str>,
        query: &Element<'_>,
        body: &mut Vec<u8>,
        out: &mut Outgoing,
    ) -> Result<(), StanzaError> {
        if self.affiliation_of(&sender.to_bare()) != Affiliation::Owner {
            return Err(StanzaError::with_text(Condition::Forbidden, "only the room's owners configure it"));
        }
        if kind == Some("get") {
            self.write_config_form(body);
            return Ok(());
        }
        if let Some(destroy) = query.child("destroy", NS_MUC_OWNER) {
            self.destroy(&destroy, out);
            return Ok(());
        }
        let Some(form) = query.child("x", NS_DATA) else {
            return Err(StanzaError::new(Condition::BadRequest));
        };
        match form.attr("type").as_deref() {
            Some("cancel") => return Ok(()),
            Some("submit") => {}
            _ => return Err(StanzaError::new(Condition::BadRequest)),
        }
        let was_non_anonymous = self.non_anonymous;
        let mut password_on = self.password.is_some();
        let mut secret = self.password.clone().unwrap_or_default();
        let truthy = |v: &str| matches!(v, "1" | "true");
        for f in form.children().filter(|c| c.name() == "field") {
            let var = f.attr("var").unwrap_or_default();
            let value = f.children().find(|c| c.name() == "value").map(|v| v.text().into_owned()).unwrap_or_default();
            match &*var {
                "muc#roomconfig_roomname" if !value.is_empty() => self.name = value.chars().take(100).collect(),
                "muc#roomconfig_roomdesc" => self.description = value.chars().take(500).collect(),
                "muc#roomconfig_publicroom" => self.public = truthy(&value),
                "muc#roomconfig_persistentroom" => self.persistent = truthy(&value),
                "muc#roomconfig_whois" => self.non_anonymous = value == "anyone",
                "muc#roomconfig_membersonly" => self.members_only = truthy(&value),
                "muc#roomconfig_moderatedroom" => self.moderated = truthy(&value),
                "muc#roomconfig_changesubject" => self.participants_set_subject = truthy(&value),
                "muc#roomconfig_passwordprotectedroom" => password_on = truthy(&value),
                "muc#roomconfig_roomsecret" => secret = value.chars().take(100).collect(),
                "muc#roomconfig_maxusers" => {
                    if let Ok(n) = value.parse::<usize>() {
                        self.max_occupants = n.clamp(2, self.service_max_occupants);
                    }
                }
                _ => {}
            }
        }
        self.password = (password_on && !secret.is_empty()).then_some(secret);
        self.dirty = true;
        if self.locked {
            self.locked = false;
            log::info!("room {} unlocked by its owner", self.jid);
        } else {
            // §10.2.1: occupants hear that the configuration changed (104), and
            // whether real JIDs are now shown (172) or not (173).
            let mut codes = vec!["104"];
            if self.non_anonymous != was_non_anonymous {
                codes.push(if self.non_anonymous { "172" } else { "173" });
            }
            for to in self.occupants.iter().flat_map(|o| o.real.iter()) {
                let mut m = Vec::with_capacity(200);
                let mut w = XmlWriter::new(&mut m);
                w.start("message").attr("from", self.jid.as_str()).attr("to", to).attr("type", "groupchat").open();
                w.start("x").attr("xmlns", NS_MUC_USER).open();
                for c in &codes {
                    w.start("status").attr("code", c).close_empty();
                }
                w.end("x").end("message");
                out.push((to.to_string(), m));
            }
        }
        Ok(())
    }

    /// The muc#roomconfig form with the room's current values (§10.2).
    fn write_config_form(&self, body: &mut Vec<u8>) {
        let mut w = XmlWriter::new(body);
        w.start("query").attr("xmlns", NS_MUC_OWNER).open();
        w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
        w.start("title").open().text("Configuration of the room").end("title");
        field(&mut w, "FORM_TYPE", Some("hidden"), NS_ROOMCONFIG);
        typed_field(&mut w, "muc#roomconfig_roomname", "text-single", "Name", &self.name);
        typed_field(&mut w, "muc#roomconfig_roomdesc", "text-single", "Description", &self.description);
        typed_field(&mut w, "muc#roomconfig_publicroom", "boolean", "Listed in the directory", bool_value(self.public));
        let persistent = bool_value(self.persistent);
        typed_field(&mut w, "muc#roomconfig_persistentroom", "boolean", "Kept when empty", persistent);
        typed_field(&mut w, "muc#roomconfig_membersonly", "boolean", "Members only", bool_value(self.members_only));
        typed_field(&mut w, "muc#roomconfig_moderatedroom", "boolean", "Moderated", bool_value(self.moderated));
        let subject = bool_value(self.participants_set_subject);
        typed_field(&mut w, "muc#roomconfig_changesubject", "boolean", "Participants set the subject", subject);
        let protected = bool_value(self.password.is_some());
        typed_field(&mut w, "muc#roomconfig_passwordprotectedroom", "boolean", "Password protected", protected);
        typed_field(
            &mut w,
            "muc#roomconfig_roomsecret",
            "text-private",
            "Password",
            self.password.as_deref().unwrap_or(""),
        );
        typed_field(
            &mut w,
            "muc#roomconfig_maxusers",
            "text-single",
            "Most occupants",
            &self.max_occupants.to_string(),
        );
        let whois = if self.non_anonymous { "anyone" } else { "moderators" };
        typed_field(&mut w, "muc#roomconfig_whois", "list-single", "Who sees real JIDs", whois);
        w.end("x").end("query");
    }

    /// §10.9: the owner destroys the room; every occupant hears why, and where to go.
    fn destroy(&mut self, destroy: &Element<'_>, out: &mut Outgoing) {
        let venue = destroy.attr("jid").map(|j| j.into_owned());
        let reason = destroy.child("reason", NS_MUC_OWNER).map(|r| r.text().into_owned());
        for o in &self.occupants {
            for to in &o.real {
                let mut p = Vec::with_capacity(300);
                let mut w = XmlWriter::new(&mut p);
                w.start("presence")
                    .attr("from", &self.occupant_jid(&o.nick))
                    .attr("to", to)
                    .attr("type", "unavailable");
                w.open().start("x").attr("xmlns", NS_MUC_USER).open();
                w.start("item").attr("affiliation", "none").attr("role", "none").close_empty();
                w.start("destroy").attr_opt("jid", venue.as_deref());
                match &reason {
                    Some(r) => {
                        w.open().start("reason").open().text(r).end("reason").end("destroy");
                    }
                    None => {
                        w.close_empty();
                    }
                }
                w.end("x").end("presence");
                out.push((to.to_string(), p));
            }
        }
        log::info!("room {} destroyed by its owner", self.jid);
        self.occupants.clear();
        self.persistent = false;
        self.dirty = true;
    }

    /// The role an occupant enters with: visitors in a moderated room (§8.4).
    fn entering_role(&self, affiliation: Affiliation) -> Role {
        match affiliation.default_role() {
            Role::Participant if self.moderated && affiliation < Affiliation::Member => Role::Visitor,
            r => r,
        }
    }
}

fn bool_value(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn field(w: &mut XmlWriter<'_>, var: &str, kind: Option<&str>, value: &str) {
    w.start("field").attr("var", var).attr_opt("type", kind).open();
    w.start("value").open().text(value).end("value").end("field");
}

fn typed_field(w: &mut XmlWriter<'_>, var: &str, kind: &str, label: &str, value: &str) {
    w.start("field").attr("var", var).attr("type", kind).attr("label", label).open();
    w.start("value").open().text(value).end("value").end("field");
}

fn history_wanted(stanza: &Element<'_>) -> HistoryWanted {
    let Some(h) = stanza.child("x", NS_MUC).and_then(|x| x.child("history", NS_MUC)) else {
        return HistoryWanted::default();
    };
    let num = |name: &str| h.attr(name).and_then(|v| v.parse::<usize>().ok());
    let seconds = num("seconds").map(|s| crate::clock::now_unix().saturating_sub(s as u64));
    let since = h.attr("since").and_then(|s| crate::clock::parse_utc_timestamp(&s));
    HistoryWanted {
        maxstanzas: num("maxstanzas"),
        maxchars: num("maxchars"),
        since: match (seconds, since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
    }
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.push(1);
            put(out, b);
        }
        None => out.push(0),
    }
}

/// Reads a room record.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        Some(self.take(usize::from(len))?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
}
