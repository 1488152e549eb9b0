//! Runs: the rows of one sequence (an archive's copies; an archive's ids with
//! one correspondent) packed, sorted, into redb values of up to [`MAX_ROWS`]
//! fixed-width rows each. A batch that adds rows to a sequence rewrites its last
//! run once instead of inserting a row at a time into the middle of a B-tree (a
//! leaf holds a few runs rather than a hundred small rows that each insert
//! shifts): most of what an archived message used to cost the store writer.
//!
//! A run is stored under `(sequence, key)`: its key is at most its first row's
//! id and above every id of the run before it, so the run that holds an id (or
//! would) is the one with the greatest key not above it. Runs are never empty.
//! Each row begins with its id (8 bytes, big-endian).

use super::{db_err, StoreError};
use redb::{ReadableTable, TableDefinition};

/// (sequence, key) → rows.
pub type RunTable = TableDefinition<'static, (u64, u64), &'static [u8]>;

/// Rows a run holds at most: a run of 25-byte rows stays well under a page.
pub const MAX_ROWS: usize = 64;

/// A row of `W` bytes, its id first.
pub type Row<const W: usize> = [u8; W];

/// A row's id.
pub fn id_of(row: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    if let Some(b) = row.get(..8) {
        id.copy_from_slice(b);
    }
    u64::from_be_bytes(id)
}

/// A run's rows (a stored value whose length is not a multiple of `W` is read
/// up to its last whole row).
fn rows<const W: usize>(bytes: &[u8]) -> Vec<Row<W>> {
    bytes.chunks_exact(W).filter_map(|c| c.try_into().ok()).collect()
}

fn packed<const W: usize>(rows: &[Row<W>]) -> Vec<u8> {
    rows.iter().flatten().copied().collect()
}

/// The run that holds `id`'s place: the greatest key not above it.
fn run_at<const W: usize, T: ReadableTable<(u64, u64), &'static [u8]>>(
    table: &T,
    seq: u64,
    id: u64,
) -> Result<Option<(u64, Vec<Row<W>>)>, StoreError> {
    let mut range = table.range((seq, 0)..=(seq, id)).map_err(db_err)?;
    Ok(range.next_back().transpose().map_err(db_err)?.map(|(k, v)| (k.value().1, rows(v.value()))))
}

/// The sequence's first run (`last`: its last), with its key.
fn edge_run<const W: usize, T: ReadableTable<(u64, u64), &'static [u8]>>(
    table: &T,
    seq: u64,
    last: bool,
) -> Result<Option<(u64, Vec<Row<W>>)>, StoreError> {
    let mut range = table.range((seq, 0)..=(seq, u64::MAX)).map_err(db_err)?;
    let run = if last { range.next_back() } else { range.next() };
    Ok(run.transpose().map_err(db_err)?.map(|(k, v)| (k.value().1, rows(v.value()))))
}

/// The row with this id.
pub fn get<const W: usize, T: ReadableTable<(u64, u64), &'static [u8]>>(
    table: &T,
    seq: u64,
    id: u64,
) -> Result<Option<Row<W>>, StoreError> {
    let Some((_, run)) = run_at::<W, _>(table, seq, id)? else { return Ok(None) };
    Ok(run.binary_search_by_key(&id, |r| id_of(r)).ok().and_then(|at| run.get(at).copied()))
}

/// The sequence's first id.
pub fn first<const W: usize, T: ReadableTable<(u64, u64), &'static [u8]>>(
    table: &T,
    seq: u64,
) -> Result<Option<u64>, StoreError> {
    Ok(edge_run::<W, _>(table, seq, false)?.and_then(|(_, run)| run.first().map(|r| id_of(r))))
}

