//! Offline messages (XEP-0160): messages for an account with no available
//! resource, kept in arrival order with the time they arrived (for the XEP-0203
//! `<delay/>` stamp). Bounded per account and in total, in messages and in bytes
//! (REVIEW S3), with the usage kept in its own table so a quota check costs two
//! lookups, not a scan. Read back in batches of bounded size; a message is removed
//! only after the client acknowledged its batch, so a lost connection loses
//! nothing (the client may see a message twice, never zero times: D2).

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// (owner, sequence) → stamp (u64 seconds, big-endian) ++ the stanza as re-emitted.
const OFFLINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline");
/// Next sequence number.
const OFFLINE_SEQ: TableDefinition<&str, u64> = TableDefinition::new("offline_seq");
/// owner → (messages, bytes) stored for it; the key `""` (no JID is empty) holds
/// the totals.
const OFFLINE_USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("offline_usage");
const TOTAL: &str = "";

/// The offline quotas (config keys).
#[derive(Clone, Copy, Debug)]
pub struct OfflineQuota {
    pub per_account: usize,
    pub total: usize,
    pub bytes_per_account: usize,
    pub bytes_total: usize,
}

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
        let table = txn.open_table(OFFLINE).map_err(db_err)?;
        txn.open_table(OFFLINE_SEQ).map_err(db_err)?;
        let mut usage = txn.open_table(OFFLINE_USAGE).map_err(db_err)?;
        // A store from before the usage table: count what it holds, once.
        if usage.is_empty().map_err(db_err)? && !table.is_empty().map_err(db_err)? {
            let mut per_owner: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            for row in table.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let bytes = v.value().len() as u64;
                for key in [k.value().0, TOTAL] {
                    let e = per_owner.entry(key.to_string()).or_default();
                    *e = (e.0 + 1, e.1 + bytes);
                }
            }
            for (owner, used) in per_owner {
                usage.insert(owner.as_str(), used).map_err(db_err)?;
            }
        }
        Ok(())
    }

    /// Deletes an owner's offline messages and their usage (account deletion).
    pub(super) fn delete_offline_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        let mut table = txn.open_table(OFFLINE).map_err(db_err)?;
        let mut seqs = Vec::new();
        for row in table.range((owner.as_str(), 0)..=(owner.as_str(), u64::MAX)).map_err(db_err)? {
            seqs.push(row.map_err(db_err)?.0.value().1);
        }
        for seq in seqs {
            table.remove((owner.as_str(), seq)).map_err(db_err)?;
        }
        let mut usage = txn.open_table(OFFLINE_USAGE).map_err(db_err)?;
        let mine = usage.remove(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
        let total = usage.get(TOTAL).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
        usage.insert(TOTAL, (total.0.saturating_sub(mine.0), total.1.saturating_sub(mine.1))).map_err(db_err)?;
        txn.open_table(OFFLINE_SEQ).map_err(db_err)?.remove(owner.as_str()).map_err(db_err)?;
        Ok(())
    }

    /// Stores a message within the quotas; durable when this returns (the
    /// server queues messages for the writer instead: `queue_offline`).
    #[cfg(test)]
    pub fn store_offline(
        &self,
        owner: &BareJid,
        stamp: u64,
        stanza: &[u8],
        quota: OfflineQuota,
    ) -> Result<(), OfflineRefused> {
        let txn = self.db.begin_write().map_err(|e| OfflineRefused::Store(db_err(e)))?;
        Store::store_offline_in(&txn, owner, stamp, stanza, quota)?;
        txn.commit().map_err(|e| OfflineRefused::Store(db_err(e)))
    }

    /// Stores a message within the quotas inside a write transaction (nothing is
    /// written when it is refused).
    pub(super) fn store_offline_in(
        txn: &redb::WriteTransaction,
        owner: &BareJid,
        stamp: u64,
        stanza: &[u8],
        quota: OfflineQuota,
    ) -> Result<(), OfflineRefused> {
        let err = |e: redb::Error| OfflineRefused::Store(db_err(e));
        let mut usage = txn.open_table(OFFLINE_USAGE).map_err(|e| err(e.into()))?;
        let size = 8 + stanza.len() as u64;
        let used = |key: &str| -> Result<(u64, u64), OfflineRefused> {
            Ok(usage.get(key).map_err(|e| err(e.into()))?.map(|v| v.value()).unwrap_or((0, 0)))
        };
        let (total, total_bytes) = used(TOTAL)?;
        if total as usize >= quota.total || (total_bytes + size) as usize > quota.bytes_total {
            return Err(OfflineRefused::GlobalQuota);
        }
        let (mine, mine_bytes) = used(owner.as_str())?;
        if mine as usize >= quota.per_account || (mine_bytes + size) as usize > quota.bytes_per_account {
            return Err(OfflineRefused::AccountQuota);
        }
        usage.insert(TOTAL, (total + 1, total_bytes + size)).map_err(|e| err(e.into()))?;
        usage.insert(owner.as_str(), (mine + 1, mine_bytes + size)).map_err(|e| err(e.into()))?;
        let mut seqs = txn.open_table(OFFLINE_SEQ).map_err(|e| err(e.into()))?;
        let seq = seqs.get(owner.as_str()).map_err(|e| err(e.into()))?.map(|v| v.value()).unwrap_or(0);
        seqs.insert(owner.as_str(), seq + 1).map_err(|e| err(e.into()))?;
        let mut value = stamp.to_be_bytes().to_vec();
        value.extend_from_slice(stanza);
        let mut table = txn.open_table(OFFLINE).map_err(|e| err(e.into()))?;
        table.insert((owner.as_str(), seq), value.as_slice()).map_err(|e| err(e.into()))?;
        Ok(())
    }

    /// The oldest stored messages after `after` (a sequence number; `None`: from
    /// the first), as many as fit in `max_bytes` (at least one), not removed.
    pub fn offline_batch(
        &self,
        owner: &BareJid,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<OfflineMessage>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(OFFLINE).map_err(db_err)?;
        let from = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in table.range((owner.as_str(), from)..=(owner.as_str(), u64::MAX)).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let value = v.value();
            if !out.is_empty() && bytes + value.len() > max_bytes {
                break;
            }
            bytes += value.len();
            let Some((stamp, stanza)) = value.split_first_chunk::<8>() else { continue };
            out.push(OfflineMessage { seq: k.value().1, stamp: u64::from_be_bytes(*stamp), stanza: stanza.to_vec() });
        }
        Ok(out)
    }

    /// The stored messages of an account, oldest first (not removed).
    pub fn offline_messages(&self, owner: &BareJid) -> Result<Vec<OfflineMessage>, StoreError> {
        self.offline_batch(owner, None, usize::MAX)
    }

    /// Removes delivered messages.
    pub fn remove_offline(&self, owner: &BareJid, seqs: &[u64]) -> Result<(), StoreError> {
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(OFFLINE).map_err(db_err)?;
            let (mut count, mut bytes) = (0u64, 0u64);
            for seq in seqs {
                if let Some(v) = table.remove((owner.as_str(), *seq)).map_err(db_err)? {
                    count += 1;
                    bytes += v.value().len() as u64;
                }
            }
            let mut usage = txn.open_table(OFFLINE_USAGE).map_err(db_err)?;
            for key in [owner.as_str(), TOTAL] {
                let (c, b) = usage.get(key).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
                let left = (c.saturating_sub(count), b.saturating_sub(bytes));
                if left.0 == 0 && key != TOTAL {
                    usage.remove(key).map_err(db_err)?;
                } else {
                    usage.insert(key, left).map_err(db_err)?;
                }
            }
        }
        self.commit_effect(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_account: usize, total: usize) -> OfflineQuota {
        OfflineQuota { per_account, total, bytes_per_account: usize::MAX, bytes_total: usize::MAX }
    }

    #[test]
    fn messages_are_kept_in_order_within_quotas_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: BareJid = "a@d".parse().unwrap();
        let b: BareJid = "b@d".parse().unwrap();
        for i in 0..3u8 {
            store.store_offline(&a, 100 + u64::from(i), &[b'm', i], quota(3, 5)).unwrap();
        }
        assert!(matches!(store.store_offline(&a, 1, b"x", quota(3, 5)), Err(OfflineRefused::AccountQuota)));
        store.store_offline(&b, 1, b"y", quota(3, 5)).unwrap();
        store.store_offline(&b, 1, b"y", quota(3, 5)).unwrap();
        assert!(matches!(store.store_offline(&b, 1, b"z", quota(3, 5)), Err(OfflineRefused::GlobalQuota)));
        let msgs = store.offline_messages(&a).unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.stanza.clone()).collect::<Vec<_>>(),
            vec![b"m\0".to_vec(), b"m\x01".to_vec(), b"m\x02".to_vec()]
        );
        assert_eq!(msgs[1].stamp, 101);
        store.remove_offline(&a, &[msgs[0].seq, msgs[1].seq]).unwrap();
        assert_eq!(store.offline_messages(&a).unwrap().len(), 1);
        // Removing frees the quota.
        store.store_offline(&b, 1, b"z", quota(3, 5)).unwrap();
    }

    #[test]
    fn bytes_are_bounded_per_account_and_in_total_and_read_in_batches() {
        // S3: 200 × 256 KiB per account used to be accepted and loaded whole.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a: BareJid = "a@d".parse().unwrap();
        let b: BareJid = "b@d".parse().unwrap();
        let q = OfflineQuota { per_account: 100, total: 100, bytes_per_account: 3 * 108, bytes_total: 5 * 108 };
        for _ in 0..3 {
            store.store_offline(&a, 1, &[b'x'; 100], q).unwrap();
        }
        assert!(matches!(store.store_offline(&a, 1, &[b'x'; 100], q), Err(OfflineRefused::AccountQuota)));
        store.store_offline(&b, 1, &[b'y'; 100], q).unwrap();
        store.store_offline(&b, 1, &[b'y'; 100], q).unwrap();
        assert!(matches!(store.store_offline(&b, 1, &[b'y'; 100], q), Err(OfflineRefused::GlobalQuota)));
        let first = store.offline_batch(&a, None, 250).unwrap();
        assert_eq!(first.len(), 2, "two of 108 bytes fit in 250");
        let rest = store.offline_batch(&a, Some(first[1].seq), 250).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(store.offline_batch(&a, None, 1).unwrap().len(), 1, "at least one, however large");
    }
}
