//! The store writer for offline messages (REVIEW S9): the event loop queues a
//! message to store and gets a ticket; a writer task commits everything queued in
//! one transaction on a blocking thread (group commit: one fsync for the batch)
//! while the loop goes on. The stream that queued a message waits for its ticket
//! before it reads its next stanza, so the durability order holds: nothing after
//! the message is answered before the message is on disk.
//!
//! Only offline storage goes through the writer so far: it is what remote senders
//! and floods make the server write. Rosters, blocklists and account XML still
//! commit on the loop (a durable commit by the writer can make such a write wait
//! for the write lock); moving them needs the handlers to return effects.

use super::offline::{OfflineQuota, OfflineRefused};
use super::{db_err, Store};
use crate::jid::{BareJid, Domain, FullJid};
use event_listener::{Event, EventListener};
use std::sync::{Arc, Mutex};

/// Who hears of a message the quota refused.
#[derive(Debug)]
pub enum Refusal {
    /// The stream that sent it (its own output): the driver writes it.
    Out(Vec<u8>),
    /// A local session.
    Local(FullJid, Vec<u8>),
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
    fn done(&self) -> bool {
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
pub struct OfflineQueue {
    pending: Mutex<Vec<Job>>,
    wake: Event,
    /// Tickets of the stanza being handled, for its stream to wait on.
    fresh: Mutex<Vec<(Ticket, bool)>>,
    /// `fresh` is not empty (checked after every stanza without the lock).
    any_fresh: std::sync::atomic::AtomicBool,
}

/// A committed batch: each message's outcome, with what to tell whom.
pub struct Done {
    pub refused: Vec<Refusal>,
    pub stored: usize,
}

impl Store {
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
    pub fn listen_offline_queue(&self) -> Option<EventListener> {
        let listener = self.writer.wake.listen();
        let empty = self.writer.pending.lock().map(|p| p.is_empty()).unwrap_or(true);
        empty.then_some(listener)
    }

    /// Commits everything queued in one transaction (on a blocking thread: it
    /// fsyncs). Each ticket gets its result; `Out` refusals are kept in the ticket
    /// for its stream, the others are returned to be delivered.
    pub fn commit_offline_queue(&self) -> Done {
        let jobs = match self.writer.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return Done { refused: Vec::new(), stored: 0 },
        };
        if jobs.is_empty() {
            return Done { refused: Vec::new(), stored: 0 };
        }
        let mut results: Vec<Result<(), OfflineRefused>> = Vec::with_capacity(jobs.len());
        let committed = (|| {
            let txn = self.db.begin_write().map_err(db_err)?;
            for job in &jobs {
                results.push(Store::store_offline_in(&txn, &job.owner, job.stamp, &job.stanza, job.quota));
            }
            txn.commit().map_err(db_err)
        })();
        let mut done = Done { refused: Vec::new(), stored: 0 };
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
