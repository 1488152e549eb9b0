//! The room's iqs: disco (§6.4), XEP-0410 self-ping, muc#owner configuration
//! (§10.1, §10.2) and destruction (§10.9).

use super::*;

/// The start of the id of an iq passed on to an occupant.
const FORWARD_ID: &str = "muc-fwd.";

impl Room {
    // --- iq (§10.1, §6.4, XEP-0410) ---

    pub(super) fn iq(&mut self, sender: &Jid, resource: Option<&str>, iq: &Element<'_>, out: &mut Outgoing) {
        let kind = iq.attr("type");
        if !matches!(kind.as_deref(), Some("get") | Some("set")) {
            if let Some(nick) = resource {
                self.forward_iq_answer(sender, nick, iq, out);
            }
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
            (Some(nick), Some("get"), NS_PING, "ping")
                if occupant.is_some_and(|i| &*self.occupants[i].nick == nick) =>
            {
                Ok(())
            }
            (Some(nick), _, _, _) => return self.forward_iq(sender, occupant, nick, iq, out),
            (None, Some("get"), NS_INFO, "query") => match payload.attr("node").as_deref() {
                None => {
                    self.write_info(&mut body);
                    Ok(())
                }
                Some(super::register::NODE_ROOMUSER) => {
                    self.write_reserved_nick(sender, &mut body);
                    Ok(())
                }
                Some(_) => Err(StanzaError::new(Condition::ItemNotFound)),
            },
            (None, Some("get"), NS_ITEMS, "query") => {
                XmlWriter::new(&mut body).empty_ns("query", NS_ITEMS);
                Ok(())
            }
            (None, Some("get"), NS_PING, "ping") => Ok(()),
            (None, _, NS_MUC_OWNER, "query") => self.owner_query(sender, kind.as_deref(), &payload, &mut body, out),
            (None, Some("get"), NS_MUC_ADMIN, "query") => self.admin_list(sender, &payload, &mut body),
            (None, Some("set"), NS_MUC_ADMIN, "query") => self.admin_set(sender, &payload, out),
            (None, _, super::register::NS_REGISTER, "query") => {
                self.register_query(sender, kind.as_deref(), &payload, &mut body, out)
            }
            (None, _, super::vcard::NS_VCARD, "vCard") => {
                self.vcard_query(sender, kind.as_deref(), &payload, &mut body, out)
            }
            _ => Err(StanzaError::new(Condition::ServiceUnavailable)),
        };
        out.push((sender.as_str().to_string(), iq_reply(iq, &from, sender.as_str(), answer, &body)));
    }

