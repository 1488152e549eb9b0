//! XEP-0441 archiving preferences: a default (`always`, `roster`, `never`) and
//! the `<always/>` and `<never/>` lists of JIDs, kept per account as its
//! `mam-prefs` document and, for accounts that changed them, in memory (the
//! decision is made for every archived message).

use crate::jid::{BareJid, Jid};
use crate::stanza::{Condition, StanzaError};
use crate::xml::writer::XmlWriter;
use crate::xml::Element;
use std::collections::HashMap;

use super::NS_MAM;

/// The account document that holds the preferences.
pub const KEY: &str = "mam-prefs";

/// JIDs in each list, at most.
pub const MAX_JIDS: usize = 256;

/// §2.1 `default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Always,
    /// Only messages with contacts in the roster.
    Roster,
    Never,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Always => "always",
            Policy::Roster => "roster",
            Policy::Never => "never",
        }
    }
}

/// What the preferences say of one correspondent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Skip,
    /// Keep if the correspondent's bare JID is in the roster.
    IfInRoster,
}

/// One account's preferences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefs {
    pub default: Policy,
    /// Bare or full JIDs (a bare JID stands for all its resources).
    pub always: Vec<String>,
    pub never: Vec<String>,
}

fn listed(list: &[String], with: &str) -> bool {
    let bare = with.split('/').next().unwrap_or(with);
    list.iter().any(|j| j == with || j == bare)
}

impl Prefs {
    /// §2.1: `never` wins over `always`, both over the default.
    pub fn decide(&self, with: &str) -> Decision {
        if listed(&self.never, with) {
            return Decision::Skip;
        }
        if listed(&self.always, with) {
            return Decision::Keep;
        }
        match self.default {
            Policy::Always => Decision::Keep,
            Policy::Roster => Decision::IfInRoster,
            Policy::Never => Decision::Skip,
        }
    }

    /// `<prefs default><always><jid/>…</always><never>…</never></prefs>`.
    pub fn parse(prefs: &Element<'_>) -> Result<Prefs, StanzaError> {
        let bad = |t: &str| StanzaError::with_text(Condition::BadRequest, t);
        let default = match prefs.attr("default").as_deref() {
            Some("always") => Policy::Always,
            Some("roster") => Policy::Roster,
            Some("never") => Policy::Never,
            _ => return Err(bad("default is always, roster or never")),
        };
        let list = |name: &str| -> Result<Vec<String>, StanzaError> {
            let mut jids = Vec::new();
            for jid in prefs.child(name, NS_MAM).iter().flat_map(|l| l.children()).filter(|c| c.is("jid", NS_MAM)) {
                let jid = jid.text().trim().parse::<Jid>().map_err(|_| StanzaError::new(Condition::JidMalformed))?;
                if jids.len() == MAX_JIDS {
                    let text = format!("at most {MAX_JIDS} JIDs in <{name}/>");
                    return Err(StanzaError::with_text(Condition::PolicyViolation, text));
                }
                let jid = jid.as_str().to_string();
                if !jids.contains(&jid) {
                    jids.push(jid);
                }
            }
            Ok(jids)
        };
        Ok(Prefs { default, always: list("always")?, never: list("never")? })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let mut w = XmlWriter::new(out);
        w.start("prefs").attr("xmlns", NS_MAM).attr("default", self.default.name()).open();
        for (name, list) in [("always", &self.always), ("never", &self.never)] {
            if list.is_empty() {
                w.start(name).close_empty();
                continue;
            }
            w.start(name).open();
            for jid in list {
                w.start("jid").open().text(jid).end("jid");
            }
            w.end(name);
        }
        w.end("prefs");
    }

    /// From the stored document (None: it does not parse, the default holds).
    pub fn decode(xml: &[u8]) -> Option<Prefs> {
        let mut prefs = None;
        crate::xml::for_each_stanza(xml, |el| prefs = Prefs::parse(el).ok());
        prefs
    }
}

/// The preferences of the accounts that set some (the others: always).
#[derive(Default)]
pub struct AllPrefs(std::cell::RefCell<HashMap<BareJid, Prefs>>);

impl AllPrefs {
    /// Reads every stored preference (at start).
    pub fn load(store: &crate::store::Store) -> AllPrefs {
        let mut all = HashMap::new();
        let read = store.account_xml_each(KEY, |owner, xml| {
            if let (Ok(owner), Some(prefs)) = (owner.parse::<BareJid>(), Prefs::decode(xml)) {
                if prefs != Prefs::default() {
                    all.insert(owner, prefs);
                }
            }
            true
        });
        if let Err(e) = read {
            log::error!("archive preferences: {e}");
        }
        AllPrefs(std::cell::RefCell::new(all))
    }

    pub fn get(&self, owner: &BareJid) -> Prefs {
        self.0.borrow().get(owner).cloned().unwrap_or_default()
    }

    pub fn decide(&self, owner: &BareJid, with: &str) -> Decision {
        let all = self.0.borrow();
        match all.get(owner) {
            None => Decision::Keep,
            Some(p) => p.decide(with),
        }
    }

    pub fn set(&self, owner: &BareJid, prefs: Prefs) {
        let mut all = self.0.borrow_mut();
        if prefs == Prefs::default() {
            all.remove(owner);
        } else {
            all.insert(owner.clone(), prefs);
        }
    }

    /// An account is gone.
    pub fn forget(&self, owner: &BareJid) {
        self.0.borrow_mut().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_wins_over_always_and_both_over_the_default_and_a_bare_jid_covers_its_resources() {
        let xml = b"<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@montague.lit</jid></always>\
                    <never><jid>romeo@montague.lit/orchard</jid><jid>tybalt@capulet.lit</jid></never></prefs>";
        let prefs = Prefs::decode(xml).expect("parses");
        assert_eq!(prefs.default, Policy::Roster);
        assert_eq!(prefs.decide("romeo@montague.lit/garden"), Decision::Keep);
        assert_eq!(prefs.decide("romeo@montague.lit/orchard"), Decision::Skip);
        assert_eq!(prefs.decide("tybalt@capulet.lit/x"), Decision::Skip);
        assert_eq!(prefs.decide("nurse@capulet.lit"), Decision::IfInRoster);
        let mut out = Vec::new();
        prefs.write(&mut out);
        assert_eq!(Prefs::decode(&out), Some(prefs), "{}", String::from_utf8_lossy(&out));
        assert!(Prefs::decode(b"<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>").is_none());
    }
}
