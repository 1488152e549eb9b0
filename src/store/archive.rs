//! The message archive (XEP-0313) as stored: for each archive (an account's bare
//! JID, later a room's), its messages under ids that sort by time, an index per
//! (archive, correspondent's bare JID) for the `with` filter, and the archive's
//! usage (messages, bytes) for quotas.
//!
//! An id is the arrival time in microseconds, shifted left by [`SEQ_BITS`], plus a
//! sequence number within that microsecond ([`ArchiveIds`]): ids sort as the
//! messages arrived, a time filter is an id range, and the XEP-0359 stanza-id is
//! the id written as 16 hex digits.
//!
//! Pages (XEP-0059 result set management) are read with one range scan in the
//! direction asked (forward from `after`, backward from `before` or the newest),
//! one row more than the page to know whether it is complete.

use super::{db_err, Store, StoreError};
use crate::jid::BareJid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// (archive, id) → direction (u8) ++ correspondent's JID (u16 length ++ bytes) ++
/// the stanza as it was delivered.
const ARCHIVE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("archive");
/// (archive, hash of the correspondent's bare JID, id) → nothing: the `with`
/// index (a fixed-size key; a query compares the JIDs of what it finds).
const ARCHIVE_WITH: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("archive_with");

/// FNV-1a: a stable hash of a bare JID for the index.
fn with_key(bare: &str) -> u64 {
    bare.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
/// archive → (messages, bytes).
const ARCHIVE_USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("archive_usage");
/// "newest" → the newest id ever given (ids go on above it after a restart,
/// without a scan of every archive).
const ARCHIVE_META: TableDefinition<&str, u64> = TableDefinition::new("archive_meta");

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
    pub stanza: Vec<u8>,
}

impl Archived {
    fn encode(&self) -> Vec<u8> {
        let with = &self.with.as_bytes()[..self.with.len().min(u16::MAX as usize)];
        let mut v = Vec::with_capacity(3 + with.len() + self.stanza.len());
        v.push(match self.direction {
            Direction::Received => 0,
            Direction::Sent => 1,
        });
        v.extend_from_slice(&(with.len() as u16).to_be_bytes());
        v.extend_from_slice(with);
        v.extend_from_slice(&self.stanza);
        v
    }

    fn decode(id: ArchiveId, b: &[u8]) -> Option<Archived> {
        let direction = match b.first()? {
            0 => Direction::Received,
            1 => Direction::Sent,
            _ => return None,
        };
        let len = usize::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?]));
        let with = std::str::from_utf8(b.get(3..3 + len)?).ok()?.to_string();
        Some(Archived { id, direction, with, stanza: b.get(3 + len..)?.to_vec() })
    }

    /// The correspondent's bare JID (the index key).
    fn with_bare(&self) -> &str {
        self.with.split('/').next().unwrap_or(&self.with)
    }
}

/// A change to an archive, in the writer's queue.
#[derive(Debug)]
pub enum ArchiveOp {
    Append(Archived),
    /// The whole archive goes (a room that ended).
    Delete,
}

type ArchiveTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;
type WithTable<'t> = redb::Table<'t, (&'static str, u64, u64), ()>;

/// Removes every message of `owner`'s archive, and its usage.
fn delete_all(
    table: &mut ArchiveTable<'_>,
    index: &mut WithTable<'_>,
    usage: &mut redb::Table<'_, &'static str, (u64, u64)>,
    owner: &BareJid,
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for row in table.range((owner.as_str(), 0)..=(owner.as_str(), u64::MAX)).map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let id = k.value().1;
        if let Some(m) = Archived::decode(ArchiveId(id), v.value()) {
            rows.push((id, m.with_bare().to_string()));
        }
    }
    for (id, with) in rows {
        table.remove((owner.as_str(), id)).map_err(db_err)?;
        index.remove((owner.as_str(), with_key(&with), id)).map_err(db_err)?;
    }
    usage.remove(owner.as_str()).map_err(db_err)?;
    Ok(())
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

    fn matches(&self, m: &Archived) -> bool {
        match &self.with {
            None => true,
            Some(w) if w.contains('/') => m.with == *w,
            Some(w) => m.with_bare() == w,
        }
    }
}

