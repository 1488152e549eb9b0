//! The message archive (XEP-0313) as stored: for each archive (an account's bare
//! JID, or a room's), its copies of messages under ids that sort by time, an
//! index per (archive, correspondent's bare JID) for the `with` filter, and the
//! archive's usage (messages, bytes) for quotas.
//!
//! An id is the arrival time in microseconds, shifted left by [`SEQ_BITS`], plus a
//! sequence number within that microsecond ([`ArchiveIds`]): ids sort as the
//! messages arrived, a time filter is an id range, and the XEP-0359 stanza-id is
//! the id written as 16 hex digits.
//!
//! The layout keeps a copy small (the design goal: a few bytes beyond the
//! stanza):
//! - a message's bytes are stored once, as a *body* under the id of its first
//!   copy, shared by its sender's and its recipient's copies (the recipient's
//!   stanza-id is put back as the copy is read: [`Archived::stamped`]) and
//!   removed with its last copy. Body ids only grow, so redb's append path packs
//!   the body pages full;
//! - JIDs (archives, correspondents) are numbered once ([`NAMES`]): a copy is
//!   a fixed-width row of numbers;
//! - an archive's copies, and its ids with each correspondent (the `with`
//!   index), are packed in [`super::runs`]: a batch rewrites each archive's last
//!   run once rather than inserting a row per message.
//!
//! Pages (XEP-0059 result set management) are read with one range scan in the
//! direction asked (forward from `after`, backward from `before` or the newest),
//! one row more than the page to know whether it is complete.

use super::runs::{self, Row, RunTable};
use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use std::collections::HashMap;
use std::sync::Arc;

/// Runs of copies, the archive's number the sequence: each row is
/// [`CopyRow`] (id, body, correspondent as given, its bare JID, flags: [`SENT`],
/// [`STAMPED`]).
const COPIES: RunTable = TableDefinition::new("archive_copy_runs");
/// Body id (its first copy's id) → copies that refer to it (u8) ++ the message.
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("archive_bodies");
/// Runs of ids, (archive << 32 | correspondent's bare JID) the sequence: the
/// `with` index.
const BY_WITH: RunTable = TableDefinition::new("archive_with_runs");
/// JID → its number in the archive's rows.
const NAMES: TableDefinition<&str, u32> = TableDefinition::new("archive_names");
/// Number → JID.
const NAMED: TableDefinition<u32, &str> = TableDefinition::new("archive_named");
/// archive → (messages, bytes).
const ARCHIVE_USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("archive_usage");
/// "newest" → the newest id ever given (ids go on above it after a restart,
/// without a scan of every archive); "names" → the next JID number.
const ARCHIVE_META: TableDefinition<&str, u64> = TableDefinition::new("archive_meta");

/// The second layout (a B-tree row per copy and per index entry), read once
/// to move its rows into runs.
mod rows_layout {
    use redb::TableDefinition;
    /// (archive, id) → (body, correspondent, its bare JID, flags).
    pub const COPIES: TableDefinition<(u32, u64), (u64, u32, u32, u8)> = TableDefinition::new("archive_copies");
    /// (archive, correspondent's bare JID, id) → nothing.
    pub const BY_WITH: TableDefinition<(u32, u32, u64), ()> = TableDefinition::new("archive_by_with");
    /// Rows moved per transaction.
    pub const BATCH: usize = 4096;
}

/// The first layout (one row per copy with its JIDs and bytes), read once to
/// move its rows into this one.
mod legacy {
    use redb::TableDefinition;
    /// (archive, id) → direction (u8) ++ correspondent (u16 length ++ bytes) ++ stanza.
    pub const ARCHIVE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("archive");
    /// (archive, hash of the correspondent, id) → nothing.
    pub const ARCHIVE_WITH: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("archive_with");
    /// Rows moved per transaction.
    pub const BATCH: usize = 4096;
}

/// A copy's flag: the archive's owner sent it.
const SENT: u8 = 1;
/// A copy's flag: the owner's stanza-id goes into the body as it is read.
const STAMPED: u8 = 2;

/// What a copy costs beyond its body, for the quotas: its row and its index row.
pub const COPY_ROW_BYTES: u64 = 45;
/// How much one archive keeps (config keys `archive_max_messages`,
/// `archive_max_bytes`, `archive_days`): past a bound the oldest messages go,
/// at most [`EVICT_PER_APPEND`] per message appended, in the writer's batch:
/// a new message is never refused for space.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveLimits {
    pub max_messages: u64,
    pub max_bytes: u64,
    /// Messages older than this many microseconds go (0: kept whatever their age).
    pub keep_micros: u64,
    /// Bytes all archives together keep (`archive_max_total_bytes`): past it
    /// the oldest messages of the hub go, by [`Store::archive_maintenance`].
    pub max_total_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits { max_messages: u64::MAX, max_bytes: u64::MAX, keep_micros: 0, max_total_bytes: u64::MAX }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    /// Messages removed: past the retention, or the hub's oldest over the total.
    pub removed: usize,
    /// It stopped at its budget: another pass has more to do.
    pub more: bool,
    /// Bytes all archives hold after it.
    pub total_bytes: u64,
}

/// Old messages removed per message appended, at most (the archive shrinks back
/// under a lowered bound over the next appends, never in one long transaction).
pub const EVICT_PER_APPEND: usize = 8;

/// The retention is looked at every this many messages an archive receives.
pub const RETENTION_EVERY: u64 = 64;

/// Bits of an id below the microseconds.
pub const SEQ_BITS: u32 = 10;

/// An archived message's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchiveId(pub u64);

impl ArchiveId {
    /// The first id of a microsecond.
    pub fn at(micros: u64) -> ArchiveId {
        ArchiveId(micros.min(u64::MAX >> SEQ_BITS) << SEQ_BITS)
    }

    /// When the message arrived, in microseconds since the epoch.
    pub fn micros(self) -> u64 {
        self.0 >> SEQ_BITS
    }

    /// The XEP-0359 stanza-id / XEP-0313 result id: 16 hex digits.
    pub fn text(self) -> String {
        format!("{:016x}", self.0)
    }

    pub fn parse(s: &str) -> Option<ArchiveId> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(ArchiveId)
    }
}