    /// An iq to an occupant (a vCard or version request): passed on to its real
    /// JID from the sender's occupant JID, so no real JID is revealed; the id
    /// carries the sender's resource, so the answer finds it without a table.
    fn forward_iq(&self, sender: &Jid, occupant: Option<usize>, nick: &str, iq: &Element<'_>, out: &mut Outgoing) {
        let fail = |e: StanzaError, out: &mut Outgoing| self.error(sender, Some(nick), iq, e, out);
        let Some(i) = occupant else {
            return fail(StanzaError::with_text(Condition::NotAcceptable, "only occupants query occupants"), out);
        };
        let Some(target) = self.by_nick(nick).and_then(|t| self.occupants[t].real.first()) else {
            return fail(StanzaError::with_text(Condition::ItemNotFound, "no occupant has that nickname"), out);
        };
        use base64::Engine;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sender.as_str());
        let id = format!("{FORWARD_ID}{tag}.{}", iq.attr("id").unwrap_or_default());
        let from = self.occupant_jid(&self.occupants[i].nick);
        out.push((target.to_string(), passed_on(iq, &from, target, &id)));
    }

    /// The answer to a forwarded iq, from the occupant that got it, to the
    /// resource that asked (if it is still the occupant with that nickname).
    fn forward_iq_answer(&self, sender: &Jid, nick: &str, iq: &Element<'_>, out: &mut Outgoing) {
        use base64::Engine;
        let Some(answerer) = self.by_real(sender.as_str()) else { return };
        let Some(id) = iq.attr("id") else { return };
        let Some((tag, original)) = id.strip_prefix(FORWARD_ID).and_then(|rest| rest.split_once('.')) else { return };
        let Ok(asker) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag) else { return };
        let Ok(asker) = String::from_utf8(asker) else { return };
        let asks = self.by_nick(nick).is_some_and(|a| self.occupants[a].real.iter().any(|r| **r == *asker));
        if !asks {
            return;
        }
        let from = self.occupant_jid(&self.occupants[answerer].nick);
        let bytes = passed_on(iq, &from, &asker, original);
        out.push((asker, bytes));
    }

    /// §6.4: the room's identity, features, and muc#roominfo.
    pub(super) fn write_info(&self, body: &mut Vec<u8>) {
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
            super::vcard::NS_VCARD,
            "http://jabber.org/protocol/muc#request",
            "http://jabber.org/protocol/muc#register",
            if self.persistent { "muc_persistent" } else { "muc_temporary" },
            if self.members_only { "muc_membersonly" } else { "muc_open" },
            if self.moderated { "muc_moderated" } else { "muc_unmoderated" },
            if self.password.is_some() { "muc_passwordprotected" } else { "muc_unsecured" },
            anonymity,
            visibility,
        ] {
            w.start("feature").attr("var", f).close_empty();
        }
        if self.archives() {
            for f in [crate::services::mam::NS_MAM, crate::services::mam::NS_SID] {
                w.start("feature").attr("var", f).close_empty();
            }
        }
        w.start("x").attr("xmlns", NS_DATA).attr("type", "result").open();
        field(&mut w, "FORM_TYPE", Some("hidden"), NS_ROOMINFO);
        field(&mut w, "muc#roominfo_description", None, &self.description);
        field(&mut w, "muc#roominfo_occupants", None, &self.occupants.len().to_string());
        if let Some(hash) = self.vcard.as_ref().and_then(|v| v.photo_hash.as_deref()) {
            field(&mut w, "muc#roominfo_avatarhash", None, hash);
        }
        w.end("x").end("query");
    }

    /// §10.1.2–10.1.3: the owner configures a new room (an empty submit makes it an
    /// instant room) or asks for the form; `cancel` on a new room ends it.
    pub(super) fn owner_query(
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
        let was_members_only = self.members_only;
        let was_archiving = self.archives();
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
                "muc#roomconfig_allowinvites" => self.allow_invites = truthy(&value),
                "muc#roomconfig_enablearchiving" | "mam" => self.archiving = truthy(&value),
                "muc#roomconfig_allowpm" => {
                    if let Some(p) = PrivateMessages::parse(&value) {
                        self.allow_pm = p;
                    }
                }
                "muc#roomconfig_historylength" | "muc#maxhistoryfetch" => {
                    if let Ok(n) = value.parse::<usize>() {
                        self.max_history = n.min(self.service_max_history);
                        while self.history.len() > self.max_history {
                            self.history.pop_front();
                        }
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
            // 170/171: the room is now logged, or no longer.
            if self.archives() != was_archiving {
                codes.push(if self.archives() { "170" } else { "171" });
            }
            self.config_changed(&codes, out);
        }
        if self.members_only && !was_members_only {
            // §9.4/§10.2: a room that became members-only removes non-members (322).
            while let Some(i) = self.occupants.iter().position(|o| o.affiliation < Affiliation::Member) {
                self.remove(i, "322", &super::admin::Removal::default(), out);
            }
        }
        Ok(())
    }

    /// §10.2.1: every occupant hears that the configuration changed (`codes`).
    pub(super) fn config_changed(&self, codes: &[&str], out: &mut Outgoing) {
        for to in self.occupants.iter().flat_map(|o| o.real.iter()) {
            let mut m = Vec::with_capacity(200);
            let mut w = XmlWriter::new(&mut m);
            w.start("message").attr("from", self.jid.as_str()).attr("to", to).attr("type", "groupchat").open();
            w.start("x").attr("xmlns", NS_MUC_USER).open();
            for c in codes {
                w.start("status").attr("code", c).close_empty();
            }
            w.end("x").end("message");
            out.push((to.to_string(), m));
        }
    }

    /// The muc#roomconfig form with the room's current values (§10.2).
    pub(super) fn write_config_form(&self, body: &mut Vec<u8>) {
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
        let invites = bool_value(self.allow_invites);
        typed_field(&mut w, "muc#roomconfig_allowinvites", "boolean", "Occupants may invite others", invites);
        let pm = self.allow_pm.name();
        typed_field(&mut w, "muc#roomconfig_allowpm", "list-single", "Who may send private messages", pm);
        let history = self.max_history.to_string();
        typed_field(&mut w, "muc#roomconfig_historylength", "text-single", "Messages kept for newcomers", &history);
        if self.archive_on {
            let archiving = bool_value(self.archiving);
            typed_field(&mut w, "muc#roomconfig_enablearchiving", "boolean", "Messages archived", archiving);
        }
        w.end("x").end("query");
    }

    /// §10.9: the owner destroys the room; every occupant hears why, and where to go.
    pub(super) fn destroy(&mut self, destroy: &Element<'_>, out: &mut Outgoing) {
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
}

pub(super) fn bool_value(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

pub(super) fn field(w: &mut XmlWriter<'_>, var: &str, kind: Option<&str>, value: &str) {
    w.start("field").attr("var", var).attr_opt("type", kind).open();
    w.start("value").open().text(value).end("value").end("field");
}

pub(super) fn typed_field(w: &mut XmlWriter<'_>, var: &str, kind: &str, label: &str, value: &str) {
    w.start("field").attr("var", var).attr("type", kind).attr("label", label).open();
    w.start("value").open().text(value).end("value").end("field");
}

/// `iq` re-addressed (from, to, id), its type and children kept.
fn passed_on(iq: &Element<'_>, from: &str, to: &str, id: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(300);
    let mut w = XmlWriter::new(&mut bytes);
    w.start("iq").attr("from", from).attr("to", to).attr("id", id);
    w.attr_opt("type", iq.attr("type").as_deref()).open();
    crate::xml::writer::write_children(&mut bytes, iq, NS_CLIENT, &[], usize::MAX);
    XmlWriter::new(&mut bytes).end("iq");
    bytes
}