/// An archive's oldest message: (id, stored bytes, correspondent's bare JID).
fn oldest(
    table: &redb::Table<'_, (&'static str, u64), &'static [u8]>,
    owner: &BareJid,
) -> Result<Option<(u64, u64, String)>, StoreError> {
    let mut range = table.range((owner.as_str(), 0)..=(owner.as_str(), u64::MAX)).map_err(db_err)?;
    let Some(row) = range.next() else { return Ok(None) };
    let (k, v) = row.map_err(db_err)?;
    let id = k.value().1;
    let with = Archived::decode(ArchiveId(id), v.value()).map(|m| m.with_bare().to_string()).unwrap_or_default();
    Ok(Some((id, v.value().len() as u64, with)))
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

impl Store {
    pub(super) fn create_archive_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(ARCHIVE).map_err(db_err)?;
        txn.open_table(ARCHIVE_WITH).map_err(db_err)?;
        txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        txn.open_table(ARCHIVE_META).map_err(db_err)?;
        Ok(())
    }

    /// Appends messages to their archives inside a write transaction (the store
    /// writer's batch: one commit for all), each archive kept within `limits`.
    pub(super) fn archive_in<'r>(
        txn: &redb::WriteTransaction,
        rows: impl IntoIterator<Item = (&'r BareJid, &'r ArchiveOp)>,
        limits: ArchiveLimits,
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(ARCHIVE).map_err(db_err)?;
        let mut index = txn.open_table(ARCHIVE_WITH).map_err(db_err)?;
        let mut usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        // Each archive's usage is read once and written once per batch.
        let mut used: Vec<(&BareJid, u64, u64)> = Vec::new();
        let mut newest = 0;
        for (owner, op) in rows {
            let m = match op {
                ArchiveOp::Append(m) => m,
                ArchiveOp::Delete => {
                    // What this batch counted for it is gone too.
                    if let Some(at) = used.iter().position(|(o, _, _)| *o == owner) {
                        used.remove(at);
                    }
                    delete_all(&mut table, &mut index, &mut usage, owner)?;
                    continue;
                }
            };
            newest = newest.max(m.id.0);
            let value = m.encode();
            table.insert((owner.as_str(), m.id.0), value.as_slice()).map_err(db_err)?;
            index.insert((owner.as_str(), with_key(m.with_bare()), m.id.0), ()).map_err(db_err)?;
            let at = match used.iter().position(|(o, _, _)| *o == owner) {
                Some(at) => at,
                None => {
                    let (n, bytes) = usage.get(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0));
                    used.push((owner, n, bytes));
                    used.len() - 1
                }
            };
            let (_, n, bytes) = &mut used[at];
            *n += 1;
            *bytes += value.len() as u64;
            // The oldest go first: over a bound, or older than the retention
            // (looked at every RETENTION_EVERY messages: it costs a read).
            let over = *n > limits.max_messages || *bytes > limits.max_bytes;
            let retention = limits.keep_micros > 0 && *n % RETENTION_EVERY == 0;
            if !over && !retention {
                continue;
            }
            let expired_before = m.id.micros().saturating_sub(limits.keep_micros);
            for _ in 0..EVICT_PER_APPEND {
                let Some((id, size, with)) = oldest(&table, owner)? else { break };
                let expired = limits.keep_micros > 0 && ArchiveId(id).micros() < expired_before;
                if *n <= limits.max_messages && *bytes <= limits.max_bytes && !expired || id == m.id.0 {
                    break;
                }
                table.remove((owner.as_str(), id)).map_err(db_err)?;
                index.remove((owner.as_str(), with_key(&with), id)).map_err(db_err)?;
                *n -= 1;
                *bytes = bytes.saturating_sub(size);
            }
        }
        for (owner, n, bytes) in used {
            usage.insert(owner.as_str(), (n, bytes)).map_err(db_err)?;
        }
        if newest > 0 {
            let mut meta = txn.open_table(ARCHIVE_META).map_err(db_err)?;
            let known = meta.get("newest").map_err(db_err)?.map_or(0, |v| v.value());
            if newest > known {
                meta.insert("newest", newest).map_err(db_err)?;
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
        if let Some(v) = txn.open_table(ARCHIVE_META).map_err(db_err)?.get("newest").map_err(db_err)? {
            return Ok(Some(ArchiveId(v.value())));
        }
        // A store from before the meta table: one scan.
        let table = txn.open_table(ARCHIVE).map_err(db_err)?;
        let mut newest = None;
        for row in table.iter().map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            newest = newest.max(Some(ArchiveId(k.value().1)));
        }
        Ok(newest)
    }

    /// An archive's (messages, bytes).
    pub fn archive_usage(&self, owner: &BareJid) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        Ok(usage.get(owner.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or((0, 0)))
    }

    /// One page of at most `max` messages of `owner`'s archive that match `filter`.
    pub fn archive_page(
        &self,
        owner: &BareJid,
        filter: &Filter,
        page: Page,
        max: usize,
    ) -> Result<PageRead, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(ARCHIVE).map_err(db_err)?;
        let get = |id: u64| -> Result<Option<Archived>, StoreError> {
            Ok(table
                .get((owner.as_str(), id))
                .map_err(db_err)?
                .and_then(|v| Archived::decode(ArchiveId(id), v.value())))
        };
        let Some((lo, hi)) = filter.range(page) else { return Ok(PageRead { messages: Vec::new(), complete: true }) };
        let backward = matches!(page, Page::Backward { .. });
        let index = txn.open_table(ARCHIVE_WITH).map_err(db_err)?;
        let ids: Box<dyn Iterator<Item = Result<u64, StoreError>> + '_> = if !filter.ids.is_empty() {
            let mut ids: Vec<u64> = filter.ids.iter().map(|i| i.0).filter(|i| (lo..=hi).contains(i)).collect();
            ids.sort_unstable();
            ids.dedup();
            Box::new(directed(ids.into_iter(), backward).map(Ok))
        } else if let Some(with) = &filter.with {
            let bare = with.split('/').next().unwrap_or(with);
            let key = with_key(bare);
            let range = index.range((owner.as_str(), key, lo)..=(owner.as_str(), key, hi)).map_err(db_err)?;
            Box::new(directed(range, backward).map(|r| r.map(|(k, _)| k.value().2).map_err(db_err)))
        } else {
            let range = table.range((owner.as_str(), lo)..=(owner.as_str(), hi)).map_err(db_err)?;
            Box::new(directed(range, backward).map(|r| r.map(|(k, _)| k.value().1).map_err(db_err)))
        };
        let mut found = Vec::with_capacity(max.min(1024) + 1);
        for id in ids {
            if let Some(m) = get(id?)?.filter(|m| filter.matches(m)) {
                found.push(m);
                if found.len() > max {
                    break;
                }
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
            let mut table = txn.open_table(ARCHIVE).map_err(db_err)?;
            let mut index = txn.open_table(ARCHIVE_WITH).map_err(db_err)?;
            let mut usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
            let mut archives: Vec<(BareJid, u64, u64)> = Vec::new();
            for row in usage.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                if let Ok(owner) = k.value().parse::<BareJid>() {
                    let (n, bytes) = v.value();
                    archives.push((owner, n, bytes));
                }
            }
            let expired_before = now_micros.saturating_sub(limits.keep_micros);
            // (oldest id, archive) of each archive, the hub's oldest first.
            let mut heads = std::collections::BinaryHeap::new();
            for (at, (owner, _, _)) in archives.iter().enumerate() {
                if let Some((id, _, _)) = oldest(&table, owner)? {
                    heads.push(std::cmp::Reverse((id, at)));
                }
            }
            let mut total: u64 = archives.iter().map(|(_, _, b)| *b).sum();
            while let Some(std::cmp::Reverse((id, at))) = heads.pop() {
                let expired = limits.keep_micros > 0 && ArchiveId(id).micros() < expired_before;
                if !expired && total <= limits.max_total_bytes {
                    break;
                }
                if done.removed == budget {
                    done.more = true;
                    break;
                }
                let (owner, n, bytes) = &mut archives[at];
                let Some((oldest_id, size, with)) = oldest(&table, owner)? else { continue };
                table.remove((owner.as_str(), oldest_id)).map_err(db_err)?;
                index.remove((owner.as_str(), with_key(&with), oldest_id)).map_err(db_err)?;
                *n = n.saturating_sub(1);
                *bytes = bytes.saturating_sub(size);
                total = total.saturating_sub(size);
                done.removed += 1;
                if let Some((next, _, _)) = oldest(&table, owner)? {
                    heads.push(std::cmp::Reverse((next, at)));
                }
            }
            if done.removed > 0 {
                for (owner, n, bytes) in &archives {
                    usage.insert(owner.as_str(), (*n, *bytes)).map_err(db_err)?;
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
        let mut table = txn.open_table(ARCHIVE).map_err(db_err)?;
        let mut index = txn.open_table(ARCHIVE_WITH).map_err(db_err)?;
        let mut usage = txn.open_table(ARCHIVE_USAGE).map_err(db_err)?;
        delete_all(&mut table, &mut index, &mut usage, owner)
    }
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
            let stanza = format!("<message><body>m{n}</body></message>").into_bytes();
            rows.push((juliet(), Archived { id, direction: Direction::Received, with: with.into(), stanza }));
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
            let stanza = format!("<message><body>{body}</body></message>").into_bytes();
            (juliet(), Archived { id: ids.next(t), direction: Direction::Sent, with: "romeo@localhost".into(), stanza })
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
            let stanza = format!("<message><body>{body}</body></message>").into_bytes();
            let m = Archived {
                id: ids.next(t * 1_000_000),
                direction: Direction::Sent,
                with: "x@localhost".into(),
                stanza,
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
}