/// Hands out ids that only grow, within a process and across restarts (it
/// starts above the newest stored id).
#[derive(Debug, Default)]
pub struct ArchiveIds {
    last: std::cell::Cell<u64>,
}

impl ArchiveIds {
    pub fn starting_after(last: Option<ArchiveId>) -> ArchiveIds {
        ArchiveIds { last: std::cell::Cell::new(last.map_or(0, |l| l.0)) }
    }

    /// The next id for a message arriving at `micros`.
    pub fn next(&self, micros: u64) -> ArchiveId {
        let id = ArchiveId::at(micros).0.max(self.last.get().saturating_add(1));
        self.last.set(id);
        ArchiveId(id)
    }
}

/// Which way the message went, seen from the archive's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

/// A message to archive, or one read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub id: ArchiveId,
    pub direction: Direction,
    /// The other party (full or bare JID, as it was on the message).
    pub with: String,
    /// The message. Copies of one message that hold the same bytes (its
    /// sender's and its recipient's, queued in one batch) are stored once.
    pub stanza: Arc<[u8]>,
    /// The owner's XEP-0359 stanza-id is not in `stanza`: it goes in before the
    /// message's end tag as the copy is read (the bytes are shared with a copy
    /// that has none).
    pub stamped: bool,
}

impl Archived {
    /// The correspondent's bare JID (the index key).
    fn with_bare(&self) -> &str {
        self.with.split('/').next().unwrap_or(&self.with)
    }

    fn flags(&self) -> u8 {
        (if self.direction == Direction::Sent { SENT } else { 0 }) | if self.stamped { STAMPED } else { 0 }
    }
}

/// A change to an archive, in the writer's queue.
#[derive(Debug)]
pub enum ArchiveOp {
    Append(Archived),
    /// The whole archive goes (a room that ended).
    Delete,
}

/// A copy: (body, correspondent, its bare JID, flags), stored after its id.
type CopyRow = (u64, u32, u32, u8);

/// A copy's bytes in its run: id, body (8 bytes each), correspondent, bare JID
/// (4 each), flags.
const COPY_WIDTH: usize = 25;

fn copy_row(id: u64, (body, with, bare, flags): CopyRow) -> Row<COPY_WIDTH> {
    let mut r = [0u8; COPY_WIDTH];
    r[..8].copy_from_slice(&id.to_be_bytes());
    r[8..16].copy_from_slice(&body.to_be_bytes());
    r[16..20].copy_from_slice(&with.to_be_bytes());
    r[20..24].copy_from_slice(&bare.to_be_bytes());
    r[24] = flags;
    r
}

/// (id, the copy) of a stored row.
fn read_copy(r: &Row<COPY_WIDTH>) -> (u64, CopyRow) {
    let n4 = |at: usize| u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
    (runs::id_of(r), (runs::id_of(&r[8..16]), n4(16), n4(20), r[24]))
}

/// The `with` index's sequence of an archive and a correspondent.
fn with_seq(owner: u32, bare: u32) -> u64 {
    (u64::from(owner) << 32) | u64::from(bare)
}

/// The archive's tables in a write transaction, and the JID numbers it looked up.
struct Tables<'t> {
    copies: redb::Table<'t, (u64, u64), &'static [u8]>,
    bodies: redb::Table<'t, u64, &'static [u8]>,
    by_with: redb::Table<'t, (u64, u64), &'static [u8]>,
    /// Copies appended in this batch, not yet in their runs ([`Tables::flush`]).
    new_copies: HashMap<u32, Vec<Row<COPY_WIDTH>>>,
    new_with: HashMap<u64, Vec<Row<8>>>,
    names: redb::Table<'t, &'static str, u32>,
    named: redb::Table<'t, u32, &'static str>,
    usage: redb::Table<'t, &'static str, (u64, u64)>,
    meta: redb::Table<'t, &'static str, u64>,
    known: HashMap<String, u32>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            copies: txn.open_table(COPIES).map_err(db_err)?,
            bodies: txn.open_table(BODIES).map_err(db_err)?,
            by_with: txn.open_table(BY_WITH).map_err(db_err)?,
            names: txn.open_table(NAMES).map_err(db_err)?,
            named: txn.open_table(NAMED).map_err(db_err)?,
            usage: txn.open_table(ARCHIVE_USAGE).map_err(db_err)?,
            meta: txn.open_table(ARCHIVE_META).map_err(db_err)?,
            new_copies: HashMap::new(),
            new_with: HashMap::new(),
            known: HashMap::new(),
        })
    }

    /// A copy for its runs (written by [`Tables::flush`]).
    fn add_copy(&mut self, owner: u32, id: u64, copy: CopyRow) {
        self.new_copies.entry(owner).or_default().push(copy_row(id, copy));
        self.new_with.entry(with_seq(owner, copy.2)).or_default().push(id.to_be_bytes());
    }

    /// Writes the copies added so far into their runs: one write per archive
    /// (and per correspondent) touched, whatever the batch's size.
    fn flush(&mut self) -> Result<(), StoreError> {
        for (owner, rows) in std::mem::take(&mut self.new_copies) {
            runs::insert(&mut self.copies, u64::from(owner), rows)?;
        }
        for (seq, rows) in std::mem::take(&mut self.new_with) {
            runs::insert(&mut self.by_with, seq, rows)?;
        }
        Ok(())
    }

    /// `jid`'s number, given now if it has none.
    fn number(&mut self, jid: &str) -> Result<u32, StoreError> {
        if let Some(n) = self.known.get(jid) {
            return Ok(*n);
        }
        let existing = self.names.get(jid).map_err(db_err)?.map(|v| v.value());
        let n = match existing {
            Some(n) => n,
            None => {
                let next = self.meta.get("names").map_err(db_err)?.map_or(0, |v| v.value());
                let n = u32::try_from(next).map_err(|_| StoreError::Corrupt("archive names"))?;
                self.meta.insert("names", next + 1).map_err(db_err)?;
                self.names.insert(jid, n).map_err(db_err)?;
                self.named.insert(n, jid).map_err(db_err)?;
                n
            }
        };
        self.known.insert(jid.to_string(), n);
        Ok(n)
    }

    /// `jid`'s number, if it has one.
    fn number_of(&self, jid: &str) -> Result<Option<u32>, StoreError> {
        if let Some(n) = self.known.get(jid) {
            return Ok(Some(*n));
        }
        Ok(self.names.get(jid).map_err(db_err)?.map(|v| v.value()))
    }

    /// Removes one copy (its row, its index row, its share of its body); the
    /// bytes it counted for.
    fn remove_copy(&mut self, owner: u32, id: u64) -> Result<u64, StoreError> {
        let Some(row) = runs::remove::<COPY_WIDTH>(&mut self.copies, u64::from(owner), id)? else {
            return Ok(0);
        };
        let (_, (body, _, bare, _)) = read_copy(&row);
        runs::remove::<8>(&mut self.by_with, with_seq(owner, bare), id)?;
        self.unref_body(body)
    }

    /// One copy less refers to this body: it goes with its last; the bytes the
    /// copy counted for.
    fn unref_body(&mut self, body: u64) -> Result<u64, StoreError> {
        let stored = self.bodies.get(body).map_err(db_err)?.map(|v| v.value().to_vec());
        let Some(stored) = stored else { return Ok(COPY_ROW_BYTES) };
        let size = COPY_ROW_BYTES + stored.len().saturating_sub(1) as u64;
        match stored.first() {
            Some(refs) if *refs > 1 => {
                let mut less = stored;
                less[0] -= 1;
                self.bodies.insert(body, less.as_slice()).map_err(db_err)?;
            }
            _ => {
                self.bodies.remove(body).map_err(db_err)?;
            }
        }
        Ok(size)
    }

    /// The id of `owner`'s oldest copy.
    fn oldest(&self, owner: u32) -> Result<Option<u64>, StoreError> {
        runs::first::<COPY_WIDTH, _>(&self.copies, u64::from(owner))
    }

    /// Removes every copy of `owner`'s archive, and its usage.
    fn delete_all(&mut self, owner: &BareJid) -> Result<(), StoreError> {
        self.usage.remove(owner.as_str()).map_err(db_err)?;
        let Some(n) = self.number_of(owner.as_str())? else { return Ok(()) };
        self.flush()?;
        loop {
            let run = runs::take_first::<COPY_WIDTH>(&mut self.copies, u64::from(n))?;
            if run.is_empty() {
                return runs::clear(&mut self.by_with, with_seq(n, 0), with_seq(n, u32::MAX));
            }
            for row in &run {
                self.unref_body(read_copy(row).1 .0)?;
            }
        }
    }
}

