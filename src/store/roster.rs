//! Rosters (RFC 6121 §2): one row per (owner, contact) with the subscription state,
//! name and groups, and per owner a version counter for roster versioning (§2.6).
//! A removed item leaves a tombstone carrying its version, so a reconnecting client
//! gets only the changes; past [`MAX_TOMBSTONES`] they are pruned and a client with
//! an older version gets the whole roster.

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// (owner bare JID, contact bare JID) → item record.
/// Subscription requests from JIDs not in the roster (hidden rows) one account
/// keeps at once.
pub const MAX_PENDING_IN: usize = 64;

const ROSTER: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("roster");
/// owner → (current version, oldest version whose changes are still known).
const ROSTER_VERSION: TableDefinition<&str, (u64, u64)> = TableDefinition::new("roster_version");

pub const MAX_TOMBSTONES: usize = 64;

/// The subscription state of an item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// The state after gaining a subscription to the contact's presence.
    pub fn with_to(self) -> Subscription {
        match self {
            Subscription::None | Subscription::To => Subscription::To,
            Subscription::From | Subscription::Both => Subscription::Both,
        }
    }

    /// The state after losing the subscription to the contact's presence.
    pub fn without_to(self) -> Subscription {
        match self {
            Subscription::None | Subscription::To => Subscription::None,
            Subscription::From | Subscription::Both => Subscription::From,
        }
    }

    /// The state after the contact gains a subscription to the user's presence.
    pub fn with_from(self) -> Subscription {
        match self {
            Subscription::None | Subscription::From => Subscription::From,
            Subscription::To | Subscription::Both => Subscription::Both,
        }
    }

    /// The state after the contact loses its subscription to the user's presence.
    pub fn without_from(self) -> Subscription {
        match self {
            Subscription::None | Subscription::From => Subscription::None,
            Subscription::To | Subscription::Both => Subscription::To,
        }
    }

    /// The user receives the contact's presence (`to` or `both`).
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence (`from` or `both`).
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    pub fn wire_name(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    fn code(self) -> u8 {
        self as u8
    }
    fn from_code(c: u8) -> Option<Subscription> {
        [Subscription::None, Subscription::To, Subscription::From, Subscription::Both].get(usize::from(c)).copied()
    }
}

/// Bytes of a pending subscription request's children kept with its row.
pub const MAX_REQUEST_PAYLOAD: usize = 2048;

/// One roster item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: BareJid,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// A subscription request sent and not answered (`ask='subscribe'`, "pending out").
    pub ask: bool,
    /// A subscription request received and not answered ("pending in").
    pub pending_in: bool,
    /// The user approved the contact's subscription before it asked (RFC 6121
    /// §3.4, `approved='true'`): its request will be granted at once.
    pub approved: bool,
    /// The children of the pending request as received (a `<status/>`, a XEP-0379
    /// `<preauth/>`), re-emitted, so that it is delivered again as it came
    /// (§3.1.3); at most [`MAX_REQUEST_PAYLOAD`] bytes.
    pub request: Option<Box<[u8]>>,
    /// The roster version at which this item last changed.
    pub ver: u64,
    /// A tombstone: the item was removed at `ver`.
    pub removed: bool,
    /// Not in the roster the user sees: a row that only keeps an inbound
    /// subscription request from a contact the user has not added (RFC 6121 §3.1.3).
    pub hidden: bool,
}

/// RFC 6121 §3 transitions of one item, each `None` when it does not apply (the
/// item is then left as it is and nothing is pushed).
impl RosterItem {
    /// The contact approved the user's request (§3.1.6): pending out → `to`.
    pub fn grant_to(mut self) -> Option<RosterItem> {
        self.ask.then(|| {
            self.ask = false;
            self.subscription = self.subscription.with_to();
            self
        })
    }

    /// The user approves the contact's request (§3.1.5): pending in → `from`.
    pub fn grant_from(mut self) -> Option<RosterItem> {
        self.pending_in.then(|| {
            self.pending_in = false;
            self.request = None;
            self.approved = false;
            self.hidden = false;
            self.subscription = self.subscription.with_from();
            self
        })
    }

