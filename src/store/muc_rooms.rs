//! Persistent group-chat rooms (XEP-0045 `muc#roomconfig_persistentroom`): room
//! local part → the room's record, which `services/muc/room.rs` encodes. The
//! service writes a room when its configuration, affiliations or subject change,
//! and reads them all at start.

use super::{db_err, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const MUC_ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("muc_rooms");

impl Store {
    pub(super) fn create_muc_room_table(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(MUC_ROOMS).map_err(db_err)?;
        Ok(())
    }

    /// Every persistent room, at most `max`.
    pub fn muc_rooms(&self, max: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(MUC_ROOMS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)?.take(max) {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores a room's record (`None`: forgets the room). An effect: durable
    /// before the owner's answer goes out.
    pub fn put_muc_room(&self, room: &str, record: Option<&[u8]>) -> Result<(), StoreError> {
        let txn = self.begin_effect()?;
        {
            let mut table = txn.open_table(MUC_ROOMS).map_err(db_err)?;
            match record {
                Some(r) => {
                    table.insert(room, r).map_err(db_err)?;
                }
                None => {
                    table.remove(room).map_err(db_err)?;
                }
            }
        }
        self.commit_effect(txn)
    }
}