/// What a query asks for (XEP-0313 §4.1 filters, §4.2 ids).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A bare JID matches every resource; a full JID only itself.
    pub with: Option<String>,
    /// Inclusive, microseconds.
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// Exclusive (`urn:xmpp:mam:2#extended`).
    pub after_id: Option<ArchiveId>,
    pub before_id: Option<ArchiveId>,
    /// Exactly these (`ids`), in archive order.
    pub ids: Vec<ArchiveId>,
}

/// Which page (XEP-0059 §2).
#[derive(Clone, Copy, Debug)]
pub enum Page {
    /// The first `max` (from the oldest), or those after an id.
    Forward { after: Option<ArchiveId> },
    /// The last `max` (an empty `<before/>`: catching up), or those before an id.
    Backward { before: Option<ArchiveId> },
}

/// A page read: the messages in archive order, and whether it reaches the end of
/// the result set in the direction it was read.
#[derive(Debug, Default)]
pub struct PageRead {
    pub messages: Vec<Archived>,
    pub complete: bool,
}

impl Filter {
    /// The id range the filter and the page allow, inclusive; None when empty.
    fn range(&self, page: Page) -> Option<(u64, u64)> {
        let mut lo = self.start.map_or(0, |s| ArchiveId::at(s).0);
        let mut hi = self.end.map_or(u64::MAX, |e| ArchiveId::at(e).0 | ((1 << SEQ_BITS) - 1));
        let after = [self.after_id, if let Page::Forward { after } = page { after } else { None }];
        for a in after.into_iter().flatten() {
            lo = lo.max(a.0.checked_add(1)?);
        }
        let before = [self.before_id, if let Page::Backward { before } = page { before } else { None }];
        for b in before.into_iter().flatten() {
            hi = hi.min(b.0.checked_sub(1)?);
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// `rows` oldest first, or newest first.
fn directed<'a, T: 'a>(
    rows: impl DoubleEndedIterator<Item = T> + 'a,
    backward: bool,
) -> Box<dyn Iterator<Item = T> + 'a> {
    if backward {
        Box::new(rows.rev())
    } else {
        Box::new(rows)
    }
}

/// Where each appended copy's bytes go: the body id of the batch's first copy
/// with the same bytes (at most 255 copies share one), and how many copies
/// refer to each body.
fn shared_bodies<'r>(ops: &[(&'r BareJid, &'r ArchiveOp)]) -> (Vec<u64>, HashMap<u64, u8>) {
    let mut first: HashMap<*const u8, u64> = HashMap::new();
    let mut refs: HashMap<u64, u8> = HashMap::new();
    let mut body_of = Vec::with_capacity(ops.len());
    for (_, op) in ops {
        let ArchiveOp::Append(m) = op else {
            body_of.push(0);
            continue;
        };
        let key = Arc::as_ptr(&m.stanza) as *const u8;
        let body = match first.get(&key) {
            Some(b) if refs.get(b).is_some_and(|n| *n < u8::MAX) => *b,
            _ => {
                first.insert(key, m.id.0);
                m.id.0
            }
        };
        *refs.entry(body).or_insert(0) += 1;
        body_of.push(body);
    }
    (body_of, refs)
}

impl Store {
    pub(super) fn create_archive_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(COPIES).map_err(db_err)?;
        txn.open_table(BODIES).map_err(db_err)?;
        txn.open_table(BY_WITH).map_err(db_err)?;
        txn.open_table(NAMES).map_err(db_err)?;
        txn.open_table(NAMED).map_err(db_err)?;
        txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        txn.open_table(ARCHIVE_META).map_err(db_err)?;
        Ok(())
    }

