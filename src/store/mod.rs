//! The store: one redb database in the data dir, whose schema this module alone
//! owns. Nothing is acknowledged before it is durable, so a kill -9 loses nothing
//! a client was told about: accounts commit durably (off the loop, from the
//! control socket), a stanza's effects are made durable by the store writer
//! (`writer.rs`, group commit) before its stream is answered. The one exception
//! is an advisory value (the last logout time), flushed with the next durable
//! commit.

pub mod account_xml;
pub mod archive;
pub mod blocklist;
pub mod fast_tokens;
pub mod muc_rooms;
pub mod offline;
pub mod pep;
pub mod record;
pub mod roster;
pub mod runs;
pub mod uploads;
pub mod writer;

use crate::jid::BareJid;
use crate::sasl::scram::{ScramKeys, ScramRecord};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::path::{Path, PathBuf};

/// Accounts: bare JID → [`Account`] record (see [`Account::encode`]).
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// Server-wide values: name → bytes (e.g. the secret behind fake SCRAM salts).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The file name inside the data dir.
pub const FILE_NAME: &str = "wrenhub.redb";

/// redb's page cache; small boards have little RAM.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone, Debug)]
pub enum StoreError {
    /// Another process (a running server) has the database open.
    InUse(PathBuf),
    Db(String),
    Corrupt(&'static str),
    /// A new roster row would pass `max_roster_items` (REVIEW S6).
    RosterFull,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InUse(p) => write!(f, "{} is in use by another process", p.display()),
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Corrupt(what) => write!(f, "corrupt record: {what}"),
            StoreError::RosterFull => write!(f, "the roster is full (max_roster_items)"),
        }
    }
}

impl std::error::Error for StoreError {}

pub(crate) fn db_err(e: impl fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// An account: SCRAM keys only, never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub scram: ScramRecord,
    pub disabled: bool,
}

const RECORD_VERSION: u8 = 1;

impl Account {
    /// `version, flags, iterations (u32 BE), salt_len, salt, sha1 stored+server
    /// (20+20), sha256 stored+server (32+32)`.
    pub fn encode(&self) -> Vec<u8> {
        let s = &self.scram;
        let mut out = Vec::with_capacity(7 + s.salt.len() + 104);
        out.push(RECORD_VERSION);
        out.push(u8::from(self.disabled));
        out.extend_from_slice(&s.iterations.to_be_bytes());
        out.push(s.salt.len() as u8);
        out.extend_from_slice(&s.salt);
        for k in [&s.sha1, &s.sha256] {
            out.extend_from_slice(&k.stored_key);
            out.extend_from_slice(&k.server_key);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Account, StoreError> {
        let corrupt = || StoreError::Corrupt("account");
        let (&[version, flags, i0, i1, i2, i3, salt_len], rest) = b.split_first_chunk::<7>().ok_or_else(corrupt)?;
        let salt_len = usize::from(salt_len);
        if version != RECORD_VERSION || rest.len() != salt_len + 104 {
            return Err(corrupt());
        }
        let (salt, keys) = rest.split_at(salt_len);
        let key = |from: usize, len: usize| keys[from..from + len].to_vec();
        Ok(Account {
            disabled: flags & 1 == 1,
            scram: ScramRecord {
                iterations: u32::from_be_bytes([i0, i1, i2, i3]),
                salt: salt.to_vec(),
                sha1: ScramKeys { stored_key: key(0, 20), server_key: key(20, 20) },
                sha256: ScramKeys { stored_key: key(40, 32), server_key: key(72, 32) },
            },
        })
    }
}

/// Creates a directory (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The second halves of an owner's `(owner, key)` keys in a table.
fn keys_of<V: redb::Value + 'static>(
    table: &redb::Table<'_, (&'static str, &'static str), V>,
    owner: &BareJid,
) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for row in table.range((owner.as_str(), "")..).map_err(db_err)? {
        let (k, _) = row.map_err(db_err)?;
        let (o, key) = k.value();
        if o != owner.as_str() {
            break;
        }
        keys.push(key.to_string());
    }
    Ok(keys)
}

/// The open database.
pub struct Store {
    pub(crate) db: Database,
    /// Advisory writes since the last one that was made durable (see
    /// [`Store::put_advisory`]).
    advisory_since_sync: std::sync::atomic::AtomicU32,
    /// Rows one roster may hold, hidden ones included (`max_roster_items`).
    max_roster_items: std::sync::atomic::AtomicUsize,
    /// What waits for the writer's next batch.
    pub(crate) writer: writer::WriteQueue,
    /// What one archive keeps (`archive_*`).
    archive_limits: std::sync::Mutex<archive::ArchiveLimits>,
    /// Accounts whose blocklist is empty (most): see `blocklist.rs`.
    empty_blocklists: std::sync::Mutex<std::collections::HashSet<Box<str>>>,
}

