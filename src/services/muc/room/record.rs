//! A persistent room's record in the store: its configuration, affiliations and
//! subject (not its occupants or history).

use super::*;
use crate::store::record::{put, Reader};

impl Room {
    /// The store's record of a persistent room: `version 2, flags, name,
    /// description, password?, max occupants (u32), secret (16), subject? (nick,
    /// bytes), affiliations (u16 count, then jid and code each)`; version 2 adds
    /// `reserved nicknames (u16 count, then jid and nick each), vCard? (bytes,
    /// photo hash?), private-message policy (u8), history length (u16)` (and
    /// flag 6, invitations by occupants; flag 7, not archiving).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![2];
        let flags = [
            self.public,
            self.non_anonymous,
            self.members_only,
            self.moderated,
            self.participants_set_subject,
            self.locked,
            self.allow_invites,
            // Flag 7 is set when the room does *not* archive (older records: on).
            !self.archiving,
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
        out.extend_from_slice(&(self.reserved.len() as u16).to_be_bytes());
        for (jid, nick) in &self.reserved {
            put(&mut out, jid.as_str().as_bytes());
            put(&mut out, nick.as_bytes());
        }
        match &self.vcard {
            Some(v) => {
                out.push(1);
                put(&mut out, &v.bytes);
                put_opt(&mut out, v.photo_hash.as_deref().map(str::as_bytes));
            }
            None => out.push(0),
        }
        out.push(PrivateMessages::ALL.iter().position(|p| *p == self.allow_pm).unwrap_or(0) as u8);
        out.extend_from_slice(&(self.max_history.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out
    }

    /// A persistent room from its record; `None` if the record is not one.
    pub fn decode(jid: BareJid, record: &[u8], config: &MucConfig) -> Option<Room> {
        let mut r = Reader(record);
        let version = r.u8()?;
        if !matches!(version, 1 | 2) {
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
            _ => Some((r.string()?.into_boxed_str(), Box::from(r.bytes()?))),
        };
        let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let mut affiliations = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let jid = r.string()?.parse::<BareJid>().ok()?;
            let a = *Affiliation::ALL.get(usize::from(r.u8()?))?;
            affiliations.push((jid, a));
        }
        let mut reserved = Vec::new();
        let mut vcard = None;
        if version >= 2 {
            let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
            for _ in 0..count {
                let jid = r.string()?.parse::<BareJid>().ok()?;
                reserved.push((jid, r.string()?.into_boxed_str()));
            }
            if r.u8()? == 1 {
                let bytes = Box::from(r.bytes()?);
                let photo_hash = match r.u8()? {
                    0 => None,
                    _ => Some(r.string()?),
                };
                vcard = Some(super::vcard::RoomVcard { bytes, photo_hash });
            }
        }
        let (allow_pm, max_history) = if version >= 2 {
            let pm = *PrivateMessages::ALL.get(usize::from(r.u8()?))?;
            (pm, usize::from(u16::from_be_bytes(r.take(2)?.try_into().ok()?)).min(config.history))
        } else {
            (PrivateMessages::Anyone, config.history)
        };
        let mut room = Room::new(jid, affiliations.first()?.0.clone(), config);
        room.reserved = reserved;
        room.vcard = vcard;
        room.public = flag(0);
        room.non_anonymous = flag(1);
        room.members_only = flag(2);
        room.moderated = flag(3);
        room.participants_set_subject = flag(4);
        room.locked = flag(5);
        room.allow_invites = version < 2 || flag(6);
        room.archiving = !flag(7);
        room.allow_pm = allow_pm;
        room.max_history = max_history;
        room.name = name;
        room.description = description;
        room.password = password;
        room.max_occupants = max_occupants;
        room.secret = secret;
        room.subject = subject;
        room.affiliations = affiliations;
        room.persistent = true;
        room.stored = true;
        Some(room)
    }
}

pub(super) fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.push(1);
            put(out, b);
        }
        None => out.push(0),
    }
}
