//! Entering, nickname changes, presence updates and leaving (XEP-0045 §7.2,
//! §7.6, §7.7, §7.14), with history and the subject on entering.

use super::*;

impl Room {
    // --- presence (§7.2, §7.6, §7.14) ---

    pub(super) fn presence(&mut self, sender: &Jid, resource: Option<&str>, stanza: &Element<'_>, out: &mut Outgoing) {
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

    pub(super) fn join(&mut self, sender: &Jid, nick: &str, stanza: &Element<'_>, out: &mut Outgoing) {
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
        if self.reserved_by_other(nick, &bare) {
            return refuse(self, Condition::Conflict, "that nickname is reserved by a member", out);
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
                    voice_requested: false,
                });
                self.occupants.len() - 1
            }
        };
        // §7.2.3: the others' presence to the new occupant, then its own to all.
        let newcomer = &self.occupants[index];
        for (i, o) in self.occupants.iter().enumerate() {
            if i != index {
                out.push((real.to_string(), self.presence_of(o, newcomer, real, &Shown::available(&[]))));
            }
        }
        let mut codes: Vec<&str> = Vec::new();
        if self.non_anonymous {
            codes.push("100");
        }
        if created {
            codes.push("201");
        }
        // §7.2.12: the room is logged (its archive).
        if self.archives() {
            codes.push("170");
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

    pub(super) fn history_for(&self, wanted: &HistoryWanted) -> Vec<&Kept> {
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

    pub(super) fn subject_message(&self, to: &str) -> Vec<u8> {
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
    pub(super) fn change_nick(&mut self, i: usize, real: &str, nick: &str, stanza: &Element<'_>, out: &mut Outgoing) {
        let reserved = self.reserved_by_other(nick, &self.occupants[i].bare);
        if let Some(j) = self.by_nick(nick).or(reserved.then_some(i)) {
            if reserved || self.occupants[j].bare != self.occupants[i].bare {
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
    pub(super) fn leave(&mut self, i: usize, real: &str, presence: &[u8], codes: &[&str], out: &mut Outgoing) {
        if self.occupants[i].real.len() > 1 {
            self.occupants[i].real.retain(|r| &**r != real);
            let o = &self.occupants[i];
            out.push((real.to_string(), self.presence_of(o, o, real, &Shown::unavailable(&["110"]))));
            return;
        }
        self.occupants[i].presence = presence.into();
        self.broadcast(i, None, codes, true, &[], out);
        self.occupants.remove(i);
    }

    /// Occupant `i`'s presence to every occupant (`new_nick`: the 303 form).
    pub(super) fn broadcast_presence(&self, i: usize, new_nick: Option<&str>, codes: &[&str], out: &mut Outgoing) {
        self.broadcast(i, new_nick, codes, new_nick.is_some(), &[], out);
    }

    /// Occupant `i`'s presence to every resource of every occupant, with `codes`
    /// (and 110 to its own resources); `item` goes inside `<item/>` (the actor
    /// and reason of a removal).
    pub(super) fn broadcast(
        &self,
        i: usize,
        new_nick: Option<&str>,
        codes: &[&str],
        unavailable: bool,
        item: &[u8],
        out: &mut Outgoing,
    ) {
        let o = &self.occupants[i];
        for viewer in &self.occupants {
            let mut own: Vec<&str> = codes.to_vec();
            if viewer.bare == o.bare {
                own.push("110");
            }
            for to in &viewer.real {
                out.push((
                    to.to_string(),
                    self.presence_of(o, viewer, to, &Shown { new_nick, codes: &own, unavailable, item }),
                ));
            }
        }
    }

    /// `o`'s presence as `viewer` sees it (at its resource `to`): the real JID only
    /// to moderators, or to all in a non-anonymous room (§7.2.3, §7.2.4).
    pub(super) fn presence_of(&self, o: &Occupant, viewer: &Occupant, to: &str, shown: &Shown<'_>) -> Vec<u8> {
        let Shown { new_nick, codes, unavailable, item } = *shown;
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
        w.attr_opt("nick", new_nick);
        if item.is_empty() {
            w.close_empty();
        } else {
            w.open();
            p.extend_from_slice(item);
            XmlWriter::new(&mut p).end("item");
        }
        let mut w = XmlWriter::new(&mut p);
        for code in codes {
            w.start("status").attr("code", code).close_empty();
        }
        w.end("x");
        w.start("occupant-id").attr("xmlns", NS_OCCUPANT_ID).attr("id", &self.occupant_id(&o.bare)).close_empty();
        w.end("presence");
        p
    }
}

/// How an occupant's presence is shown: the 303 form's new nickname, the
/// status codes, unavailable or not, and what goes inside `<item/>`.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a> {
    pub new_nick: Option<&'a str>,
    pub codes: &'a [&'a str],
    pub unavailable: bool,
    pub item: &'a [u8],
}

impl<'a> Shown<'a> {
    pub fn available(codes: &'a [&'a str]) -> Shown<'a> {
        Shown { new_nick: None, codes, unavailable: false, item: &[] }
    }

    pub fn unavailable(codes: &'a [&'a str]) -> Shown<'a> {
        Shown { new_nick: None, codes, unavailable: true, item: &[] }
    }
}

pub(super) fn history_wanted(stanza: &Element<'_>) -> HistoryWanted {
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
