//! The store writer (REVIEW S9, A1): the only code that makes the store durable.
//!
//! - Offline messages and archived messages (what floods and remote senders make
//!   the server write) are queued with a ticket and inserted by the writer itself;
//!   an archive query first writes what is queued (and waits for a batch the
//!   writer is committing), so it reads everything archived before it.
//! - Every other effect of a stanza (roster, blocklist, account XML, delivered
//!   offline messages) is committed on the loop *without* fsync (redb
//!   `Durability::None`: visible to every later read at once, not yet on disk),
//!   and gets a ticket too.
//!
//! The writer commits on a blocking thread, one `Durability::Immediate`
//! transaction per batch, which persists the queued messages and every
//! non-durable commit before it: group commit, one fsync for all. The stream that
//! got a ticket waits for it before it writes anything (the stanzas of one read
//! share the wait), so the durability order holds (nothing after an effect is
//! answered before the effect is on disk) while other connections run on. Multi-row
//! effects are one transaction, so a crash keeps all of one or none of it.
//!
//! What is left on the loop: a non-durable commit takes the write lock, so one
//! that coincides with the writer's commit waits for it (at most one fsync,
//! never one per write).

use super::archive::{ArchiveOp, Archived};
use super::offline::{OfflineQuota, OfflineRefused};
use super::{db_err, Store};
use crate::jid::{BareJid, Domain};
use event_listener::{Event, EventListener};
use std::sync::{Arc, Mutex};

/// Who hears of a message the quota refused.
#[derive(Debug)]
pub enum Refusal {
    /// The stream that sent it (its own output): the driver writes it.
    Out(Vec<u8>),
    /// Whoever serves this address (a redelivered message's sender).
    To(String, Vec<u8>),
    /// A remote sender, over its domain's link.
    Remote(Domain, Vec<u8>),
}

/// What a ticket's holder learns.
#[derive(Default)]
struct State {
    result: Mutex<Option<Result<(), OfflineRefused>>>,
    /// The answer to write on the waiting stream, when the message was refused.
    bounce: Mutex<Option<Vec<u8>>>,
    done: Event,
}

/// A queued message, until the batch holding it is committed.
#[derive(Clone)]
pub struct Ticket(Arc<State>);

impl Ticket {
    /// The batch holding the message is committed (or failed).
    pub fn done(&self) -> bool {
        self.0.result.lock().map(|r| r.is_some()).unwrap_or(true)
    }

    /// The answer the waiting stream writes, if the message was refused.
    pub fn take_bounce(&self) -> Option<Vec<u8>> {
        self.0.bounce.lock().ok()?.take()
    }

    /// Resolves when the batch holding the message is committed (or failed).
    pub async fn wait(&self) {
        loop {
            if self.done() {
                return;
            }
            let listener: EventListener = self.0.done.listen();
            if self.done() {
                return;
            }
            listener.await;
        }
    }
}

struct Job {
    owner: BareJid,
    stamp: u64,
    stanza: Vec<u8>,
    quota: OfflineQuota,
    state: Arc<State>,
    refusal: Refusal,
}

/// The queue between the loop and the writer.
#[derive(Default)]
pub struct WriteQueue {
    pending: Mutex<Vec<Job>>,
    /// Messages to archive (XEP-0313), each with the state its ticket watches.
    archive: Mutex<ArchiveQueue>,
    /// Signalled when a writer's batch with archive messages is committed.
    archive_committed: std::sync::Condvar,
    /// Tickets of non-durable commits, resolved by the writer's next commit.
    flushes: Mutex<Vec<Arc<State>>>,
    /// A non-durable commit happened since the writer's last commit.
    dirty: std::sync::atomic::AtomicBool,
    /// An advisory value was committed without fsync: persisted by the next
    /// durable commit, which it does not ask for by itself (every
    /// `ADVISORY_SYNC_EVERY`th does).
    advisory: std::sync::atomic::AtomicBool,
    /// A writer runs ([`Store::start_writer`]): effects commit without fsync and
    /// wait for it. Without one (the CLI, tests of the store) every commit is
    /// durable on return.
    deferred: std::sync::atomic::AtomicBool,
    wake: Event,
    /// Held for a whole [`Store::commit_queue`]: the commit at exit waits for the
    /// writer's batch in flight (it took the dirty flag and the queue) instead of
    /// finding nothing to do while that batch is not yet on disk.
    committing: Mutex<()>,
    /// Tickets of the stanza being handled, for its stream to wait on.
    fresh: Mutex<Vec<(Ticket, bool)>>,
    /// `fresh` is not empty (checked after every stanza without the lock).
    any_fresh: std::sync::atomic::AtomicBool,
}

