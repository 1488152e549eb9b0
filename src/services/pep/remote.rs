//! Remote contacts' resources, as their presence reached a local account: whom
//! PEP notifies on other servers (XEP-0163 §4.3 across federation, as Prosody's
//! and ejabberd's PEP do). A contact's server sends its available resources'
//! presence, with their XEP-0115 caps, to the local account it has a roster item
//! for; unavailable presence forgets one.
//!
//! Bounded: `pep_remote_resources` entries in all, [`PER_ACCOUNT`] per local
//! account; a new entry beyond either bound replaces the oldest. A forgotten
//! resource only misses notifications until its next presence.

use crate::jid::{BareJid, FullJid};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// Remote resources kept for one local account.
pub const PER_ACCOUNT: usize = 32;

/// One remote resource a local account hears from.
#[derive(Clone)]
pub struct Resource {
    pub owner: BareJid,
    pub jid: FullJid,
    /// Its caps verification string, when it advertised one.
    pub caps: Option<Rc<str>>,
}

pub struct RemoteResources {
    entries: RefCell<VecDeque<Resource>>,
    max: usize,
}

impl RemoteResources {
    pub fn new(max: usize) -> RemoteResources {
        RemoteResources { entries: RefCell::new(VecDeque::new()), max }
    }

    /// `jid` is available to `owner` with `caps`; true when its caps are new
    /// (a new resource, or changed caps: it gets the last items again).
    pub fn available(&self, owner: &BareJid, jid: &FullJid, caps: Option<Rc<str>>) -> bool {
        if self.max == 0 {
            return false;
        }
        let mut entries = self.entries.borrow_mut();
        if let Some(e) = entries.iter_mut().find(|e| e.owner == *owner && e.jid == *jid) {
            let changed = e.caps != caps;
            e.caps = caps;
            return changed;
        }
        if entries.iter().filter(|e| e.owner == *owner).count() >= PER_ACCOUNT {
            if let Some(at) = entries.iter().position(|e| e.owner == *owner) {
                entries.remove(at);
            }
        }
        if entries.len() >= self.max {
            entries.pop_front();
        }
        let new = caps.is_some();
        entries.push_back(Resource { owner: owner.clone(), jid: jid.clone(), caps });
        new
    }

    /// `jid` went unavailable to `owner`.
    pub fn unavailable(&self, owner: &BareJid, jid: &FullJid) {
        self.entries.borrow_mut().retain(|e| !(e.owner == *owner && e.jid == *jid));
    }

    /// The resources `owner` hears from.
    pub fn of(&self, owner: &BareJid) -> Vec<Resource> {
        self.entries.borrow().iter().filter(|e| e.owner == *owner).cloned().collect()
    }

    /// Every local account that hears from `jid`.
    pub fn hearing(&self, jid: &FullJid) -> Vec<Resource> {
        self.entries.borrow().iter().filter(|e| e.jid == *jid).cloned().collect()
    }

    /// Forgets everything kept for `owner` (its account is deleted).
    pub fn forget(&self, owner: &BareJid) {
        self.entries.borrow_mut().retain(|e| e.owner != *owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> FullJid {
        s.parse().unwrap()
    }

    #[test]
    fn each_account_and_the_whole_table_are_bounded_and_the_oldest_goes() {
        let table = RemoteResources::new(PER_ACCOUNT + 2);
        let juliet: BareJid = "juliet@hub.test".parse().unwrap();
        let romeo: BareJid = "romeo@hub.test".parse().unwrap();
        for n in 0..PER_ACCOUNT + 1 {
            table.available(&juliet, &full(&format!("c@remote.test/{n}")), None);
        }
        let kept = table.of(&juliet);
        assert_eq!(kept.len(), PER_ACCOUNT);
        assert!(kept.iter().all(|r| r.jid.as_str() != "c@remote.test/0"));
        for n in 0..3 {
            table.available(&romeo, &full(&format!("c@remote.test/r{n}")), None);
        }
        assert_eq!(table.of(&juliet).len() + table.of(&romeo).len(), PER_ACCOUNT + 2);
        assert_eq!(table.of(&romeo).len(), 3);
    }

    #[test]
    fn new_or_changed_caps_are_reported_and_unavailable_forgets() {
        let table = RemoteResources::new(8);
        let juliet: BareJid = "juliet@hub.test".parse().unwrap();
        let phone = full("romeo@remote.test/phone");
        assert!(table.available(&juliet, &phone, Some("v1".into())));
        assert!(!table.available(&juliet, &phone, Some("v1".into())));
        assert!(table.available(&juliet, &phone, Some("v2".into())));
        assert_eq!(table.hearing(&phone).len(), 1);
        table.unavailable(&juliet, &phone);
        assert!(table.of(&juliet).is_empty());
    }
}
