//! Groupchat messages and the subject (§7.4, §8.1), private messages (§7.5),
//! mediated invitations and declines (§7.8).

use super::*;

impl Room {
    // --- messages (§7.4, §7.5, §8.1) ---

    pub(super) fn message(&mut self, sender: &Jid, resource: Option<&str>, stanza: &Element<'_>, out: &mut Outgoing) {
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
            (None, Some("normal") | None) if Room::is_voice_form(stanza) => self.voice_form(i, stanza, out),
            (None, Some("normal") | None) if stanza.child("x", NS_MUC_USER).is_some() => {
                self.invitations(i, stanza, out)
            }
            (Some(_), Some("chat") | Some("normal") | None) if !self.allow_pm.allows(self.occupants[i].role) => {
                let e = StanzaError::with_text(Condition::NotAcceptable, "private messages are not allowed here");
                self.error(sender, resource, stanza, e, out);
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

    pub(super) fn groupchat(&mut self, i: usize, stanza: &Element<'_>, out: &mut Outgoing) {
        let nick = self.occupants[i].nick.clone();
        if self.occupants[i].role < Role::Participant {
            let e = StanzaError::with_text(Condition::Forbidden, "visitors have no voice in this room");
            if let Some(real) = self.occupants[i].real.first().and_then(|r| r.parse::<Jid>().ok()) {
                self.error(&real, None, stanza, e, out);
            }
            return;
        }
        let has_body = stanza.child("body", stanza.ns()).is_some();
        // XEP-0313 §5.1.2 / XEP-0359: an archived message carries the room's
        // stanza-id (any claiming to be the room's is dropped; origin-id stays).
        let archive_id = self.archive_next.take().filter(|_| self.archives());
        let archive_id = archive_id.filter(|_| has_body || stanza.child("subject", stanza.ns()).is_some());
        let mut body = match archive_id {
            None => children_except(stanza, &[NS_DELAY, NS_OCCUPANT_ID]),
            Some(_) => {
                let mut b = children_except(stanza, &[NS_DELAY, NS_OCCUPANT_ID, NS_SID]);
                if let Some(origin) = stanza.child("origin-id", NS_SID) {
                    crate::xml::writer::write_element(&mut b, &origin, NS_CLIENT, None, &[]);
                }
                b
            }
        };
        XmlWriter::new(&mut body)
            .start("occupant-id")
            .attr("xmlns", NS_OCCUPANT_ID)
            .attr("id", &self.occupant_id(&self.occupants[i].bare))
            .close_empty();
        if let Some(id) = archive_id {
            XmlWriter::new(&mut body)
                .start("stanza-id")
                .attr("xmlns", NS_SID)
                .attr("by", self.jid.as_str())
                .attr("id", &id.text())
                .close_empty();
        }
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
        if let Some(id) = archive_id {
            let mut m = Vec::with_capacity(body.len() + 120);
            let mut w = XmlWriter::new(&mut m);
            w.start("message").attr("from", &from).attr_opt("id", stanza.attr("id").as_deref());
            w.attr("type", "groupchat").open();
            m.extend_from_slice(&body);
            XmlWriter::new(&mut m).end("message");
            let direction = crate::store::archive::Direction::Received;
            self.to_archive.push(Archived { id, direction, with: from.clone(), stanza: m.into(), stamped: false });
        }
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
    pub(super) fn invitations(&mut self, i: usize, stanza: &Element<'_>, out: &mut Outgoing) {
        let Some(x) = stanza.child("x", NS_MUC_USER) else { return };
        let o = &self.occupants[i];
        if !self.allow_invites && o.role < Role::Moderator && o.affiliation < Affiliation::Admin {
            let e = StanzaError::with_text(Condition::Forbidden, "only moderators invite to this room");
            if let Some(real) = o.real.first().and_then(|r| r.parse::<Jid>().ok()) {
                self.error(&real, None, stanza, e, out);
            }
            return;
        }
        let inviter = self.occupants[i].bare.as_str().to_string();
        for invite in x.children().filter(|c| c.is("invite", NS_MUC_USER)).take(MAX_ITEMS) {
            let Some(to) = invite.attr("to").and_then(|t| t.parse::<Jid>().ok()) else { continue };
            let reason = invite.child("reason", NS_MUC_USER).map(|r| r.text().into_owned());
            out.push((to.as_str().to_string(), self.user_notice(to.as_str(), "invite", &inviter, reason.as_deref())));
        }
    }

    /// A declined invitation goes back to whoever sent it.
    pub(super) fn decline(&self, sender: &Jid, decline: &Element<'_>, out: &mut Outgoing) {
        let Some(to) = decline.attr("to").and_then(|t| t.parse::<Jid>().ok()) else { return };
        let reason = decline.child("reason", NS_MUC_USER).map(|r| r.text().into_owned());
        let from = sender.to_bare();
        out.push((to.as_str().to_string(), self.user_notice(to.as_str(), "decline", from.as_str(), reason.as_deref())));
    }

    /// `<message from=room><x muc#user><NAME from><reason/></NAME></x></message>`.
    pub(super) fn user_notice(&self, to: &str, name: &str, from: &str, reason: Option<&str>) -> Vec<u8> {
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
}