    /// Moves the archives of earlier layouts into this one, then drops their
    /// tables (once, at start).
    pub(super) fn migrate_archive(db: &redb::Database) -> Result<(), StoreError> {
        Store::migrate_copy_rows(db)?;
        Store::migrate_legacy(db)
    }

    /// A copy per B-tree row (the second layout) into runs, [`rows_layout::BATCH`]
    /// per transaction, oldest first in each archive (the runs' append path).
    fn migrate_copy_rows(db: &redb::Database) -> Result<(), StoreError> {
        loop {
            let txn = db.begin_write().map_err(db_err)?;
            if !txn.list_tables().map_err(db_err)?.any(|t| t.name() == rows_layout::COPIES.name()) {
                return Ok(());
            }
            let moved = {
                let mut old = txn.open_table(rows_layout::COPIES).map_err(db_err)?;
                let mut rows = Vec::new();
                for row in old.iter().map_err(db_err)?.take(rows_layout::BATCH) {
                    let (k, v) = row.map_err(db_err)?;
                    rows.push((k.value(), v.value()));
                }
                let mut t = Tables::open(&txn)?;
                for ((owner, id), copy) in &rows {
                    old.remove((*owner, *id)).map_err(db_err)?;
                    t.add_copy(*owner, *id, *copy);
                }
                t.flush()?;
                rows.len()
            };
            if moved == 0 {
                txn.delete_table(rows_layout::COPIES).map_err(db_err)?;
                txn.delete_table(rows_layout::BY_WITH).map_err(db_err)?;
                log::info!("archive: moved into runs");
            }
            txn.commit().map_err(db_err)?;
        }
    }

    /// Moves the rows of the first layout into this one, [`legacy::BATCH`] per
    /// transaction, then drops its tables.
    fn migrate_legacy(db: &redb::Database) -> Result<(), StoreError> {
        let has_legacy = |txn: &redb::WriteTransaction| -> Result<bool, StoreError> {
            Ok(txn.list_tables().map_err(db_err)?.any(|t| t.name() == legacy::ARCHIVE.name()))
        };
        loop {
            let txn = db.begin_write().map_err(db_err)?;
            if !has_legacy(&txn)? {
                return Ok(());
            }
            let moved = {
                let mut old = txn.open_table(legacy::ARCHIVE).map_err(db_err)?;
                if txn.open_table(COPIES).map_err(db_err)?.is_empty().map_err(db_err)? {
                    // The usage is counted again as the rows move (the first
                    // step: a later one, after a restart, has counted some).
                    let mut usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
                    usage.retain(|_, _| false).map_err(db_err)?;
                }
                let mut rows = Vec::new();
                for row in old.iter().map_err(db_err)?.take(legacy::BATCH) {
                    let (k, v) = row.map_err(db_err)?;
                    let (owner, id) = k.value();
                    rows.push((owner.to_string(), id, v.value().to_vec()));
                }
                let mut ops = Vec::with_capacity(rows.len());
                for (owner, id, value) in &rows {
                    old.remove((owner.as_str(), *id)).map_err(db_err)?;
                    let (Ok(owner), Some(m)) = (owner.parse::<BareJid>(), decode_legacy(ArchiveId(*id), value)) else {
                        continue;
                    };
                    ops.push((owner, ArchiveOp::Append(m)));
                }
                drop(old);
                Store::archive_in(&txn, ops.iter().map(|(o, op)| (o, op)), ArchiveLimits::default())?;
                rows.len()
            };
            if moved == 0 {
                txn.delete_table(legacy::ARCHIVE).map_err(db_err)?;
                txn.delete_table(legacy::ARCHIVE_WITH).map_err(db_err)?;
                log::info!("archive: moved to the shared-body layout");
            }
            txn.commit().map_err(db_err)?;
        }
    }

