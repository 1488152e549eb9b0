//! Roles and affiliations through muc#admin (§8, §9, §10): kick, voice, ban,
//! membership, admins and owners; the lists.

use super::*;

/// Longest reason kept from a muc#admin item.
const MAX_REASON: usize = 500;

/// One item of a muc#admin set, checked.
struct Change {
    bare: BareJid,
    role: Option<Role>,
    affiliation: Option<Affiliation>,
    reason: Option<String>,
}

/// Who removed an occupant and why (§8.2: `<actor nick/>`, `<reason/>`).
#[derive(Default)]
pub(super) struct Removal<'a> {
    pub actor: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl Room {
    // --- roles and affiliations (§8, §9, §10 with muc#admin) ---

    /// The sender's affiliation and role here.
    pub(super) fn actor(&self, sender: &Jid) -> (Affiliation, Role) {
        let role = self.by_real(sender.as_str()).map_or(Role::None, |i| self.occupants[i].role);
        (self.affiliation_of(&sender.to_bare()), role)
    }

    /// §9.5, §10.5: the accounts with one affiliation (admins and owners ask), or
    /// the occupants with one role (moderators ask).
    pub(super) fn admin_list(&self, sender: &Jid, query: &Element<'_>, body: &mut Vec<u8>) -> Result<(), StanzaError> {
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
    pub(super) fn admin_set(
        &mut self,
        sender: &Jid,
        query: &Element<'_>,
        out: &mut Outgoing,
    ) -> Result<(), StanzaError> {
        let (actor, actor_role) = self.actor(sender);
        let bad = || StanzaError::new(Condition::BadRequest);
        let mut changes: Vec<Change> = Vec::new();
        for item in query.children().filter(|c| c.is("item", NS_MUC_ADMIN)).take(MAX_ITEMS) {
            let reason = item.child("reason", NS_MUC_ADMIN).map(|r| r.text().chars().take(MAX_REASON).collect());
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
                changes.push(Change { bare: target.bare.clone(), role: Some(role), affiliation: None, reason });
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
                changes.push(Change { bare, role: None, affiliation: Some(affiliation), reason });
            } else {
                return Err(bad());
            }
        }
        if changes.is_empty() {
            return Err(bad());
        }
        // §10.9: a room keeps an owner; the table keeps its bound.
        let mut table = self.affiliations.clone();
        for c in &changes {
            if let Some(a) = c.affiliation {
                table.retain(|(b, _)| *b != c.bare);
                if a != Affiliation::None {
                    table.push((c.bare.clone(), a));
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
        let actor_nick = self.by_real(sender.as_str()).map(|i| self.occupants[i].nick.clone());
        for Change { bare, role, affiliation, reason } in changes {
            let Some(i) = self.occupants.iter().position(|o| o.bare == bare) else { continue };
            let why = Removal { actor: actor_nick.as_deref(), reason: reason.as_deref() };
            let out_of_members_only = self.members_only && affiliation.is_some_and(|a| a < Affiliation::Member);
            match (role, affiliation) {
                (Some(Role::None), _) => self.remove(i, "307", &why, out),
                (_, Some(Affiliation::Outcast)) => self.remove(i, "301", &why, out),
                // §9.4: no longer a member of a members-only room.
                (None, Some(_)) if out_of_members_only => self.remove(i, "321", &why, out),
                (Some(r), _) => {
                    self.occupants[i].role = r;
                    self.occupants[i].voice_requested = false;
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
        self.remove(i, "333", &Removal::default(), out);
    }

    /// The service stops: each occupant's resources hear
    /// their own unavailable with 332; the room keeps nothing of its occupants.
    pub fn shut_down(&mut self, out: &mut Outgoing) {
        for o in &self.occupants {
            for to in &o.real {
                out.push((
                    to.to_string(),
                    self.presence_of(o, o, to, &super::presence::Shown::unavailable(&["110", "332"])),
                ));
            }
        }
        self.occupants.clear();
    }

    /// Takes an occupant out (kicked: 307, banned: 301): every resource of it and
    /// every other occupant hear unavailable with the code.
    pub(super) fn remove(&mut self, i: usize, code: &str, why: &Removal<'_>, out: &mut Outgoing) {
        self.occupants[i].role = Role::None;
        self.occupants[i].presence = Box::default();
        let mut item = Vec::new();
        let mut w = XmlWriter::new(&mut item);
        if let Some(nick) = why.actor {
            w.start("actor").attr("nick", nick).close_empty();
        }
        if let Some(reason) = why.reason {
            w.start("reason").open().text(reason).end("reason");
        }
        self.broadcast(i, None, &[code], true, &item, out);
        log::debug!("room {}: {} removed ({code})", self.jid, self.occupants[i].nick);
        self.occupants.remove(i);
    }
}