impl Drop for Store {
    /// Persists what the writer did not get to (a crash never gets here; a test
    /// or a CLI run that ends does).
    fn drop(&mut self) {
        if self.has_unflushed() {
            let _ = self.commit_queue();
        }
    }
}

/// Below this file size compaction is not worth a start's time.
const COMPACT_ABOVE_BYTES: u64 = 1 << 20;

/// A file whose pages in use are less than three quarters of it is compacted as
/// it is opened: copy-on-write commits leave free pages behind that redb reuses
/// but never gives back, and a hub's data dir lives on SD cards and router flash.
/// A start pays for it only when there is a quarter of the file to win.
fn compact_if_worth_it(db: &mut Database, path: &Path) {
    let before = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if before < COMPACT_ABOVE_BYTES {
        return;
    }
    let used = db.begin_write().and_then(|t| {
        let stats = t.stats();
        t.abort()?;
        Ok(stats?)
    });
    let Ok(stats) = used else { return };
    let in_use = stats.allocated_pages() * stats.page_size() as u64;
    if in_use * 4 >= before * 3 {
        return;
    }
    match db.compact() {
        Ok(_) => {
            let after = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            log::info!("store compacted: {before} → {after} bytes");
        }
        Err(e) => log::warn!("store not compacted: {e}"),
    }
}

/// Every this many advisory writes, one is committed durably.
const ADVISORY_SYNC_EVERY: u32 = 64;