    /// Appends messages to their archives inside a write transaction (the store
    /// writer's batch: one commit for all), each archive kept within `limits`.
    pub(super) fn archive_in<'r>(
        txn: &redb::WriteTransaction,
        rows: impl IntoIterator<Item = (&'r BareJid, &'r ArchiveOp)>,
        limits: ArchiveLimits,
    ) -> Result<(), StoreError> {
        let ops: Vec<(&BareJid, &ArchiveOp)> = rows.into_iter().collect();
        if ops.is_empty() {
            return Ok(());
        }
        let (body_of, refs) = shared_bodies(&ops);
        let mut t = Tables::open(txn)?;
        // Each archive's usage is read once and written once per batch.
        let mut used: HashMap<&BareJid, (u32, u64, u64)> = HashMap::new();
        let mut newest = 0;
        // A body's value: the copies that refer to it, then the message.
        let mut value = Vec::new();
        for ((owner, op), body) in ops.iter().zip(body_of) {
            let m = match op {
                ArchiveOp::Append(m) => m,
                ArchiveOp::Delete => {
                    // What this batch counted for it is gone too.
                    used.remove(owner);
                    t.delete_all(owner)?;
                    continue;
                }
            };
            newest = newest.max(m.id.0);
            let (number, n, bytes) = match used.entry(owner) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let number = t.number(owner.as_str())?;
                    let usage = t.usage.get(owner.as_str()).map_err(db_err)?.map(|v| v.value());
                    let (n, bytes) = usage.unwrap_or((0, 0));
                    e.insert((number, n, bytes))
                }
            };
            let number = *number;
            if body == m.id.0 {
                value.clear();
                value.push(refs.get(&body).copied().unwrap_or(1));
                value.extend_from_slice(&m.stanza);
                t.bodies.insert(body, value.as_slice()).map_err(db_err)?;
            }
            let with = t.number(&m.with)?;
            let bare = t.number(m.with_bare())?;
            t.add_copy(number, m.id.0, (body, with, bare, m.flags()));
            *n += 1;
            *bytes += COPY_ROW_BYTES + m.stanza.len() as u64;
            // The oldest go first: over a bound, or older than the retention
            // (looked at every RETENTION_EVERY messages: it costs a read).
            let over = *n > limits.max_messages || *bytes > limits.max_bytes;
            let retention = limits.keep_micros > 0 && *n % RETENTION_EVERY == 0;
            if !over && !retention {
                continue;
            }
            let expired_before = m.id.micros().saturating_sub(limits.keep_micros);
            // The oldest may be in this batch.
            t.flush()?;
            for _ in 0..EVICT_PER_APPEND {
                let Some(id) = t.oldest(number)? else { break };
                let expired = limits.keep_micros > 0 && ArchiveId(id).micros() < expired_before;
                if *n <= limits.max_messages && *bytes <= limits.max_bytes && !expired || id == m.id.0 {
                    break;
                }
                let size = t.remove_copy(number, id)?;
                *n -= 1;
                *bytes = bytes.saturating_sub(size);
            }
        }
        t.flush()?;
        for (owner, (_, n, bytes)) in used {
            t.usage.insert(owner.as_str(), (n, bytes)).map_err(db_err)?;
        }
        if newest > 0 {
            let known = t.meta.get("newest").map_err(db_err)?.map_or(0, |v| v.value());
            if newest > known {
                t.meta.insert("newest", newest).map_err(db_err)?;
            }
        }
        Ok(())
    }

    /// Appends messages, durably on return (tests and tools; the server queues
    /// them for the writer).
    pub fn archive(&self, rows: &[(BareJid, Archived)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let ops: Vec<(&BareJid, ArchiveOp)> = rows.iter().map(|(o, m)| (o, ArchiveOp::Append(m.clone()))).collect();
        Store::archive_in(&txn, ops.iter().map(|(o, op)| (*o, op)), self.archive_limits())?;
        txn.commit().map_err(db_err)
    }

    /// The newest id in any archive (ids continue above it after a restart).
    pub fn newest_archive_id(&self) -> Result<Option<ArchiveId>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(ARCHIVE_META).map_err(db_err)?;
        Ok(meta.get("newest").map_err(db_err)?.map(|v| ArchiveId(v.value())))
    }

    /// An archive's (messages, bytes).
    pub fn archive_usage(&self, owner: &BareJid) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        Ok(usage.get(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0)))
    }

    /// Rows the archive keeps, for a test of the layout: (copies, bodies).
    #[cfg(test)]
    fn archive_rows(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let copies = txn.open_table(COPIES).map_err(db_err)?;
        let mut n = 0;
        for run in copies.iter().map_err(db_err)? {
            n += (run.map_err(db_err)?.1.value().len() / COPY_WIDTH) as u64;
        }
        let bodies = txn.open_table(BODIES).map_err(db_err)?.len().map_err(db_err)?;
        Ok((n, bodies))
    }

    /// One page of at most `max` messages of `owner`'s archive that match `filter`.
    pub fn archive_page(
        &self,
        owner: &BareJid,
        filter: &Filter,
        page: Page,
        max: usize,
    ) -> Result<PageRead, StoreError> {
        let empty = || Ok(PageRead { messages: Vec::new(), complete: true });
        let Some((lo, hi)) = filter.range(page) else { return empty() };
        let txn = self.db.begin_read().map_err(db_err)?;
        let names = txn.open_table(NAMES).map_err(db_err)?;
        let number_of =
            |jid: &str| -> Result<Option<u32>, StoreError> { Ok(names.get(jid).map_err(db_err)?.map(|v| v.value())) };
        let Some(number) = number_of(owner.as_str())? else { return empty() };
        // The with filter: its bare JID's number, and a full JID's.
        let (bare, full) = match &filter.with {
            None => (None, None),
            Some(w) => {
                let Some(bare) = number_of(w.split('/').next().unwrap_or(w))? else { return empty() };
                let full = if w.contains('/') {
                    // A full JID never archived: nothing matches.
                    let Some(full) = number_of(w)? else { return empty() };
                    Some(full)
                } else {
                    None
                };
                (Some(bare), full)
            }
        };
        let copies = txn.open_table(COPIES).map_err(db_err)?;
        let bodies = txn.open_table(BODIES).map_err(db_err)?;
        let named = txn.open_table(NAMED).map_err(db_err)?;
        let index = txn.open_table(BY_WITH).map_err(db_err)?;
        let backward = matches!(page, Page::Backward { .. });
        type Rows<'a> = Box<dyn Iterator<Item = Result<(u64, Option<CopyRow>), StoreError>> + 'a>;
        let rows: Rows<'_> = if !filter.ids.is_empty() {
            let mut ids: Vec<u64> = filter.ids.iter().map(|i| i.0).filter(|i| (lo..=hi).contains(i)).collect();
            ids.sort_unstable();
            ids.dedup();
            Box::new(directed(ids.into_iter(), backward).map(|id| Ok((id, None))))
        } else if let Some(bare) = bare {
            let ids = runs::scan::<8, _>(&index, with_seq(number, bare), lo, hi, backward)?;
            Box::new(ids.map(|r| r.map(|id| (runs::id_of(&id), None))))
        } else {
            let rows = runs::scan::<COPY_WIDTH, _>(&copies, u64::from(number), lo, hi, backward)?;
            Box::new(rows.map(|r| r.map(|row| read_copy(&row)).map(|(id, copy)| (id, Some(copy)))))
        };
        let mut jids: HashMap<u32, String> = HashMap::new();
        let mut found = Vec::with_capacity(max.min(1024) + 1);
        for row in rows {
            let (id, copy) = row?;
            let copy = match copy {
                Some(c) => c,
                None => match runs::get::<COPY_WIDTH, _>(&copies, u64::from(number), id)? {
                    Some(row) => read_copy(&row).1,
                    None => continue,
                },
            };
            let (body, with, _, flags) = copy;
            if full.is_some_and(|f| f != with) {
                continue;
            }
            let Some(stored) = bodies.get(body).map_err(db_err)? else { continue };
            let stanza: Arc<[u8]> = Arc::from(stored.value().get(1..).unwrap_or_default());
            let with = match jids.get(&with) {
                Some(j) => j.clone(),
                None => {
                    let j = named.get(with).map_err(db_err)?.map(|v| v.value().to_string()).unwrap_or_default();
                    jids.insert(with, j.clone());
                    j
                }
            };
            let direction = if flags & SENT != 0 { Direction::Sent } else { Direction::Received };
            found.push(Archived { id: ArchiveId(id), direction, with, stanza, stamped: flags & STAMPED != 0 });
            if found.len() > max {
                break;
            }
        }
        let complete = found.len() <= max;
        found.truncate(max);
        if backward {
            found.reverse();
        }
        Ok(PageRead { messages: found, complete })
    }

    /// The background pass over every archive (off the event loop, in batches of
    /// at most `budget` removals, one transaction each): messages past the
    /// retention go from archives that receive nothing any more (appends look
    /// after the others), then, while all archives together hold more than
    /// `max_total_bytes`, the hub's oldest messages go, whichever archive holds
    /// them. New messages are never refused for space.
    pub fn archive_maintenance(&self, now_micros: u64, budget: usize) -> Result<Maintained, StoreError> {
        let limits = self.archive_limits();
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut done = Maintained::default();
        {
            let mut t = Tables::open(&txn)?;
            let mut archives: Vec<(String, u32, u64, u64)> = Vec::new();
            for row in t.usage.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let (n, bytes) = v.value();
                archives.push((k.value().to_string(), 0, n, bytes));
            }
            for a in &mut archives {
                a.1 = t.number_of(&a.0)?.unwrap_or(u32::MAX);
            }
            let expired_before = now_micros.saturating_sub(limits.keep_micros);
            // (oldest id, archive) of each archive, the hub's oldest first.
            let mut heads = std::collections::BinaryHeap::new();
            for (at, (_, number, _, _)) in archives.iter().enumerate() {
                if let Some(id) = t.oldest(*number)? {
                    heads.push(std::cmp::Reverse((id, at)));
                }
            }
            let mut total: u64 = archives.iter().map(|(.., b)| *b).sum();
            while let Some(std::cmp::Reverse((id, at))) = heads.pop() {
                let expired = limits.keep_micros > 0 && ArchiveId(id).micros() < expired_before;
                if !expired && total <= limits.max_total_bytes {
                    break;
                }
                if done.removed == budget {
                    done.more = true;
                    break;
                }
                let (_, number, n, bytes) = &mut archives[at];
                let size = t.remove_copy(*number, id)?;
                *n = n.saturating_sub(1);
                *bytes = bytes.saturating_sub(size);
                total = total.saturating_sub(size);
                done.removed += 1;
                if let Some(next) = t.oldest(*number)? {
                    heads.push(std::cmp::Reverse((next, at)));
                }
            }
            if done.removed > 0 {
                for (owner, _, n, bytes) in &archives {
                    t.usage.insert(owner.as_str(), (*n, *bytes)).map_err(db_err)?;
                }
            }
            done.total_bytes = total;
        }
        if done.removed == 0 {
            txn.abort().map_err(db_err)?;
        } else {
            txn.commit().map_err(db_err)?;
        }
        Ok(done)
    }

    /// Deletes an archive (account deletion).
    pub(super) fn delete_archive_of(txn: &redb::WriteTransaction, owner: &BareJid) -> Result<(), StoreError> {
        Tables::open(txn)?.delete_all(owner)
    }
}