/// Archive messages waiting, and whether the writer is committing some: a
/// query must see both (it waits for such a commit: at most one fsync).
#[derive(Default)]
struct ArchiveQueue {
    rows: Vec<(BareJid, ArchiveOp, Arc<State>)>,
    in_flight: bool,
}

/// A committed batch: each message's outcome, with what to tell whom.
#[derive(Default)]
pub struct Done {
    pub refused: Vec<Refusal>,
    pub stored: usize,
}

impl WriteQueue {
    /// A non-durable commit just happened: the writer persists it with its next
    /// batch; `wait` gives the current stream a ticket for it.
    fn written(&self, wait: bool) {
        use std::sync::atomic::Ordering;
        if wait {
            let state = Arc::new(State::default());
            if let Ok(mut flushes) = self.flushes.lock() {
                flushes.push(Arc::clone(&state));
            }
            if let Ok(mut fresh) = self.fresh.lock() {
                fresh.push((Ticket(state), true));
                self.any_fresh.store(true, Ordering::Relaxed);
            }
        }
        self.dirty.store(true, Ordering::Release);
        self.wake.notify(1);
    }
}

impl Store {
    /// From now on effects commit without fsync and a writer task makes them
    /// durable (`run_store_writer` calls [`Store::commit_queue`]).
    pub fn start_writer(&self) {
        self.writer.deferred.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Begins the write transaction of a stanza's effect.
    pub(crate) fn begin_effect(&self) -> Result<redb::WriteTransaction, super::StoreError> {
        self.begin_with(self.writer.deferred.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Begins a write transaction for an advisory value (the last logout time):
    /// the writer's next batch persists it; without a writer, every
    /// [`super::ADVISORY_SYNC_EVERY`]th is durable by itself.
    pub(crate) fn begin_advisory(&self) -> Result<redb::WriteTransaction, super::StoreError> {
        let deferred = self.writer.deferred.load(std::sync::atomic::Ordering::Relaxed);
        self.begin_with(deferred || matches!(self.advisory_durability(), redb::Durability::None))
    }

    fn begin_with(&self, deferred: bool) -> Result<redb::WriteTransaction, super::StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        if deferred {
            txn.set_durability(redb::Durability::None).map_err(db_err)?;
        }
        Ok(txn)
    }

    /// Something dirty is left (a non-durable commit nobody flushed yet).
    pub fn has_unflushed(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.writer.dirty.load(Ordering::Acquire)
            || self.writer.advisory.load(Ordering::Acquire)
            || self.writer.archive.lock().map(|a| !a.rows.is_empty()).unwrap_or(false)
    }

    /// Commits an effect: durable on return without a writer; otherwise visible
    /// at once and durable with the writer's next batch, the current stream
    /// holding a ticket for it.
    pub(crate) fn commit_effect(&self, txn: redb::WriteTransaction) -> Result<(), super::StoreError> {
        txn.commit().map_err(db_err)?;
        if self.writer.deferred.load(std::sync::atomic::Ordering::Relaxed) {
            self.writer.written(true);
        }
        Ok(())
    }

    /// Commits an advisory value (nobody waits for it; the writer's next batch,
    /// or the next durable commit, persists it).
    pub(crate) fn commit_advisory(&self, txn: redb::WriteTransaction) -> Result<(), super::StoreError> {
        txn.commit().map_err(db_err)?;
        if self.writer.deferred.load(std::sync::atomic::Ordering::Relaxed) {
            self.writer.advisory.store(true, std::sync::atomic::Ordering::Release);
            if matches!(self.advisory_durability(), redb::Durability::Immediate) {
                self.writer.written(false);
            }
        }
        Ok(())
    }

    /// Queues a message for offline storage; the current stream waits for it
    /// (`wait`), or nobody does (a redelivery). `refusal` is the answer should the
    /// quota refuse it.
    pub fn queue_offline(
        &self,
        owner: &BareJid,
        stamp: u64,
        stanza: Vec<u8>,
        quota: OfflineQuota,
        refusal: Refusal,
        wait: bool,
    ) {
        let state = Arc::new(State::default());
        let job = Job { owner: owner.clone(), stamp, stanza, quota, state: Arc::clone(&state), refusal };
        if let Ok(mut pending) = self.writer.pending.lock() {
            pending.push(job);
        }
        if let Ok(mut fresh) = self.writer.fresh.lock() {
            fresh.push((Ticket(state), wait));
            self.writer.any_fresh.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.writer.wake.notify(1);
    }

    /// Queues a message for its archive (XEP-0313): the writer's next batch
    /// stores it with everything else, one fsync for all (never a commit per
    /// message). The current stream waits for it (`wait`: the sender's), or
    /// nobody does.
    ///
    /// Copies queued one after the other for the same stream (a message's
    /// sender's and recipient's) share one ticket while the first is still
    /// queued: one commit holds both.
    pub fn queue_archive(&self, owner: &BareJid, message: Archived, wait: bool) {
        let Ok(mut archive) = self.writer.archive.lock() else { return };
        let mut state = None;
        if wait {
            // The archive queue's lock is held: a row still in it is not committed.
            if let Ok(mut fresh) = self.writer.fresh.lock() {
                state = match (fresh.last(), archive.rows.last()) {
                    (Some((Ticket(t), true)), Some((_, _, queued))) if Arc::ptr_eq(t, queued) => Some(Arc::clone(t)),
                    _ => {
                        let new = Arc::new(State::default());
                        fresh.push((Ticket(Arc::clone(&new)), true));
                        self.writer.any_fresh.store(true, std::sync::atomic::Ordering::Relaxed);
                        Some(new)
                    }
                };
            }
        }
        let state = state.unwrap_or_default();
        archive.rows.push((owner.clone(), ArchiveOp::Append(message), state));
        drop(archive);
        self.writer.wake.notify(1);
    }

    /// Queues the deletion of a whole archive (a room that ended), after what is
    /// queued for it already and before what comes later; nobody waits for it.
    pub fn queue_archive_delete(&self, owner: &BareJid) {
        if let Ok(mut archive) = self.writer.archive.lock() {
            archive.rows.push((owner.clone(), ArchiveOp::Delete, Arc::new(State::default())));
        }
        self.writer.wake.notify(1);
    }

    /// Makes every archive message queued so far readable (an archive query
    /// reads what was archived before it): the queued ones are written now, on
    /// the caller's thread, without fsync (the writer's next batch makes them
    /// durable, and their tickets wait for it); if the writer is committing some,
    /// this waits for that commit.
    pub fn flush_archive(&self) -> Result<(), super::StoreError> {
        let rows = {
            let Ok(mut queue) = self.writer.archive.lock() else { return Ok(()) };
            while queue.rows.is_empty() && queue.in_flight {
                queue = match self.writer.archive_committed.wait(queue) {
                    Ok(q) => q,
                    Err(_) => return Ok(()),
                };
            }
            std::mem::take(&mut queue.rows)
        };
        if rows.is_empty() {
            return Ok(());
        }
        let txn = self.begin_effect()?;
        Store::archive_in(&txn, rows.iter().map(|(o, m, _)| (o, m)), self.archive_limits())?;
        txn.commit().map_err(db_err)?;
        let deferred = self.writer.deferred.load(std::sync::atomic::Ordering::Relaxed);
        for (_, _, state) in rows {
            if deferred {
                if let Ok(mut flushes) = self.writer.flushes.lock() {
                    flushes.push(state);
                }
            } else {
                if let Ok(mut r) = state.result.lock() {
                    *r = Some(Ok(()));
                }
                state.done.notify(usize::MAX);
            }
        }
        if deferred {
            self.writer.dirty.store(true, std::sync::atomic::Ordering::Release);
            self.writer.wake.notify(1);
        }
        Ok(())
    }

    /// Something was queued since the last [`Store::take_fresh_tickets`].
    pub fn has_fresh_tickets(&self) -> bool {
        self.writer.any_fresh.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tickets queued while the current stanza was handled that its stream
    /// must wait for.
    pub fn take_fresh_tickets(&self) -> Vec<Ticket> {
        let Ok(mut fresh) = self.writer.fresh.lock() else { return Vec::new() };
        self.writer.any_fresh.store(false, std::sync::atomic::Ordering::Relaxed);
        std::mem::take(&mut *fresh).into_iter().filter(|(_, wait)| *wait).map(|(t, _)| t).collect()
    }

    /// A listener for queued work, or `None` when some is queued already.
    pub fn listen_write_queue(&self) -> Option<EventListener> {
        let listener = self.writer.wake.listen();
        let pending = self.writer.pending.lock().map(|p| !p.is_empty()).unwrap_or(false)
            || self.writer.archive.lock().map(|a| !a.rows.is_empty()).unwrap_or(false);
        let dirty = self.writer.dirty.load(std::sync::atomic::Ordering::Acquire);
        (!pending && !dirty).then_some(listener)
    }

    /// Commits everything queued, and persists every non-durable commit before
    /// it, in one durable transaction (on a blocking thread: it fsyncs). Each
    /// ticket gets its result; `Out` refusals are kept in the ticket for its
    /// stream, the others are returned to be delivered.
    pub fn commit_queue(&self) -> Done {
        use std::sync::atomic::Ordering;
        let _one_at_a_time = self.writer.committing.lock();
        // Taken before the transaction begins: every commit these stand for has
        // returned already, so the durable commit below covers it.
        let flushes = self.writer.flushes.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
        let dirty =
            self.writer.dirty.swap(false, Ordering::AcqRel) | self.writer.advisory.swap(false, Ordering::AcqRel);
        let jobs = self.writer.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        let archived = self
            .writer
            .archive
            .lock()
            .map(|mut a| {
                let rows = std::mem::take(&mut a.rows);
                a.in_flight = !rows.is_empty();
                rows
            })
            .unwrap_or_default();
        if jobs.is_empty() && archived.is_empty() && flushes.is_empty() && !dirty {
            return Done::default();
        }
        let mut results: Vec<Result<(), OfflineRefused>> = Vec::with_capacity(jobs.len());
        let committed = (|| {
            let txn = self.db.begin_write().map_err(db_err)?;
            for job in &jobs {
                results.push(Store::store_offline_in(&txn, &job.owner, job.stamp, &job.stanza, job.quota));
            }
            Store::archive_in(&txn, archived.iter().map(|(o, m, _)| (o, m)), self.archive_limits())?;
            if jobs.is_empty() && archived.is_empty() {
                // Something to commit, so that the commit is a real, durable one.
                Store::count_flush(&txn)?;
            }
            txn.commit().map_err(db_err)
        })();
        if !archived.is_empty() {
            if let Ok(mut a) = self.writer.archive.lock() {
                a.in_flight = false;
            }
            self.writer.archive_committed.notify_all();
        }
        if let Err(e) = &committed {
            log::error!("store writer: commit failed, {} effect(s) may not be durable: {e}", flushes.len());
        }
        for state in flushes.into_iter().chain(archived.into_iter().map(|(_, _, state)| state)) {
            if let Ok(mut r) = state.result.lock() {
                *r = Some(committed.clone().map_err(OfflineRefused::Store));
            }
            state.done.notify(usize::MAX);
        }
        let mut done = Done::default();
        for (i, job) in jobs.into_iter().enumerate() {
            let result = match (&committed, results.get_mut(i).map(|r| std::mem::replace(r, Ok(())))) {
                (Err(e), _) => Err(OfflineRefused::Store(e.clone())),
                (Ok(()), Some(r)) => r,
                (Ok(()), None) => Err(OfflineRefused::Store(super::StoreError::Corrupt("offline batch"))),
            };
            if result.is_ok() {
                done.stored += 1;
            } else {
                match job.refusal {
                    // The stream waiting on the ticket writes it.
                    Refusal::Out(bytes) => {
                        if let Ok(mut b) = job.state.bounce.lock() {
                            *b = Some(bytes);
                        }
                    }
                    other => done.refused.push(other),
                }
            }
            if let Ok(mut r) = job.state.result.lock() {
                *r = Some(result);
            }
            job.state.done.notify(usize::MAX);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::roster::RosterItem;

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    #[test]
    fn with_a_writer_an_effect_is_visible_at_once_and_its_ticket_waits_for_the_writers_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (juliet, romeo) = (jid("juliet@localhost"), jid("romeo@localhost"));
        {
            let store = Store::open(dir.path()).unwrap();
            store.start_writer();
            store.put_roster_item(&juliet, RosterItem::new(romeo.clone())).unwrap();
            assert!(store.roster_item(&juliet, &romeo).unwrap().is_some(), "reads see the effect");
            let tickets = store.take_fresh_tickets();
            assert_eq!(tickets.len(), 1, "the stream gets a ticket for its effect");
            assert!(!tickets[0].done(), "not durable before the writer commits");
            assert!(store.listen_write_queue().is_none(), "the writer has work");
            store.commit_queue();
            assert!(tickets[0].done());
            assert!(store.listen_write_queue().is_some(), "nothing left to commit");
            // An advisory value gets no ticket and does not wake the writer, but its
            // next commit persists it.
            store.put_account_xml_advisory(&juliet, "last-logout", b"1").unwrap();
            assert!(store.take_fresh_tickets().is_empty());
            assert!(store.listen_write_queue().is_some());
            assert!(store.has_unflushed());
            store.commit_queue();
            assert!(!store.has_unflushed());
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.roster_item(&juliet, &romeo).unwrap().is_some());
        assert_eq!(store.account_xml(&juliet, "last-logout").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn without_a_writer_an_effect_is_durable_on_return_and_needs_no_ticket() {
        let store = Store::in_memory().unwrap();
        store.put_roster_item(&jid("juliet@localhost"), RosterItem::new(jid("romeo@localhost"))).unwrap();
        assert!(!store.has_fresh_tickets());
        assert!(!store.has_unflushed());
    }
}