impl Store {
    /// The database file in a data dir.
    pub fn file(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Opens (or creates) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(data_dir).map_err(db_err)?;
        let path = data_dir.join(FILE_NAME);
        let mut db = Database::builder().set_cache_size(CACHE_BYTES).create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.clone()),
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::InUse(path.clone())
            }
            e => db_err(e),
        })?;
        compact_if_worth_it(&mut db, &path);
        Store::init(db)
    }

    /// A store that lives in memory only: for the protocol cores' tests and fuzz
    /// targets, which need no disk.
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(db_err)?;
        Store::init(db)
    }

    fn init(db: Database) -> Result<Store, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(ACCOUNTS).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        Store::create_roster_tables(&txn)?;
        Store::create_offline_tables(&txn)?;
        Store::create_account_xml_table(&txn)?;
        Store::create_pep_table(&txn)?;
        Store::create_archive_tables(&txn)?;
        Store::create_blocklist_table(&txn)?;
        Store::create_fast_token_table(&txn)?;
        Store::create_muc_room_table(&txn)?;
        txn.commit().map_err(db_err)?;
        Store::migrate_archive(&db)?;
        Ok(Store {
            db,
            advisory_since_sync: std::sync::atomic::AtomicU32::new(0),
            max_roster_items: std::sync::atomic::AtomicUsize::new(usize::MAX),
            writer: writer::WriteQueue::default(),
            archive_limits: Default::default(),
            empty_blocklists: Default::default(),
        })
    }

    /// Sets what one archive keeps (`archive_max_messages`, `archive_max_bytes`,
    /// `archive_days`).
    pub fn set_archive_limits(&self, limits: archive::ArchiveLimits) {
        if let Ok(mut l) = self.archive_limits.lock() {
            *l = limits;
        }
    }

    pub(crate) fn archive_limits(&self) -> archive::ArchiveLimits {
        self.archive_limits.lock().map(|l| *l).unwrap_or_default()
    }

    /// Sets the bound every roster write enforces (`max_roster_items`).
    pub fn set_max_roster_items(&self, max: usize) {
        self.max_roster_items.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// How an advisory write commits: without fsync (redb `Durability::None`), so a
    /// value nobody loses sleep over (the time of the last logout) costs no disk
    /// flush on every logout; every [`ADVISORY_SYNC_EVERY`]th is durable, and any
    /// durable commit persists the ones before it. A crash may lose the latest few.
    pub(crate) fn advisory_durability(&self) -> redb::Durability {
        use std::sync::atomic::Ordering;
        let n = self.advisory_since_sync.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= ADVISORY_SYNC_EVERY {
            self.advisory_since_sync.store(0, Ordering::Relaxed);
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        }
    }

    pub fn account(&self, jid: &BareJid) -> Result<Option<Account>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ACCOUNTS).map_err(db_err)?;
        match table.get(jid.as_str()).map_err(db_err)? {
            Some(v) => Ok(Some(Account::decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Creates or replaces an account; durable when this returns. Any change (a new
    /// password, disabling) revokes the account's FAST tokens (XEP-0484) in the
    /// same transaction.
    pub fn put_account(&self, jid: &BareJid, account: &Account) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(ACCOUNTS).map_err(db_err)?;
            table.insert(jid.as_str(), account.encode().as_slice()).map_err(db_err)?;
        }
        Store::delete_fast_tokens_of(&txn, jid)?;
        txn.commit().map_err(db_err)
    }

    /// Removes an account; true if it existed.
    pub fn delete_account(&self, jid: &BareJid) -> Result<Option<Vec<BareJid>>, StoreError> {
        // One transaction for everything the account owns (REVIEW R3): a new
        // account of the same name starts empty, and other local rosters no longer
        // hold a subscription with it. Returns its contacts (to be told).
        // Its queued archive rows go in first, so that they go with it.
        self.flush_archive()?;
        let txn = self.db.begin_write().map_err(db_err)?;
        let contacts = {
            let mut table = txn.open_table(ACCOUNTS).map_err(db_err)?;
            if table.remove(jid.as_str()).map_err(db_err)?.is_none() {
                return Ok(None);
            }
            drop(table);
            let contacts = Store::delete_roster_of(&txn, jid)?;
            Store::delete_offline_of(&txn, jid)?;
            Store::delete_account_xml_of(&txn, jid)?;
            Store::delete_pep_of(&txn, jid)?;
            Store::delete_archive_of(&txn, jid)?;
            Store::delete_blocklist_of(&txn, jid)?;
            Store::delete_fast_tokens_of(&txn, jid)?;
            contacts
        };
        txn.commit().map_err(db_err)?;
        Ok(Some(contacts))
    }

    /// All account JIDs, sorted.
    pub fn accounts(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ACCOUNTS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (k, _) = entry.map_err(db_err)?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Counts the writer's commits that carried no offline message (so that a
    /// flush is never an empty commit).
    pub(crate) fn count_flush(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut table = txn.open_table(META).map_err(db_err)?;
        let n = match table.get("flushes").map_err(db_err)? {
            Some(v) => v.value().try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        table.insert("flushes", n.wrapping_add(1).to_be_bytes().as_slice()).map_err(db_err)?;
        Ok(())
    }

    /// A server-wide random secret, created on first use (for fake SCRAM salts).
    pub fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        {
            let txn = self.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(META).map_err(db_err)?;
            if let Some(v) = table.get(name).map_err(db_err)? {
                return Ok(v.value().to_vec());
            }
        }
        let mut secret = vec![0u8; 32];
        crate::random::fill(&mut secret);
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(META).map_err(db_err)?;
            table.insert(name, secret.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_mostly_free_is_compacted_as_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let jid: BareJid = "juliet@localhost".parse().unwrap();
        let big = vec![b'x'; 64 * 1024];
        {
            let store = Store::open(dir.path()).unwrap();
            for n in 0..64 {
                store.put_account_xml(&jid, &format!("doc{n}"), &big, usize::MAX).unwrap();
            }
            for n in 0..64 {
                store.put_account_xml(&jid, &format!("doc{n}"), b"<small/>", usize::MAX).unwrap();
            }
        }
        let file = Store::file(dir.path());
        let before = std::fs::metadata(&file).unwrap().len();
        let store = Store::open(dir.path()).unwrap();
        let after = std::fs::metadata(&file).unwrap().len();
        assert!(after * 2 < before, "{before} → {after}");
        assert_eq!(store.account_xml(&jid, "doc7").unwrap().as_deref(), Some(&b"<small/>"[..]));
    }

    #[test]
    fn accounts_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let jid: BareJid = "juliet@localhost".parse().unwrap();
        let account = Account { scram: ScramRecord::derive("pw", vec![1; 16], 4096), disabled: false };
        assert_eq!(Account::decode(&account.encode()).unwrap(), account);
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(matches!(Store::open(dir.path()), Err(StoreError::InUse(_))));
            store.put_account(&jid, &account).unwrap();
            assert_eq!(store.accounts().unwrap(), vec!["juliet@localhost".to_string()]);
            let s1 = store.secret("x").unwrap();
            assert_eq!(store.secret("x").unwrap(), s1);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.account(&jid).unwrap(), Some(account));
        assert!(store.delete_account(&jid).unwrap().is_some());
        assert!(store.delete_account(&jid).unwrap().is_none());
        assert_eq!(store.account(&jid).unwrap(), None);
        assert!(Account::decode(&[1, 0, 0]).is_err());
    }
}
