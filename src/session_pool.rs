//! The fixed-capacity session pool: the number of client connections served at
//! once is fixed at start (`max_sessions`). A connection holds a [`SessionLease`]
//! for its slot; when none is free the connection is refused with the stream error
//! `resource-constraint` and nothing is allocated for it.
//!
//! A slot holds only what others need to find the session (the peer, the stream
//! id); the connection's buffers belong to its task and are bounded by the framer
//! and output limits, released while idle. Single-threaded: `Rc`, `Cell`, `RefCell`.
//!
//! The table's memory is reserved for the full capacity at start (it never grows
//! or moves), but slots are written only when first used: a pool sized for 10 000
//! sessions costs its address space, not resident memory, until they come.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

/// What the pool records about a session.
#[derive(Clone, Debug)]
pub struct SlotInfo {
    pub peer: SocketAddr,
    /// The current stream id (128-bit hex, so the capacity is static).
    pub stream_id: heapless::String<32>,
}

struct Slots {
    /// Slots used so far (the high-water mark); capacity reserved up front.
    slots: Vec<Option<SlotInfo>>,
    /// Released slots, reused first; capacity reserved up front.
    free: Vec<u32>,
    capacity: usize,
}

/// A fixed number of session slots.
pub struct SessionPool {
    inner: RefCell<Slots>,
}

impl SessionPool {
    pub fn new(capacity: usize) -> Rc<Self> {
        let capacity = capacity.min(u32::MAX as usize);
        let slots = Vec::with_capacity(capacity);
        let free = Vec::with_capacity(capacity);
        Rc::new(SessionPool { inner: RefCell::new(Slots { slots, free, capacity }) })
    }

    pub fn capacity(&self) -> usize {
        self.inner.borrow().capacity
    }

    pub fn in_use(&self) -> usize {
        let inner = self.inner.borrow();
        inner.slots.len() - inner.free.len()
    }

    /// Takes a free slot, or `None` when the pool is full.
    pub fn try_acquire(self: &Rc<Self>, peer: SocketAddr) -> Option<SessionLease> {
        let mut inner = self.inner.borrow_mut();
        let info = Some(SlotInfo { peer, stream_id: heapless::String::new() });
        let index = match inner.free.pop() {
            Some(index) => {
                inner.slots[index as usize] = info;
                index
            }
            None if inner.slots.len() < inner.capacity => {
                // Within the reserved capacity: no reallocation.
                inner.slots.push(info);
                (inner.slots.len() - 1) as u32
            }
            None => return None,
        };
        Some(SessionLease { pool: Rc::clone(self), index })
    }

    fn release(&self, index: u32) {
        let mut inner = self.inner.borrow_mut();
        if let Some(slot) = inner.slots.get_mut(index as usize) {
            if slot.take().is_some() {
                inner.free.push(index);
            }
        }
    }
}

/// A held slot; dropping it frees the slot.
pub struct SessionLease {
    pool: Rc<SessionPool>,
    index: u32,
}

impl SessionLease {
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Records the stream id of the session's current stream.
    pub fn set_stream_id(&self, id: &str) {
        let mut inner = self.pool.inner.borrow_mut();
        if let Some(Some(slot)) = inner.slots.get_mut(self.index as usize) {
            slot.stream_id.clear();
            // Ids are 32 hex characters; a longer one is truncated, never a panic.
            for c in id.chars() {
                if slot.stream_id.push(c).is_err() {
                    break;
                }
            }
        }
    }

    pub fn info(&self) -> Option<SlotInfo> {
        self.pool.inner.borrow().slots.get(self.index as usize).cloned().flatten()
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_fixed_and_slots_come_back() {
        let pool = SessionPool::new(2);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = pool.try_acquire(peer).unwrap();
        let b = pool.try_acquire(peer).unwrap();
        assert!(pool.try_acquire(peer).is_none());
        assert_eq!(pool.in_use(), 2);
        b.set_stream_id("0123456789abcdef0123456789abcdef-too-long");
        assert_eq!(b.info().unwrap().stream_id.len(), 32);
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.try_acquire(peer).unwrap();
        assert_eq!(c.index(), 0);
        assert_eq!(pool.capacity(), 2);
    }
}
