//! Per-account XML documents: the vCard (XEP-0054) and private XML storage
//! (XEP-0049), each kept as the element wrenhub re-emitted, under a key.

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// (owner, key) → element bytes.
const ACCOUNT_XML: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("account_xml");

impl Store {
    pub(super) fn create_account_xml_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(ACCOUNT_XML).map_err(db_err)?;
        Ok(())
    }

    /// Deletes every document of an owner (account deletion).
    pub(super) fn delete_account_xml_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        let mut table = txn.open_table(ACCOUNT_XML).map_err(db_err)?;
        let keys = super::keys_of(&table, owner)?;
        for key in keys {
            table.remove((owner.as_str(), key.as_str())).map_err(db_err)?;
        }
        Ok(())
    }

    /// Visits every account's vCard (XEP-0054) until `visit` says stop: (owner,
    /// the element's bytes).
    pub fn vcards(&self, visit: impl FnMut(&str, &[u8]) -> bool) -> Result<(), StoreError> {
        self.account_xml_each("vcard", visit)
    }

    /// Visits every account's document `wanted` until `visit` says stop.
    pub fn account_xml_each(&self, wanted: &str, mut visit: impl FnMut(&str, &[u8]) -> bool) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ACCOUNT_XML).map_err(db_err)?;
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let (owner, key) = k.value();
            if key == wanted && !visit(owner, v.value()) {
                break;
            }
        }
        Ok(())
    }

    pub fn account_xml(&self, owner: &BareJid, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ACCOUNT_XML).map_err(db_err)?;
        Ok(table.get((owner.as_str(), key)).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Stores a document; `Ok(false)` when the owner already has `max_keys` other
    /// documents. Durable on return.
    pub fn put_account_xml(&self, owner: &BareJid, key: &str, xml: &[u8], max_keys: usize) -> Result<bool, StoreError> {
        self.put_account_xml_with(owner, key, xml, max_keys, false)
    }

    /// Stores an advisory value (e.g. the last logout time): not flushed to disk on
    /// every write (see [`Store::advisory_durability`]).
    pub fn put_account_xml_advisory(&self, owner: &BareJid, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.put_account_xml_with(owner, key, value, usize::MAX, true)
    }

    fn put_account_xml_with(
        &self,
        owner: &BareJid,
        key: &str,
        xml: &[u8],
        max_keys: usize,
        advisory: bool,
    ) -> Result<bool, StoreError> {
        let txn = if advisory { self.begin_advisory()? } else { self.begin_effect()? };
        {
            let mut table = txn.open_table(ACCOUNT_XML).map_err(db_err)?;
            let exists = table.get((owner.as_str(), key)).map_err(db_err)?.is_some();
            if !exists {
                // Only documents of the same kind count (`private {ns}name` keys
                // against max_private_items; not the vCard or the last logout).
                let kind = key.split(' ').next().unwrap_or(key);
                let count = table
                    .range((owner.as_str(), "")..)
                    .map_err(db_err)?
                    .take_while(|r| r.as_ref().is_ok_and(|(k, _)| k.value().0 == owner.as_str()))
                    .filter(|r| r.as_ref().is_ok_and(|(k, _)| k.value().1.split(' ').next() == Some(kind)));
                if count.count() >= max_keys {
                    return Ok(false);
                }
            }
            table.insert((owner.as_str(), key), xml).map_err(db_err)?;
        }
        if advisory {
            self.commit_advisory(txn)?;
        } else {
            self.commit_effect(txn)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_storage_limit_counts_private_documents_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let owner: BareJid = "juliet@localhost".parse().unwrap();
        assert!(store.put_account_xml(&owner, "vcard", b"<vCard/>", usize::MAX).unwrap());
        assert!(store.put_account_xml_advisory(&owner, "last-logout", b"1").unwrap());
        assert!(store.put_account_xml(&owner, "private {a}x", b"<x/>", 1).unwrap(), "the vCard does not count");
        assert!(!store.put_account_xml(&owner, "private {b}y", b"<y/>", 1).unwrap(), "a second private one does");
        assert!(store.put_account_xml(&owner, "private {a}x", b"<x2/>", 1).unwrap(), "replacing is fine");
    }
}
