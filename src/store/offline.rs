//! Offline messages (XEP-0160): messages for an account with no available
//! resource, kept in arrival order with the time they arrived (for the XEP-0203
//! `<delay/>` stamp). Bounded per account and in total; a message is removed only
//! after it was written to a session, so a crash in between loses nothing (the
//! client may then see it twice, never zero times).

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// (owner, sequence) → stamp (u64 seconds, big-endian) ++ the stanza as re-emitted.
const OFFLINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline");
/// Next sequence number.
const OFFLINE_SEQ: TableDefinition<&str, u64> = TableDefinition::new("offline_seq");

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    pub seq: u64,
    /// Seconds since the epoch when it arrived.
    pub stamp: u64,
    pub stanza: Vec<u8>,
}

/// Why a message was not stored.
#[derive(Debug)]
pub enum OfflineRefused {
    AccountQuota,
    GlobalQuota,
    Store(StoreError),
}

impl Store {
    pub(super) fn create_offline_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(OFFLINE).map_err(db_err)?;
        txn.open_table(OFFLINE_SEQ).map_err(db_err)?;
        Ok(())
    }

    /// Stores a message; durable when this returns.
    pub fn store_offline(
        &self,
        owner: &BareJid,
        stamp: u64,
        stanza: &[u8],
        per_account: usize,
        total: usize,
    ) -> Result<(), OfflineRefused> {
        let txn = self.db.begin_write().map_err(|e| OfflineRefused::Store(db_err(e)))?;
        {
            let mut table = txn.open_table(OFFLINE).map_err(|e| OfflineRefused::Store(db_err(e)))?;
            if table.len().map_err(|e| OfflineRefused::Store(db_err(e)))? as usize >= total {
                return Err(OfflineRefused::GlobalQuota);
            }
            let mine = table
                .range((owner.as_str(), 0)..=(owner.as_str(), u64::MAX))
                .map_err(|e| OfflineRefused::Store(db_err(e)))?
                .count();
            if mine >= per_account {
                return Err(OfflineRefused::AccountQuota);
            }
            let mut seqs = txn.open_table(OFFLINE_SEQ).map_err(|e| OfflineRefused::Store(db_err(e)))?;
            let seq =
                seqs.get(owner.as_str()).map_err(|e| OfflineRefused::Store(db_err(e)))?.map(|v| v.value()).unwrap_or(0);
            seqs.insert(owner.as_str(), seq + 1).map_err(|e| OfflineRefused::Store(db_err(e)))?;
            let mut value = stamp.to_be_bytes().to_vec();
            value.extend_from_slice(stanza);
            table.insert((owner.as_str(), seq), value.as_slice()).map_err(|e| OfflineRefused::Store(db_err(e)))?;
        }
        txn.commit().map_err(|e| OfflineRefused::Store(db_err(e)))
    }

    /// The stored messages of an account, oldest first (not removed).
    pub fn offline_messages(&self, owner: &BareJid) -> Result<Vec<OfflineMessage>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(OFFLINE).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.range((owner.as_str(), 0)..=(owner.as_str(), u64::MAX)).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let value = v.value();
            let Some((stamp, stanza)) = value.split_first_chunk::<8>() else { continue };
            out.push(OfflineMessage { seq: k.value().1, stamp: u64::from_be_bytes(*stamp), stanza: stanza.to_vec() });
        }
        Ok(out)
    }

    /// Removes delivered messages.
    pub fn remove_offline(&self, owner: &BareJid, seqs: &[u64]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(OFFLINE).map_err(db_err)?;
            for seq in seqs {
                table.remove((owner.as_str(), *seq)).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kept_in_order_within_quotas_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: BareJid = "a@d".parse().unwrap();
        let b: BareJid = "b@d".parse().unwrap();
        for i in 0..3u8 {
            store.store_offline(&a, 100 + u64::from(i), &[b'm', i], 3, 5).unwrap();
        }
        assert!(matches!(store.store_offline(&a, 1, b"x", 3, 5), Err(OfflineRefused::AccountQuota)));
        store.store_offline(&b, 1, b"y", 3, 5).unwrap();
        store.store_offline(&b, 1, b"y", 3, 5).unwrap();
        assert!(matches!(store.store_offline(&b, 1, b"z", 3, 5), Err(OfflineRefused::GlobalQuota)));
        let msgs = store.offline_messages(&a).unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.stanza.clone()).collect::<Vec<_>>(),
            vec![b"m\0".to_vec(), b"m\x01".to_vec(), b"m\x02".to_vec()]
        );
        assert_eq!(msgs[1].stamp, 101);
        store.remove_offline(&a, &[msgs[0].seq, msgs[1].seq]).unwrap();
        assert_eq!(store.offline_messages(&a).unwrap().len(), 1);
    }
}