/// The rows with ids in `lo..=hi`, oldest first or newest first, read a run at a
/// time.
pub fn scan<'t, const W: usize, T: ReadableTable<(u64, u64), &'static [u8]>>(
    table: &'t T,
    seq: u64,
    lo: u64,
    hi: u64,
    backward: bool,
) -> Result<impl Iterator<Item = Result<Row<W>, StoreError>> + 't, StoreError> {
    // Forward: from the run that holds lo's place; backward: from hi down.
    let from = if backward { 0 } else { run_at::<W, _>(table, seq, lo)?.map_or(lo, |(k, _)| k) };
    let mut range = table.range((seq, from)..=(seq, hi)).map_err(db_err)?;
    let mut buffered: std::vec::IntoIter<Row<W>> = Vec::new().into_iter();
    let mut done = false;
    Ok(std::iter::from_fn(move || loop {
        if let Some(row) = buffered.next() {
            return Some(Ok(row));
        }
        if done {
            return None;
        }
        let next = if backward { range.next_back() } else { range.next() };
        let (_, v) = match next? {
            Ok(kv) => kv,
            Err(e) => {
                done = true;
                return Some(Err(db_err(e)));
            }
        };
        let mut run: Vec<Row<W>> = rows(v.value());
        if backward {
            // Every earlier run is below this one's first id.
            done = run.first().is_some_and(|r| id_of(r) <= lo);
            run.reverse();
        }
        run.retain(|r| (lo..=hi).contains(&id_of(r)));
        buffered = run.into_iter();
    }))
}

/// Adds rows to a sequence (a row with an id already there replaces it). Rows
/// above every id stored (the usual case: ids grow) fill the last run and then
/// new ones; others go into their place one at a time.
pub fn insert<const W: usize>(
    table: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
    seq: u64,
    mut new: Vec<Row<W>>,
) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    new.sort_by_key(|r| id_of(r));
    new.dedup_by_key(|r| id_of(r));
    let last = edge_run::<W, _>(table, seq, true)?;
    let newest = last.as_ref().and_then(|(_, run)| run.last().map(|r| id_of(r)));
    if newest.is_some_and(|n| id_of(&new[0]) <= n) {
        for row in new {
            insert_one(table, seq, row)?;
        }
        return Ok(());
    }
    let mut rest = new.as_slice();
    if let Some((key, mut run)) = last {
        if run.len() < MAX_ROWS {
            let room = (MAX_ROWS - run.len()).min(rest.len());
            run.extend_from_slice(&rest[..room]);
            rest = &rest[room..];
            table.insert((seq, key), packed(&run).as_slice()).map_err(db_err)?;
        }
    }
    for chunk in rest.chunks(MAX_ROWS) {
        table.insert((seq, id_of(&chunk[0])), packed(chunk).as_slice()).map_err(db_err)?;
    }
    Ok(())
}

/// One row into its place, the run split in two when it is over [`MAX_ROWS`].
fn insert_one<const W: usize>(
    table: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
    seq: u64,
    row: Row<W>,
) -> Result<(), StoreError> {
    let id = id_of(&row);
    let (key, mut run) = match run_at::<W, _>(table, seq, id)? {
        Some(found) => found,
        None => {
            // Below every run: the first run takes it, under a lower key.
            match edge_run::<W, _>(table, seq, false)? {
                Some((old, run)) => {
                    table.remove((seq, old)).map_err(db_err)?;
                    (id, run)
                }
                None => (id, Vec::new()),
            }
        }
    };
    match run.binary_search_by_key(&id, |r| id_of(r)) {
        Ok(at) => run[at] = row,
        Err(at) => run.insert(at, row),
    }
    if run.len() > MAX_ROWS {
        let upper = run.split_off(run.len() / 2);
        table.insert((seq, id_of(&upper[0])), packed(&upper).as_slice()).map_err(db_err)?;
    }
    table.insert((seq, key), packed(&run).as_slice()).map_err(db_err)?;
    Ok(())
}

/// Removes the row with this id; the row, if there was one.
pub fn remove<const W: usize>(
    table: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
    seq: u64,
    id: u64,
) -> Result<Option<Row<W>>, StoreError> {
    let Some((key, mut run)) = run_at::<W, _>(table, seq, id)? else { return Ok(None) };
    let Ok(at) = run.binary_search_by_key(&id, |r| id_of(r)) else { return Ok(None) };
    let row = run.remove(at);
    if run.is_empty() {
        table.remove((seq, key)).map_err(db_err)?;
    } else {
        table.insert((seq, key), packed(&run).as_slice()).map_err(db_err)?;
    }
    Ok(Some(row))
}

