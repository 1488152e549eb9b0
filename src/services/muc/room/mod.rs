//! One room (XEP-0045): its occupants, subject and history, as a core that takes
//! a stanza from a real JID and appends what to send to [`Outgoing`].

use super::{children_except, iq_reply, Outgoing, NS_MUC, NS_MUC_OWNER, NS_MUC_USER};
use crate::config::MucConfig;
use crate::jid::{BareJid, Jid};
use crate::ns::{NS_CLIENT, NS_DELAY, NS_INFO, NS_ITEMS, NS_PING};
use crate::services::mam::NS_SID;
use crate::stanza::{Condition, StanzaError};
use crate::store::archive::{ArchiveId, Archived};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use std::collections::VecDeque;

mod admin;
mod iq;
mod messages;
mod presence;
mod record;
mod register;
mod vcard;
mod voice;

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

/// Who may send private messages in a room, lowest bar first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PrivateMessages {
    Anyone,
    Participants,
    Moderators,
    Nobody,
}

impl PrivateMessages {
    const ALL: [PrivateMessages; 4] =
        [PrivateMessages::Anyone, PrivateMessages::Participants, PrivateMessages::Moderators, PrivateMessages::Nobody];

    /// The `muc#roomconfig_allowpm` value.
    fn name(self) -> &'static str {
        match self {
            PrivateMessages::Anyone => "anyone",
            PrivateMessages::Participants => "participants",
            PrivateMessages::Moderators => "moderators",
            PrivateMessages::Nobody => "none",
        }
    }

    fn parse(s: &str) -> Option<PrivateMessages> {
        PrivateMessages::ALL.into_iter().find(|p| p.name() == s)
    }

    /// May an occupant with this role send one?
    fn allows(self, role: Role) -> bool {
        match self {
            PrivateMessages::Anyone => true,
            PrivateMessages::Participants => role >= Role::Participant,
            PrivateMessages::Moderators => role == Role::Moderator,
            PrivateMessages::Nobody => false,
        }
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
    /// A voice request of its is with the moderators (§7.13).
    voice_requested: bool,
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
    /// Occupants may invite others (`muc#roomconfig_allowinvites`); otherwise only
    /// moderators and admins do.
    allow_invites: bool,
    /// Who may send private messages (`muc#roomconfig_allowpm`).
    allow_pm: PrivateMessages,
    /// New rooms stay locked until their owner configures them (§10.1.3).
    locked: bool,
    /// Kept (in the store too) when its last occupant leaves.
    pub persistent: bool,
    /// What the store keeps changed since the service last saved it.
    dirty: bool,
    /// The store holds a record of the room.
    stored: bool,
    /// Accounts with an affiliation other than none (at most [`MAX_AFFILIATIONS`]).
    affiliations: Vec<(BareJid, Affiliation)>,
    /// Keys the XEP-0421 occupant ids (stable per account in this room).
    secret: [u8; 16],
    occupants: Vec<Occupant>,
    subject: Option<(Box<str>, Box<[u8]>)>,
    history: VecDeque<Kept>,
    /// Messages kept for joiners (`muc#roomconfig_historylength`, up to the
    /// service's `muc_history`).
    max_history: usize,
    service_max_history: usize,
    max_occupants: usize,
    /// The service's bound, which `muc#roomconfig_maxusers` cannot pass.
    service_max_occupants: usize,
    /// The hub's admins (owners of every room).
    admins: std::sync::Arc<[BareJid]>,
    /// Nicknames reserved by registration (§7.10), at most one per account;
    /// together with `affiliations` within [`MAX_AFFILIATIONS`].
    reserved: Vec<(BareJid, Box<str>)>,
    /// The room's vcard-temp (its avatar), and the SHA-1 of its photo.
    vcard: Option<vcard::RoomVcard>,
    /// The room keeps its messages in the archive
    /// (`muc#roomconfig_enablearchiving`; only while the hub's archive is on).
    archiving: bool,
    /// The hub's archive is on.
    archive_on: bool,
    /// The id the next groupchat message gets in the archive (the service hands
    /// one out before each).
    archive_next: Option<ArchiveId>,
    /// Messages to append to the room's archive (taken by the service).
    to_archive: Vec<Archived>,
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
            allow_invites: true,
            allow_pm: PrivateMessages::Anyone,
            locked: true,
            persistent: false,
            dirty: false,
            stored: false,
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
            service_max_history: config.history,
            max_occupants: config.max_occupants,
            service_max_occupants: config.max_occupants,
            admins: std::sync::Arc::clone(&config.admins),
            reserved: Vec::new(),
            vcard: None,
            archiving: true,
            archive_on: config.archive,
            archive_next: None,
            to_archive: Vec::new(),
        }
    }

    /// Does the room keep an archive (XEP-0313)?
    pub fn archives(&self) -> bool {
        self.archive_on && self.archiving
    }

    /// The archive id the next groupchat message gets.
    pub fn offer_archive_id(&mut self, id: ArchiveId) {
        self.archive_next = Some(id);
    }

    /// What to append to the room's archive since the last call.
    pub fn take_archived(&mut self) -> Vec<Archived> {
        self.archive_next = None;
        std::mem::take(&mut self.to_archive)
    }

    /// Who may read the archive: not the banned; in a members-only room, members
    /// and up.
    pub fn may_read_archive(&self, sender: &Jid) -> Result<(), StanzaError> {
        let affiliation = self.affiliation_of(&sender.to_bare());
        if affiliation == Affiliation::Outcast {
            return Err(StanzaError::with_text(Condition::Forbidden, "you are banned from this room"));
        }
        if self.members_only && affiliation < Affiliation::Member {
            return Err(StanzaError::with_text(Condition::Forbidden, "the archive is for the room's members"));
        }
        Ok(())
    }

    /// The history newcomers get, from the archive's newest messages (at start:
    /// what was in memory is gone).
    pub fn fill_history(&mut self, newest: &[Archived]) {
        for m in newest {
            crate::xml::for_each_stanza(&m.stanza, |el| {
                let Some(body) = el.child("body", el.ns()) else { return };
                let Some(nick) = el.attr("from").and_then(|f| f.split_once('/').map(|(_, n)| n.to_string())) else {
                    return;
                };
                let chars = body.text().chars().count();
                let kept = children_except(el, &[]);
                self.history.push_back(Kept {
                    nick: nick.into(),
                    stamp: m.id.micros() / 1_000_000,
                    body: kept.into(),
                    chars,
                });
            });
            if self.history.len() > self.max_history {
                self.history.pop_front();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    /// Once after a change the store keeps (configuration, affiliations,
    /// subject): the record to store, or `None` to delete the stored one (a room
    /// no longer persistent). A room that never was persistent costs no write.
    pub fn take_store_change(&mut self) -> Option<Option<Vec<u8>>> {
        if !std::mem::take(&mut self.dirty) || !(self.persistent || self.stored) {
            return None;
        }
        self.stored = self.persistent;
        Some(self.persistent.then(|| self.encode()))
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

    /// The account's affiliation: the hub's admins own every room.
    fn affiliation_of(&self, bare: &BareJid) -> Affiliation {
        if self.admins.contains(bare) {
            return Affiliation::Owner;
        }
        self.affiliations.iter().find(|(b, _)| b == bare).map_or(Affiliation::None, |(_, a)| *a)
    }

    /// Is `bare` one of the room's owners (by its affiliation list)?
    pub fn is_owned_by(&self, bare: &BareJid) -> bool {
        self.affiliations.iter().any(|(b, a)| b == bare && *a == Affiliation::Owner)
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

    /// An error reply from the room (`by` the room). A refused entry carries
    /// `<x xmlns=muc/>` as XEP-0045's examples do (§7.2.6–§7.2.10): clients
    /// such as Profanity only take an error with it as the end of their join.
    fn error(&self, to: &Jid, resource: Option<&str>, stanza: &Element<'_>, e: StanzaError, out: &mut Outgoing) {
        let from = match resource {
            Some(n) => self.occupant_jid(n),
            None => self.jid.as_str().to_string(),
        };
        if let Some(bytes) = super::error_reply(stanza, &from, to.as_str(), self.jid.as_str(), e) {
            out.push((to.as_str().to_string(), bytes));
        }
    }

    /// The role an occupant enters with: visitors in a moderated room (§8.4).
    fn entering_role(&self, affiliation: Affiliation) -> Role {
        match affiliation.default_role() {
            Role::Participant if self.moderated && affiliation < Affiliation::Member => Role::Visitor,
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        let config = MucConfig {
            domain: crate::jid::Domain::parse("conference.example").expect("a domain"),
            creation: crate::config::RoomCreation::Local,
            admins: std::sync::Arc::from(Vec::new()),
            max_rooms: 2,
            max_rooms_per_user: 2,
            max_occupants: 3,
            history: 2,
            archive: false,
        };
        let jid = BareJid::parse("garden@conference.example").expect("a room JID");
        Room::new(jid, BareJid::parse("alice@example").expect("a JID"), &config)
    }

    #[test]
    fn a_room_is_written_to_the_store_only_while_or_once_it_was_persistent() {
        let mut r = room();
        r.dirty = true;
        assert!(r.take_store_change().is_none(), "a room never persistent costs no write");
        r.persistent = true;
        r.dirty = true;
        assert!(matches!(r.take_store_change(), Some(Some(_))), "a persistent room is stored");
        assert!(r.take_store_change().is_none(), "once per change");
        r.persistent = false;
        r.dirty = true;
        assert!(matches!(r.take_store_change(), Some(None)), "its record goes when it stops being persistent");
        r.dirty = true;
        assert!(r.take_store_change().is_none(), "and then nothing is written");
    }
}
