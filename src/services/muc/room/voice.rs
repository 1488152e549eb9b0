//! Voice requests in moderated rooms (XEP-0045 §7.13, §8.6): a visitor asks with
//! a muc#request form, the room passes it to its moderators, and a moderator's
//! submitted answer grants voice. One request per occupant is outstanding at a
//! time, so a visitor cannot flood the moderators.

use super::iq::{field, typed_field};
use super::register::form_value;
use super::*;

const NS_MUC_REQUEST: &str = "http://jabber.org/protocol/muc#request";

impl Room {
    /// Is this message a muc#request form?
    pub(super) fn is_voice_form(stanza: &Element<'_>) -> bool {
        stanza.child("x", NS_DATA).is_some_and(|x| form_value(&x, "FORM_TYPE").as_deref() == Some(NS_MUC_REQUEST))
    }

    /// A visitor's request (passed on to every moderator), or a moderator's
    /// answer to one.
    pub(super) fn voice_form(&mut self, i: usize, stanza: &Element<'_>, out: &mut Outgoing) {
        let Some(form) = stanza.child("x", NS_DATA) else { return };
        let error = |room: &Room, e: StanzaError, out: &mut Outgoing| {
            if let Some(real) = room.occupants[i].real.first().and_then(|r| r.parse::<Jid>().ok()) {
                room.error(&real, None, stanza, e, out);
            }
        };
        if let Some(allow) = form_value(&form, "muc#request_allow") {
            // §8.6: a moderator approves (or not).
            if self.occupants[i].role != Role::Moderator {
                return error(self, StanzaError::new(Condition::Forbidden), out);
            }
            let Some(nick) = form_value(&form, "muc#roomnick") else {
                return error(self, StanzaError::new(Condition::BadRequest), out);
            };
            let Some(t) = self.by_nick(&nick) else { return };
            self.occupants[t].voice_requested = false;
            if matches!(allow.as_str(), "1" | "true") && self.occupants[t].role == Role::Visitor {
                self.occupants[t].role = Role::Participant;
                self.broadcast_presence(t, None, &[], out);
            }
            return;
        }
        // §7.13: a visitor asks for voice.
        if self.occupants[i].role != Role::Visitor {
            return error(self, StanzaError::with_text(Condition::NotAcceptable, "you have voice already"), out);
        }
        if std::mem::replace(&mut self.occupants[i].voice_requested, true) {
            return;
        }
        let o = &self.occupants[i];
        let (nick, real) = (o.nick.to_string(), o.real.first().map_or(String::new(), |r| r.to_string()));
        for m in self.occupants.iter().filter(|m| m.role == Role::Moderator) {
            for to in &m.real {
                let mut msg = Vec::with_capacity(900);
                let mut w = XmlWriter::new(&mut msg);
                w.start("message").attr("from", self.jid.as_str()).attr("to", to).open();
                w.start("x").attr("xmlns", NS_DATA).attr("type", "form").open();
                w.start("title").open().text("Voice request").end("title");
                w.start("instructions")
                    .open()
                    .text("To grant voice, check \"Grant voice to this person?\" and submit.")
                    .end("instructions");
                field(&mut w, "FORM_TYPE", Some("hidden"), NS_MUC_REQUEST);
                typed_field(&mut w, "muc#role", "list-single", "Requested role", "participant");
                typed_field(&mut w, "muc#jid", "jid-single", "User ID", &real);
                typed_field(&mut w, "muc#roomnick", "text-single", "Room Nickname", &nick);
                typed_field(&mut w, "muc#request_allow", "boolean", "Grant voice to this person?", "false");
                w.end("x").end("message");
                out.push((to.to_string(), msg));
            }
        }
    }
}