/// Takes the sequence's first run out (emptying a sequence a run at a time).
pub fn take_first<const W: usize>(
    table: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
    seq: u64,
) -> Result<Vec<Row<W>>, StoreError> {
    let Some((key, run)) = edge_run::<W, _>(table, seq, false)? else { return Ok(Vec::new()) };
    table.remove((seq, key)).map_err(db_err)?;
    Ok(run)
}

/// Every run of the sequences `from..=to` goes.
pub fn clear(table: &mut redb::Table<'_, (u64, u64), &'static [u8]>, from: u64, to: u64) -> Result<(), StoreError> {
    table.retain_in((from, 0)..=(to, u64::MAX), |_, _| false).map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    const T: RunTable = TableDefinition::new("runs_test");

    fn row(id: u64) -> Row<9> {
        let mut r = [0u8; 9];
        r[..8].copy_from_slice(&id.to_be_bytes());
        r[8] = id as u8;
        r
    }

    fn ids(table: &redb::Table<'_, (u64, u64), &'static [u8]>, lo: u64, hi: u64, backward: bool) -> Vec<u64> {
        scan::<9, _>(table, 1, lo, hi, backward).unwrap().map(|r| id_of(&r.unwrap())).collect()
    }

    #[test]
    fn rows_in_any_order_read_back_sorted_both_ways_across_runs_and_go_one_by_one() {
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let txn = db.begin_write().unwrap();
        let mut t = txn.open_table(T).unwrap();
        // Appends (a batch, then one that fills the last run and starts more),
        // then rows into the middle and below the first (splits, a lower key).
        insert(&mut t, 1, (100..110).map(row).collect()).unwrap();
        insert(&mut t, 1, (110..300).map(row).collect()).unwrap();
        insert(&mut t, 2, vec![row(5)]).unwrap();
        insert(&mut t, 1, (0..100).rev().step_by(2).map(row).collect()).unwrap();
        insert(&mut t, 1, vec![row(150), row(7)]).unwrap();
        let mut want: Vec<u64> = (0..100).rev().step_by(2).chain(100..300).collect();
        want.sort();
        assert_eq!(ids(&t, 0, u64::MAX, false), want);
        let runs = t.range((1u64, 0u64)..=(1, u64::MAX)).unwrap().count();
        assert!(runs >= 200 / MAX_ROWS && runs < want.len() / 8, "{runs} runs");
        assert_eq!(ids(&t, 97, 104, false), [97, 99, 100, 101, 102, 103, 104]);
        assert_eq!(ids(&t, 97, 104, true), [104, 103, 102, 101, 100, 99, 97]);
        assert_eq!(ids(&t, 0, 3, true), [3, 1]);
        assert_eq!(get::<9, _>(&t, 1, 150).unwrap(), Some(row(150)));
        assert_eq!(get::<9, _>(&t, 1, 2).unwrap(), None);
        assert_eq!(first::<9, _>(&t, 1).unwrap(), Some(1));
        assert_eq!(first::<9, _>(&t, 2).unwrap(), Some(5));
        assert_eq!(first::<9, _>(&t, 3).unwrap(), None);
        for id in want.iter().take(want.len() - 1) {
            assert_eq!(remove::<9>(&mut t, 1, *id).unwrap(), Some(row(*id)));
        }
        assert_eq!(remove::<9>(&mut t, 1, 1).unwrap(), None);
        assert_eq!(ids(&t, 0, u64::MAX, true), [299]);
        assert_eq!(t.range((1u64, 0u64)..=(1, u64::MAX)).unwrap().count(), 1, "empty runs go");
        assert_eq!(take_first::<9>(&mut t, 1).unwrap(), vec![row(299)]);
        clear(&mut t, 0, 5).unwrap();
        assert!(t.is_empty().unwrap());
    }
}
