//! Reserved nicknames (XEP-0045 §7.10 registration with a room, §7.12 asking for
//! one's reserved nickname): registering makes an account a member and keeps
//! its nickname from everyone else.

use super::*;

pub(super) const NS_REGISTER: &str = "jabber:iq:register";
const NS_MUC_REGISTER: &str = "http://jabber.org/protocol/muc#register";
/// The disco#info node that answers with one's reserved nickname (§7.12).
pub(super) const NODE_ROOMUSER: &str = "x-roomuser-item";

impl Room {
    /// The nickname `bare` reserved here.
    pub(super) fn reserved_nick(&self, bare: &BareJid) -> Option<&str> {
        self.reserved.iter().find(|(b, _)| b == bare).map(|(_, n)| &**n)
    }

    /// Is `nick` reserved by an account other than `bare`?
    pub(super) fn reserved_by_other(&self, nick: &str, bare: &BareJid) -> bool {
        self.reserved.iter().any(|(b, n)| b != bare && &**n == nick)
    }

    /// §7.10: the registration form (or what is registered), a submitted form,
    /// or `<remove/>`.
    pub(super) fn register_query(
        &mut self,
        sender: &Jid,
        kind: Option<&str>,
        query: &Element<'_>,
        body: &mut Vec<u8>,
        out: &mut Outgoing,
    ) -> Result<(), StanzaError> {
        let bare = sender.to_bare();
        let affiliation = self.affiliation_of(&bare);
        if affiliation == Affiliation::Outcast {
            return Err(StanzaError::with_text(Condition::Forbidden, "you are banned from this room"));
        }
        if kind == Some("get") {
            let mut w = XmlWriter::new(body);
            w.start("query").attr("xmlns", NS_REGISTER).open();
            match self.reserved_nick(&bare) {
                Some(nick) => {
                    w.start("registered").close_empty();
                    w.start("username").open().text(nick).end("username");
                }
                None => {
                    w.start("instructions").open().text("Reserve a nickname in this room").end("instructions");
                    w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
                    w.start("title").open().text("Registration with the room").end("title");
                    w.start("field").attr("var", "FORM_TYPE").attr("type", "hidden").open();
                    w.start("value").open().text(NS_MUC_REGISTER).end("value").end("field");
                    w.start("field")
                        .attr("var", "muc#register_roomnick")
                        .attr("type", "text-single")
                        .attr("label", "Nickname")
                        .open();
                    w.start("required").close_empty().end("field").end("x");
                }
            }
            w.end("query");
            return Ok(());
        }
        if query.child("remove", NS_REGISTER).is_some() {
            // Unregistering: the nickname is free again, a member is no longer one.
            self.reserved.retain(|(b, _)| *b != bare);
            if affiliation == Affiliation::Member {
                self.affiliations.retain(|(b, _)| *b != bare);
                self.set_occupant_affiliation(&bare, Affiliation::None, out);
            }
            self.dirty = true;
            return Ok(());
        }
        let nick = query
            .child("x", NS_DATA)
            .filter(|x| x.attr("type").as_deref() == Some("submit"))
            .and_then(|x| form_value(&x, "muc#register_roomnick"))
            .ok_or_else(|| StanzaError::with_text(Condition::BadRequest, "submit muc#register_roomnick"))?;
        let valid = !nick.is_empty() && nick.len() <= MAX_NICK && self.occupant_jid(&nick).parse::<Jid>().is_ok();
        if !valid {
            return Err(StanzaError::with_text(Condition::NotAcceptable, "not a nickname this room takes"));
        }
        if self.members_only && affiliation < Affiliation::Member {
            return Err(StanzaError::with_text(Condition::NotAllowed, "this room's members are invited by its admins"));
        }
        let taken = self.reserved_by_other(&nick, &bare)
            || self.occupants.iter().any(|o| &*o.nick == nick.as_str() && o.bare != bare);
        if taken {
            return Err(StanzaError::with_text(Condition::Conflict, "that nickname is someone else's"));
        }
        let new_member = affiliation == Affiliation::None;
        if self.reserved_nick(&bare).is_none() && self.affiliations.len() + self.reserved.len() + 2 > MAX_AFFILIATIONS {
            return Err(StanzaError::with_text(Condition::ResourceConstraint, "the room's registrations are full"));
        }
        self.reserved.retain(|(b, _)| *b != bare);
        self.reserved.push((bare.clone(), nick.into_boxed_str()));
        if new_member {
            self.affiliations.push((bare.clone(), Affiliation::Member));
            self.set_occupant_affiliation(&bare, Affiliation::Member, out);
        }
        self.dirty = true;
        Ok(())
    }

    /// §7.12: disco#info on the `x-roomuser-item` node names one's reserved
    /// nickname (an empty answer if there is none).
    pub(super) fn write_reserved_nick(&self, sender: &Jid, body: &mut Vec<u8>) {
        let mut w = XmlWriter::new(body);
        w.start("query").attr("xmlns", NS_INFO).attr("node", NODE_ROOMUSER).open();
        if let Some(nick) = self.reserved_nick(&sender.to_bare()) {
            w.start("identity").attr("category", "conference").attr("type", "text").attr("name", nick).close_empty();
        }
        w.end("query");
    }

    /// An account's affiliation changed: its occupant (if in the room) takes the
    /// new one and everyone sees it.
    pub(super) fn set_occupant_affiliation(&mut self, bare: &BareJid, a: Affiliation, out: &mut Outgoing) {
        if let Some(i) = self.occupants.iter().position(|o| o.bare == *bare) {
            self.occupants[i].affiliation = a;
            if self.occupants[i].role != Role::Moderator {
                self.occupants[i].role = self.entering_role(a);
            }
            self.broadcast_presence(i, None, &[], out);
        }
    }
}

/// The first value of a data form's field.
pub(super) fn form_value(form: &Element<'_>, var: &str) -> Option<String> {
    form.children()
        .filter(|f| f.name() == "field" && f.attr("var").as_deref() == Some(var))
        .find_map(|f| f.children().find(|c| c.name() == "value").map(|v| v.text().into_owned()))
}