    /// The user's subscription to the contact (or its request) ends (§3.3, §3.2.1).
    pub fn cancel_to(mut self) -> Option<RosterItem> {
        (self.subscription.has_to() || self.ask).then(|| {
            self.ask = false;
            self.subscription = self.subscription.without_to();
            self
        })
    }

    /// The user approves a subscription the contact has not asked for (§3.4.1):
    /// nothing to do when it is granted or pending already.
    pub fn pre_approve(mut self) -> Option<RosterItem> {
        (!self.subscription.has_from() && !self.pending_in && !self.approved).then(|| {
            self.approved = true;
            self.hidden = false;
            self
        })
    }

    /// A pre-approved contact asks (§3.4.2): granted at once.
    pub fn grant_pre_approved(mut self) -> Option<RosterItem> {
        self.approved.then(|| {
            self.approved = false;
            self.pending_in = false;
            self.request = None;
            self.subscription = self.subscription.with_from();
            self
        })
    }

    /// The contact's subscription to the user (or its request) ends (§3.2, §3.3.1).
    pub fn cancel_from(mut self) -> Option<RosterItem> {
        (self.subscription.has_from() || self.pending_in || self.approved).then(|| {
            self.pending_in = false;
            self.request = None;
            self.approved = false;
            self.subscription = self.subscription.without_from();
            self
        })
    }
}

impl RosterItem {
    pub fn new(jid: BareJid) -> RosterItem {
        RosterItem {
            jid,
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask: false,
            pending_in: false,
            approved: false,
            request: None,
            ver: 0,
            removed: false,
            hidden: false,
        }
    }