/// A row of the first layout.
fn decode_legacy(id: ArchiveId, b: &[u8]) -> Option<Archived> {
    let direction = match b.first()? {
        0 => Direction::Received,
        1 => Direction::Sent,
        _ => return None,
    };
    let len = usize::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?]));
    let with = std::str::from_utf8(b.get(3..3 + len)?).ok()?.to_string();
    Some(Archived { id, direction, with, stanza: Arc::from(b.get(3 + len..)?), stamped: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn juliet() -> BareJid {
        "juliet@localhost".parse().unwrap()
    }

    /// 10 messages, one a second from t = 1 s: even ones with romeo, odd ones
    /// with the nurse (her kitchen resource).
    fn filled() -> (Store, Vec<ArchiveId>) {
        let store = Store::in_memory().unwrap();
        let ids = ArchiveIds::default();
        let mut rows = Vec::new();
        let mut made = Vec::new();
        for n in 0..10u64 {
            let id = ids.next((n + 1) * 1_000_000);
            made.push(id);
            let with = if n % 2 == 0 { "romeo@localhost/garden" } else { "nurse@localhost/kitchen" };
            let stanza = Arc::from(format!("<message><body>m{n}</body></message>").as_bytes());
            rows.push((
                juliet(),
                Archived { id, direction: Direction::Received, with: with.into(), stanza, stamped: false },
            ));
        }
        store.archive(&rows).unwrap();
        (store, made)
    }

    fn bodies(p: &PageRead) -> Vec<String> {
        p.messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.stanza).replace("<message><body>", "").replace("</body></message>", ""))
            .collect()
    }

    #[test]
    fn the_oldest_go_past_a_bound_or_the_retention_and_the_usage_follows() {
        let store = Store::in_memory().unwrap();
        store.set_archive_limits(ArchiveLimits { max_messages: 3, keep_micros: 0, ..Default::default() });
        let ids = ArchiveIds::default();
        let row = |t: u64, body: &str| {
            let stanza = Arc::from(format!("<message><body>{body}</body></message>").as_bytes());
            let with = "romeo@localhost".into();
            (juliet(), Archived { id: ids.next(t), direction: Direction::Sent, with, stanza, stamped: false })
        };
        for (t, b) in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")] {
            store.archive(&[row(t * 1_000_000, b)]).unwrap();
        }
        let all = store.archive_page(&juliet(), &Filter::default(), Page::Forward { after: None }, 10).unwrap();
        assert_eq!(bodies(&all), ["c", "d", "e"]);
        assert_eq!(store.archive_usage(&juliet()).unwrap().0, 3);
        let romeo = store
            .archive_page(
                &juliet(),
                &Filter { with: Some("romeo@localhost".into()), ..Filter::default() },
                Page::Forward { after: None },
                10,
            )
            .unwrap();
        assert_eq!(bodies(&romeo), ["c", "d", "e"], "the index loses the evicted too");
        // A day's retention: messages a day and more after the old ones drop
        // them (looked at every RETENTION_EVERY messages).
        store.set_archive_limits(ArchiveLimits {
            max_messages: 1000,
            keep_micros: 86_400_000_000,
            ..Default::default()
        });
        let later: Vec<_> = (0..RETENTION_EVERY).map(|k| row(86_406 * 1_000_000 + k, "later")).collect();
        store.archive(&later).unwrap();
        let all = store.archive_page(&juliet(), &Filter::default(), Page::Forward { after: None }, 1000).unwrap();
        assert!(bodies(&all).iter().all(|b| b == "later"), "{:?}", bodies(&all));
    }

    #[test]
    fn ids_grow_within_a_microsecond_and_read_back_as_text() {
        let ids = ArchiveIds::starting_after(Some(ArchiveId::at(5)));
        let a = ids.next(5);
        let b = ids.next(5);
        let c = ids.next(3);
        assert!(ArchiveId::at(5) < a && a < b && b < c);
        assert_eq!(ArchiveId::parse(&b.text()), Some(b));
        assert_eq!(ArchiveId::parse("xyz"), None);
        assert_eq!(ArchiveId::at(7).micros(), 7);
    }

    #[test]
    fn pages_go_forward_and_backward_and_say_when_they_are_complete() {
        let (store, ids) = filled();
        let all = Filter::default();
        let first = store.archive_page(&juliet(), &all, Page::Forward { after: None }, 3).unwrap();
        assert_eq!((bodies(&first), first.complete), (vec!["m0".into(), "m1".into(), "m2".into()], false));
        let next = store.archive_page(&juliet(), &all, Page::Forward { after: Some(ids[8]) }, 3).unwrap();
        assert_eq!((bodies(&next), next.complete), (vec!["m9".to_string()], true));
        let newest = store.archive_page(&juliet(), &all, Page::Backward { before: None }, 2).unwrap();
        assert_eq!((bodies(&newest), newest.complete), (vec!["m8".into(), "m9".into()], false));
        let older = store.archive_page(&juliet(), &all, Page::Backward { before: Some(ids[2]) }, 5).unwrap();
        assert_eq!((bodies(&older), older.complete), (vec!["m0".into(), "m1".into()], true));
    }

    #[test]
    fn filters_by_correspondent_time_and_ids() {
        let (store, ids) = filled();
        let page = |f: Filter| store.archive_page(&juliet(), &f, Page::Forward { after: None }, 100).unwrap();
        let romeo = page(Filter { with: Some("romeo@localhost".into()), ..Filter::default() });
        assert_eq!(bodies(&romeo), ["m0", "m2", "m4", "m6", "m8"]);
        assert!(page(Filter { with: Some("romeo@localhost/other".into()), ..Filter::default() }).messages.is_empty());
        let timed = page(Filter { start: Some(3_000_000), end: Some(5_000_000), ..Filter::default() });
        assert_eq!(bodies(&timed), ["m2", "m3", "m4"]);
        let between = page(Filter { after_id: Some(ids[1]), before_id: Some(ids[4]), ..Filter::default() });
        assert_eq!(bodies(&between), ["m2", "m3"]);
        let chosen = page(Filter { ids: vec![ids[7], ids[3], ArchiveId(1)], ..Filter::default() });
        assert_eq!(bodies(&chosen), ["m3", "m7"]);
        let nurse_backward = store
            .archive_page(
                &juliet(),
                &Filter { with: Some("nurse@localhost".into()), ..Filter::default() },
                Page::Backward { before: None },
                2,
            )
            .unwrap();
        assert_eq!(bodies(&nurse_backward), ["m7", "m9"]);
        assert_eq!(store.archive_usage(&juliet()).unwrap().0, 10);
        assert_eq!(store.newest_archive_id().unwrap(), Some(ids[9]));
    }

    #[test]
    fn maintenance_expires_idle_archives_and_keeps_all_archives_under_the_total_oldest_first() {
        let store = Store::in_memory().unwrap();
        let ids = ArchiveIds::default();
        let romeo: BareJid = "romeo@localhost".parse().unwrap();
        let row = |owner: &BareJid, t: u64, body: &str| {
            let stanza = Arc::from(format!("<message><body>{body}</body></message>").as_bytes());
            let m = Archived {
                id: ids.next(t * 1_000_000),
                direction: Direction::Sent,
                with: "x@localhost".into(),
                stanza,
                stamped: false,
            };
            (owner.clone(), m)
        };
        // Juliet's messages at 1..=4 s, Romeo's at 2..=5 s; nothing arrives after.
        let mut rows = Vec::new();
        for t in 1..=4 {
            rows.push(row(&juliet(), t, &format!("j{t}")));
            rows.push(row(&romeo, t + 1, &format!("r{}", t + 1)));
        }
        store.archive(&rows).unwrap();
        let size = store.archive_usage(&juliet()).unwrap().1 / 4;
        let nothing = store.archive_maintenance(10_000_000, 100).unwrap();
        assert_eq!((nothing.removed, nothing.total_bytes), (0, 8 * size), "no bound, nothing goes");
        // Retention of 7 s at 10 s: what is older than 3 s goes from both.
        store.set_archive_limits(ArchiveLimits { keep_micros: 7_000_000, ..Default::default() });
        let done = store.archive_maintenance(10_000_000, 100).unwrap();
        assert_eq!(done.removed, 3, "j1, j2 and r2");
        let all = |o: &BareJid| {
            bodies(&store.archive_page(o, &Filter::default(), Page::Forward { after: None }, 100).unwrap())
        };
        assert_eq!(all(&juliet()), ["j3", "j4"]);
        assert_eq!(all(&romeo), ["r3", "r4", "r5"]);
        // A total of three messages: the hub's oldest go, whichever archive, in
        // passes of at most the budget.
        store.set_archive_limits(ArchiveLimits { max_total_bytes: 3 * size, ..Default::default() });
        let first = store.archive_maintenance(10_000_000, 1).unwrap();
        assert!(first.removed == 1 && first.more, "{first:?}");
        let second = store.archive_maintenance(10_000_000, 100).unwrap();
        assert!(second.removed == 1 && !second.more && second.total_bytes == 3 * size, "{second:?}");
        assert_eq!(all(&juliet()), ["j4"], "j3 and r3 were the oldest");
        assert_eq!(all(&romeo), ["r4", "r5"]);
        assert_eq!(store.archive_usage(&romeo).unwrap(), (2, 2 * size));
    }

    #[test]
    fn a_message_in_two_archives_is_stored_once_and_goes_with_its_last_copy() {
        let store = Store::in_memory().unwrap();
        let ids = ArchiveIds::default();
        let romeo: BareJid = "romeo@localhost".parse().unwrap();
        let body: Arc<[u8]> = Arc::from(&b"<message><body>hi</body></message>"[..]);
        let sent = Archived {
            id: ids.next(1_000_000),
            direction: Direction::Sent,
            with: "juliet@localhost/balcony".into(),
            stanza: Arc::clone(&body),
            stamped: false,
        };
        let received = Archived {
            id: ids.next(1_000_000),
            direction: Direction::Received,
            with: "romeo@localhost/garden".into(),
            stamped: true,
            ..sent.clone()
        };
        // The same bytes in another allocation are another body.
        let other = Archived { id: ids.next(2_000_000), stanza: Arc::from(&body[..]), ..sent.clone() };
        store.archive(&[(romeo.clone(), sent.clone()), (juliet(), received.clone()), (romeo.clone(), other)]).unwrap();
        assert_eq!(store.archive_rows().unwrap(), (3, 2));
        let all = Filter::default();
        let first = |o: &BareJid| store.archive_page(o, &all, Page::Forward { after: None }, 10).unwrap().messages;
        assert_eq!(first(&romeo)[0], sent);
        assert_eq!(first(&juliet()), std::slice::from_ref(&received), "read back as it went in, stamp flag and all");
        let delete = |owner: &BareJid| {
            let txn = store.db.begin_write().unwrap();
            Store::delete_archive_of(&txn, owner).unwrap();
            txn.commit().unwrap();
        };
        // Romeo's archive goes: Juliet's copy keeps the body.
        delete(&romeo);
        assert_eq!(store.archive_rows().unwrap(), (1, 1));
        assert_eq!(first(&juliet()), [received]);
        delete(&juliet());
        assert_eq!(store.archive_rows().unwrap(), (0, 0));
    }

    #[test]
    fn an_archive_of_a_row_per_copy_moves_into_runs_at_start() {
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let txn = db.begin_write().unwrap();
        let count = rows_layout::BATCH as u64 + 10;
        {
            let mut copies = txn.open_table(rows_layout::COPIES).unwrap();
            let mut index = txn.open_table(rows_layout::BY_WITH).unwrap();
            let mut bodies = txn.open_table(BODIES).unwrap();
            let mut names = txn.open_table(NAMES).unwrap();
            let mut named = txn.open_table(NAMED).unwrap();
            for (n, jid) in ["juliet@localhost", "romeo@localhost/garden", "romeo@localhost"].iter().enumerate() {
                names.insert(*jid, n as u32).unwrap();
                named.insert(n as u32, *jid).unwrap();
            }
            for n in 0..count {
                let id = ArchiveId::at(n + 1).0;
                let body = format!("\u{1}<message><body>m{n}</body></message>");
                bodies.insert(id, body.as_bytes()).unwrap();
                copies.insert((0, id), (id, 1, 2, SENT)).unwrap();
                index.insert((0, 2, id), ()).unwrap();
            }
            txn.open_table(ARCHIVE_USAGE).unwrap().insert("juliet@localhost", (count, count * 80)).unwrap();
        }
        txn.commit().unwrap();
        let store = Store::init(db).unwrap();
        let romeo = Filter { with: Some("romeo@localhost".into()), ..Filter::default() };
        let newest = store.archive_page(&juliet(), &romeo, Page::Backward { before: None }, 2).unwrap();
        let last = count - 1;
        assert_eq!(bodies(&newest), [format!("m{}", last - 1), format!("m{last}")]);
        assert_eq!(newest.messages[1].direction, Direction::Sent);
        assert_eq!(newest.messages[1].with, "romeo@localhost/garden");
        let oldest = store.archive_page(&juliet(), &Filter::default(), Page::Forward { after: None }, 1).unwrap();
        assert_eq!(bodies(&oldest), ["m0"]);
        assert_eq!(store.archive_rows().unwrap(), (count, count));
        assert_eq!(store.archive_usage(&juliet()).unwrap().0, count, "the usage is kept");
        let txn = store.db.begin_write().unwrap();
        let gone = [rows_layout::COPIES.name(), rows_layout::BY_WITH.name()];
        assert!(txn.list_tables().unwrap().all(|t| !gone.contains(&t.name())), "the old tables are gone");
    }

    #[test]
    fn an_archive_in_the_first_layout_moves_into_this_one_at_start() {
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut old = txn.open_table(legacy::ARCHIVE).unwrap();
            let mut index = txn.open_table(legacy::ARCHIVE_WITH).unwrap();
            for n in 0..(legacy::BATCH as u64 + 10) {
                let with = b"romeo@localhost/garden";
                let mut v = vec![n as u8 % 2];
                v.extend_from_slice(&(with.len() as u16).to_be_bytes());
                v.extend_from_slice(with);
                v.extend_from_slice(format!("<message><body>m{n}</body></message>").as_bytes());
                old.insert(("juliet@localhost", ArchiveId::at(n + 1).0), v.as_slice()).unwrap();
                index.insert(("juliet@localhost", 7, ArchiveId::at(n + 1).0), ()).unwrap();
            }
        }
        txn.commit().unwrap();
        let store = Store::init(db).unwrap();
        let romeo = Filter { with: Some("romeo@localhost".into()), ..Filter::default() };
        let newest = store.archive_page(&juliet(), &romeo, Page::Backward { before: None }, 2).unwrap();
        let last = legacy::BATCH + 9;
        assert_eq!(bodies(&newest), [format!("m{}", last - 1), format!("m{last}")]);
        assert_eq!(
            newest.messages[1].direction,
            if last.is_multiple_of(2) { Direction::Received } else { Direction::Sent }
        );
        assert_eq!(store.archive_usage(&juliet()).unwrap().0, legacy::BATCH as u64 + 10);
        let txn = store.db.begin_write().unwrap();
        assert!(txn.list_tables().unwrap().all(|t| t.name() != legacy::ARCHIVE.name()), "the old tables are gone");
    }
}
