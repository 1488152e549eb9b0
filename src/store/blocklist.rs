//! XEP-0191 blocklists: per account, the JIDs (full, bare or domain) it blocks.

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, TableDefinition};

/// (owner, blocked JID) → nothing.
const BLOCKLIST: TableDefinition<(&str, &str), ()> = TableDefinition::new("blocklist");

/// Accounts remembered as blocking nobody (about 50 bytes each).
const MAX_KNOWN_EMPTY: usize = 4096;

impl Store {
    pub(super) fn create_blocklist_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(BLOCKLIST).map_err(db_err)?;
        Ok(())
    }

    /// Deletes an owner's blocklist (account deletion).
    pub(super) fn delete_blocklist_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        let mut table = txn.open_table(BLOCKLIST).map_err(db_err)?;
        let keys = super::keys_of(&table, owner)?;
        for key in keys {
            table.remove((owner.as_str(), key.as_str())).map_err(db_err)?;
        }
        Ok(())
    }

    /// The blocked JIDs of an account, sorted.
    pub fn blocklist(&self, owner: &BareJid) -> Result<Vec<String>, StoreError> {
        Ok(self.blocklists(std::slice::from_ref(owner))?.pop().unwrap_or_default())
    }

    /// The blocklists of several accounts, read in one transaction (a presence
    /// update checks every contact's: REVIEW S10). Most accounts block nobody:
    /// those are remembered, so routing a message reads no table for them.
    pub fn blocklists(&self, owners: &[BareJid]) -> Result<Vec<Vec<String>>, StoreError> {
        let known_empty = |o: &BareJid| self.empty_blocklists.lock().is_ok_and(|e| e.contains(o.as_str()));
        if owners.iter().all(known_empty) {
            return Ok(vec![Vec::new(); owners.len()]);
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(BLOCKLIST).map_err(db_err)?;
        let lists: Vec<Vec<String>> =
            owners.iter().map(|owner| Self::blocklist_in(&table, owner)).collect::<Result<_, _>>()?;
        for (owner, list) in owners.iter().zip(&lists) {
            if list.is_empty() {
                self.remember_blocklist_empty(owner, true);
            }
        }
        Ok(lists)
    }

    /// Keeps the set of accounts known to block nobody in step with their lists;
    /// bounded (forgotten all at once when full, then re-learned on reads).
    fn remember_blocklist_empty(&self, owner: &BareJid, empty: bool) {
        let Ok(mut set) = self.empty_blocklists.lock() else { return };
        if !empty {
            set.remove(owner.as_str());
        } else if !set.contains(owner.as_str()) {
            if set.len() >= MAX_KNOWN_EMPTY {
                set.clear();
            }
            set.insert(owner.as_str().into());
        }
    }

    fn blocklist_in(table: &redb::ReadOnlyTable<(&str, &str), ()>, owner: &BareJid) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            let (o, jid) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push(jid.to_string());
        }
        Ok(out)
    }

    /// Adds and removes entries (`remove_all` clears the list first); `Ok(false)`
    /// if the list would exceed `max`. Durable on return.
    pub fn update_blocklist(
        &self,
        owner: &BareJid,
        add: &[String],
        remove: &[String],
        remove_all: bool,
        max: usize,
    ) -> Result<bool, StoreError> {
        let mut list = if remove_all { Vec::new() } else { self.blocklist(owner)? };
        let before = self.blocklist(owner)?;
        list.retain(|j| !remove.contains(j));
        for a in add {
            if !list.contains(a) {
                list.push(a.clone());
            }
        }
        if list.len() > max {
            return Ok(false);
        }
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(BLOCKLIST).map_err(db_err)?;
            for old in &before {
                if !list.contains(old) {
                    table.remove((owner.as_str(), old.as_str())).map_err(db_err)?;
                }
            }
            for new in &list {
                table.insert((owner.as_str(), new.as_str()), ()).map_err(db_err)?;
            }
        }
        self.commit_effect(txn)?;
        self.remember_blocklist_empty(owner, list.is_empty());
        Ok(true)
    }
}
