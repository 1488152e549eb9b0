//! PEP nodes (XEP-0163): one row per (owner, node) holding the node's
//! configuration and its items, as the PEP core encodes them
//! (`services::pep::node::Node`). A node is small (its items are bounded by
//! `pep_max_items` and the account's `pep_max_bytes`), so it is read and written
//! whole, in one transaction.

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, TableDefinition};

/// (owner, node) → encoded node.
const PEP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pep");

impl Store {
    pub(super) fn create_pep_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(PEP).map_err(db_err)?;
        Ok(())
    }

    /// Deletes every node of an owner (account deletion).
    pub(super) fn delete_pep_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        let mut table = txn.open_table(PEP).map_err(db_err)?;
        for node in super::keys_of(&table, owner)? {
            table.remove((owner.as_str(), node.as_str())).map_err(db_err)?;
        }
        Ok(())
    }

    pub fn pep_node(&self, owner: &BareJid, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PEP).map_err(db_err)?;
        Ok(table.get((owner.as_str(), node)).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Every node of an owner: (name, encoded node), by name.
    pub fn pep_nodes(&self, owner: &BareJid) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PEP).map_err(db_err)?;
        let mut nodes = Vec::new();
        for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let (o, node) = k.value();
            if o != owner.as_str() {
                break;
            }
            nodes.push((node.to_string(), v.value().to_vec()));
        }
        Ok(nodes)
    }

    /// The owner's node count and stored bytes, `node` itself left out (the one
    /// about to be replaced).
    pub fn pep_usage_besides(&self, owner: &BareJid, node: &str) -> Result<(usize, usize), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PEP).map_err(db_err)?;
        let (mut count, mut bytes) = (0, 0);
        for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let (o, name) = k.value();
            if o != owner.as_str() {
                break;
            }
            if name != node {
                count += 1;
                bytes += name.len() + v.value().len();
            }
        }
        Ok((count, bytes))
    }

    /// Stores a node, or deletes it (`None`). Answers wait for its commit.
    pub fn put_pep_node(&self, owner: &BareJid, node: &str, encoded: Option<&[u8]>) -> Result<(), StoreError> {
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(PEP).map_err(db_err)?;
            match encoded {
                Some(bytes) => {
                    table.insert((owner.as_str(), node), bytes).map_err(db_err)?;
                }
                None => {
                    table.remove((owner.as_str(), node)).map_err(db_err)?;
                }
            }
        }
        self.commit_effect(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_per_owner_and_usage_leaves_the_replaced_node_out() {
        let store = Store::in_memory().unwrap();
        let a: BareJid = "a@localhost".parse().unwrap();
        let b: BareJid = "b@localhost".parse().unwrap();
        store.put_pep_node(&a, "n1", Some(b"1234")).unwrap();
        store.put_pep_node(&a, "n2", Some(b"12")).unwrap();
        store.put_pep_node(&b, "n1", Some(b"x")).unwrap();
        assert_eq!(store.pep_nodes(&a).unwrap().len(), 2);
        assert_eq!(store.pep_usage_besides(&a, "n1").unwrap(), (1, 4));
        store.put_pep_node(&a, "n1", None).unwrap();
        assert_eq!(store.pep_node(&a, "n1").unwrap(), None);
        assert_eq!(store.pep_node(&b, "n1").unwrap().as_deref(), Some(&b"x"[..]));
    }
}