    /// `version, subscription, flags, ver (u64), name (u16 len + bytes or 0xffff),
    /// group count (u16), groups (u16 len + bytes each)`, then the pending
    /// request's payload (u16 len + bytes) if there is one.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1, self.subscription.code()];
        out.push(
            u8::from(self.ask)
                | u8::from(self.pending_in) << 1
                | u8::from(self.removed) << 2
                | u8::from(self.hidden) << 3
                | u8::from(self.approved) << 4,
        );
        out.extend_from_slice(&self.ver.to_be_bytes());
        match &self.name {
            Some(n) => put_str(&mut out, n),
            None => out.extend_from_slice(&u16::MAX.to_be_bytes()),
        }
        out.extend_from_slice(&(self.groups.len() as u16).to_be_bytes());
        for g in &self.groups {
            put_str(&mut out, g);
        }
        if let Some(r) = self.request.as_deref().filter(|r| r.len() <= MAX_REQUEST_PAYLOAD) {
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn decode(jid: BareJid, b: &[u8]) -> Result<RosterItem, StoreError> {
        let corrupt = || StoreError::Corrupt("roster item");
        let mut r = Reader(b);
        let (version, sub, flags) = (r.u8()?, r.u8()?, r.u8()?);
        if version != 1 {
            return Err(corrupt());
        }
        let ver = u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| corrupt())?);
        let name = match r.u16()? {
            u16::MAX => None,
            len => Some(r.string(len)?),
        };
        let count = r.u16()?;
        let mut groups = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = r.u16()?;
            groups.push(r.string(len)?);
        }
        let request = match r.0.len() {
            0 => None,
            _ => {
                let len = r.u16()?;
                Some(r.take(usize::from(len))?.into())
            }
        };
        Ok(RosterItem {
            jid,
            name,
            groups,
            subscription: Subscription::from_code(sub).ok_or_else(corrupt)?,
            ask: flags & 1 != 0,
            pending_in: flags & 2 != 0,
            removed: flags & 4 != 0,
            hidden: flags & 8 != 0,
            approved: flags & 16 != 0,
            request,
            ver,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names and groups are capped far below 64 KiB by the roster handler.
    let len = s.len().min(usize::from(u16::MAX) - 1);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("roster item"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn string(&mut self, len: u16) -> Result<String, StoreError> {
        String::from_utf8(self.take(usize::from(len))?.to_vec()).map_err(|_| StoreError::Corrupt("roster item"))
    }
}

/// A roster read for a client that sent `ver` (RFC 6121 §2.6).
pub enum RosterRead {
    /// Everything (no version, or one older than the oldest known change).
    Full { ver: u64, items: Vec<RosterItem> },
    /// Only what changed after the client's version (tombstones included).
    Changes { ver: u64, items: Vec<RosterItem> },
}

impl Store {
    pub(super) fn create_roster_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(ROSTER).map_err(db_err)?;
        txn.open_table(ROSTER_VERSION).map_err(db_err)?;
        Ok(())
    }

    /// All rows of an owner (tombstones included), and its versions.
    fn roster_rows(&self, owner: &BareJid) -> Result<(u64, u64, Vec<RosterItem>), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ROSTER).map_err(db_err)?;
        let versions = txn.open_table(ROSTER_VERSION).map_err(db_err)?;
        let (ver, min_ver) = versions.get(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
        let mut items = Vec::new();
        for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let (o, contact) = k.value();
            if o != owner.as_str() {
                break;
            }
            let Ok(jid) = contact.parse::<BareJid>() else { continue };
            items.push(RosterItem::decode(jid, v.value())?);
        }
        Ok((ver, min_ver, items))
    }

    /// The roster for a roster get with an optional client version.
    pub fn roster(&self, owner: &BareJid, client_ver: Option<u64>) -> Result<RosterRead, StoreError> {
        let (ver, min_ver, items) = self.roster_rows(owner)?;
        Ok(match client_ver {
            Some(v) if v >= min_ver && v <= ver => {
                RosterRead::Changes { ver, items: items.into_iter().filter(|i| i.ver > v && !i.hidden).collect() }
            }
            _ => RosterRead::Full { ver, items: items.into_iter().filter(|i| !i.removed && !i.hidden).collect() },
        })
    }

    pub fn roster_item(&self, owner: &BareJid, contact: &BareJid) -> Result<Option<RosterItem>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ROSTER).map_err(db_err)?;
        match table.get((owner.as_str(), contact.as_str())).map_err(db_err)? {
            Some(v) => {
                let item = RosterItem::decode(contact.clone(), v.value())?;
                Ok((!item.removed).then_some(item))
            }
            None => Ok(None),
        }
    }

    /// Live items of an owner (hidden rows included: they take room too).
    pub fn roster_len(&self, owner: &BareJid) -> Result<usize, StoreError> {
        Ok(self.roster_rows(owner)?.2.iter().filter(|i| !i.removed).count())
    }

    /// Every live row of an owner, hidden ones included (for presence and
    /// subscription handling).
    pub fn roster_items(&self, owner: &BareJid) -> Result<Vec<RosterItem>, StoreError> {
        Ok(self.roster_rows(owner)?.2.into_iter().filter(|i| !i.removed).collect())
    }

    /// Stores an item (a new version); returns it as stored. Durable on return.
    /// A new live row past `max_roster_items` is refused on every path (a roster
    /// set, a subscription from a local or remote JID: REVIEW S6).
    pub fn put_roster_item(&self, owner: &BareJid, item: RosterItem) -> Result<RosterItem, StoreError> {
        let mut stored = self.put_roster_items(vec![(owner.clone(), item)])?;
        stored.pop().ok_or(StoreError::Corrupt("roster write"))
    }

    /// Stores items of several rosters in one transaction: both halves of a local
    /// subscription change commit together or not at all (REVIEW D3). Refused as a
    /// whole when one new row would pass `max_roster_items`.
    pub fn put_roster_items(&self, items: Vec<(BareJid, RosterItem)>) -> Result<Vec<RosterItem>, StoreError> {
        let max = self.max_roster_items.load(std::sync::atomic::Ordering::Relaxed);
        for (owner, item) in &items {
            if item.removed || self.roster_item(owner, &item.jid)?.is_some() {
                continue;
            }
            let rows = self.roster_items(owner)?;
            // A request nobody answered yet (a hidden row) has its own, smaller cap:
            // strangers cannot fill the roster the owner sees (S6).
            if rows.len() >= max || (item.hidden && rows.iter().filter(|r| r.hidden).count() >= MAX_PENDING_IN) {
                return Err(StoreError::RosterFull);
            }
        }
        let txn = self.begin_effect()?;
        let mut stored = Vec::with_capacity(items.len());
        {
            let mut versions = txn.open_table(ROSTER_VERSION).map_err(db_err)?;
            let mut table = txn.open_table(ROSTER).map_err(db_err)?;
            for (owner, mut item) in items {
                let (ver, min_ver) = versions.get(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
                item.ver = ver + 1;
                versions.insert(owner.as_str(), (ver + 1, min_ver)).map_err(db_err)?;
                table.insert((owner.as_str(), item.jid.as_str()), item.encode().as_slice()).map_err(db_err)?;
                stored.push(item);
            }
        }
        self.commit_effect(txn)?;
        Ok(stored)
    }

    /// Deletes an owner's roster rows and version (account deletion), and ends the
    /// subscriptions other local rosters hold with it; returns the owner's contacts.
    pub(super) fn delete_roster_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<Vec<BareJid>, StoreError> {
        let mut table = txn.open_table(ROSTER).map_err(db_err)?;
        let mut versions = txn.open_table(ROSTER_VERSION).map_err(db_err)?;
        let mut contacts = Vec::new();
        let mut rows = Vec::new();
        for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let (o, contact) = k.value();
            if o != owner.as_str() {
                break;
            }
            rows.push(contact.to_string());
            let Ok(jid) = contact.parse::<BareJid>() else { continue };
            if !RosterItem::decode(jid.clone(), v.value())?.removed {
                contacts.push(jid);
            }
        }
        for contact in &rows {
            table.remove((owner.as_str(), contact.as_str())).map_err(db_err)?;
        }
        versions.remove(owner.as_str()).map_err(db_err)?;
        // The other side of each subscription (local contacts only have a row).
        for c in &contacts {
            let existing = table.get((c.as_str(), owner.as_str())).map_err(db_err)?.map(|v| v.value().to_vec());
            let Some(bytes) = existing else { continue };
            let mut theirs = RosterItem::decode(owner.clone(), &bytes)?;
            if theirs.removed {
                continue;
            }
            theirs.subscription = Subscription::None;
            theirs.ask = false;
            theirs.pending_in = false;
            theirs.approved = false;
            theirs.request = None;
            let (ver, min_ver) = versions.get(c.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
            theirs.ver = ver + 1;
            versions.insert(c.as_str(), (ver + 1, min_ver)).map_err(db_err)?;
            table.insert((c.as_str(), owner.as_str()), theirs.encode().as_slice()).map_err(db_err)?;
        }
        Ok(contacts)
    }

    /// Removes an item, leaving a tombstone; `None` if there was no item.
    pub fn remove_roster_item(&self, owner: &BareJid, contact: &BareJid) -> Result<Option<RosterItem>, StoreError> {
        let Some(mut item) = self.roster_item(owner, contact)? else { return Ok(None) };
        item.removed = true;
        item.subscription = Subscription::None;
        item.ask = false;
        item.pending_in = false;
        item.approved = false;
        item.request = None;
        item.groups.clear();
        item.name = None;
        let stored = self.put_roster_item(owner, item)?;
        self.prune_tombstones(owner)?;
        Ok(Some(stored))
    }

    fn prune_tombstones(&self, owner: &BareJid) -> Result<(), StoreError> {
        let (ver, _, items) = self.roster_rows(owner)?;
        let tombstones: Vec<&RosterItem> = items.iter().filter(|i| i.removed).collect();
        if tombstones.len() <= MAX_TOMBSTONES {
            return Ok(());
        }
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(ROSTER).map_err(db_err)?;
            for t in tombstones {
                table.remove((owner.as_str(), t.jid.as_str())).map_err(db_err)?;
            }
            let mut versions = txn.open_table(ROSTER_VERSION).map_err(db_err)?;
            versions.insert(owner.as_str(), (ver, ver)).map_err(db_err)?;
        }
        self.commit_effect(txn)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn requests_from_strangers_have_their_own_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let owner = jid("alice@localhost");
        for i in 0..MAX_PENDING_IN {
            let mut item = RosterItem::new(jid(&format!("a{i}@evil.example")));
            item.hidden = true;
            item.pending_in = true;
            store.put_roster_item(&owner, item).unwrap();
        }
        let mut one_more = RosterItem::new(jid("late@evil.example"));
        one_more.hidden = true;
        assert!(matches!(store.put_roster_item(&owner, one_more), Err(StoreError::RosterFull)));
        store.put_roster_item(&owner, RosterItem::new(jid("friend@localhost"))).expect("a contact the owner adds");
    }

    #[test]
    fn both_halves_of_a_subscription_commit_together_or_not_at_all() {
        // D3: the two rosters were written in two transactions.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_max_roster_items(1);
        let (a, b, c): (BareJid, BareJid, BareJid) =
            ("a@d".parse().unwrap(), "b@d".parse().unwrap(), "c@d".parse().unwrap());
        store.put_roster_item(&b, RosterItem::new(c.clone())).unwrap();
        // b's roster is full: the pair a→b / b→a is refused as a whole.
        let pair = vec![(a.clone(), RosterItem::new(b.clone())), (b.clone(), RosterItem::new(a.clone()))];
        assert!(matches!(store.put_roster_items(pair), Err(StoreError::RosterFull)));
        assert_eq!(store.roster_item(&a, &b).unwrap(), None, "the first half was not kept alone");
        let pair = vec![(a.clone(), RosterItem::new(c.clone())), (c.clone(), RosterItem::new(a.clone()))];
        let stored = store.put_roster_items(pair).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(store.roster_item(&c, &a).unwrap().is_some());
    }

    use super::*;

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    #[test]
    fn items_round_trip_and_versions_count_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let me = jid("juliet@localhost");
        let mut item = RosterItem::new(jid("romeo@localhost"));
        item.name = Some("Romeo ♥".into());
        item.groups = vec!["Friends".into(), "Verona".into()];
        item.ask = true;
        let stored = store.put_roster_item(&me, item.clone()).unwrap();
        assert_eq!(stored.ver, 1);
        assert_eq!(store.roster_item(&me, &item.jid).unwrap().unwrap(), stored);
        store.put_roster_item(&me, RosterItem::new(jid("nurse@localhost"))).unwrap();
        let RosterRead::Changes { ver, items } = store.roster(&me, Some(1)).unwrap() else { panic!("changes") };
        assert_eq!((ver, items.len()), (2, 1));
        store.remove_roster_item(&me, &jid("nurse@localhost")).unwrap().unwrap();
        let RosterRead::Changes { ver, items } = store.roster(&me, Some(2)).unwrap() else { panic!("changes") };
        assert_eq!(ver, 3);
        assert!(items[0].removed);
        let RosterRead::Full { items, .. } = store.roster(&me, None).unwrap() else { panic!("full") };
        assert_eq!(items.len(), 1);
        assert!(matches!(store.roster(&me, Some(99)).unwrap(), RosterRead::Full { .. }));
        assert_eq!(store.roster_len(&me).unwrap(), 1);
    }

    #[test]
    fn tombstones_are_pruned_and_old_versions_get_the_full_roster() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let me = jid("juliet@localhost");
        for i in 0..=MAX_TOMBSTONES {
            let c = jid(&format!("c{i}@localhost"));
            store.put_roster_item(&me, RosterItem::new(c.clone())).unwrap();
            store.remove_roster_item(&me, &c).unwrap();
        }
        assert!(matches!(store.roster(&me, Some(1)).unwrap(), RosterRead::Full { .. }));
        assert_eq!(store.roster_len(&me).unwrap(), 0);
    }
}
