//! The fixed-capacity connection pool: the number of connections served at once is
//! fixed at start (`max_sessions`), with shares per kind so that no kind of peer
//! can lock out another (REVIEW S4):
//!
//! - every connection starts **unauthenticated**; those share at most
//!   `max_unauthenticated` slots, at most `max_unauthenticated_per_ip` from one
//!   address (IPv6 counted per /64; 127.0.0.1 and ::1, a local proxy's addresses,
//!   only under the share of all). When a share is full, the *oldest*
//!   unauthenticated connection (of that address, or of all) gives way to the new
//!   one: a flood of idle connections rotates through its own share, and a real
//!   user who logs in within the time the flood needs to open a share's worth of
//!   new connections gets in;
//! - once authenticated a connection is **promoted** to its kind: bound client
//!   sessions and components use the rest of the pool, authenticated inbound
//!   servers at most `max_s2s_in`; outbound links (`S2sOut`) are the hub's own and
//!   bounded by `max_s2s_links`.
//!
//! A slot holds only what the pool needs (peer, kind, age); the connection's
//! buffers belong to its task. The tables are reserved for the full capacity at
//! start and never grow. Single-threaded: `Rc`, `Cell`, `RefCell`.

use event_listener::{Event, EventListener};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// What a connection in the pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Accepted, not authenticated yet (any listener).
    Unauthenticated,
    /// A bound client session.
    Client,
    /// An established external component.
    Component,
    /// An inbound server stream with at least one authenticated domain.
    S2sIn,
    /// An outbound link of ours.
    S2sOut,
    /// An HTTP connection past its first request (a transfer, a page).
    Http,
}

const KINDS: usize = 6;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }
}

/// The pool's capacity and shares (config keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    pub capacity: usize,
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
    pub max_s2s_in: usize,
    /// HTTP connections past their first request (`http_max_connections`).
    pub max_http: usize,
}

impl Shares {
    /// One pool of `capacity` with the default shares (a quarter unauthenticated,
    /// 8 per address, 64 inbound servers).
    pub fn with_capacity(capacity: usize) -> Shares {
        Shares {
            capacity,
            max_unauthenticated: (capacity / 4).max(1),
            max_unauthenticated_per_ip: 8,
            max_s2s_in: 64,
            max_http: 64,
        }
    }
}

/// The address an unauthenticated connection is counted under: IPv4 as is, IPv6
/// by its /64 (one host usually owns a whole /64). `127.0.0.1` and `::1` are not
/// counted per address: behind a local reverse proxy every client has them.
fn address_key(ip: IpAddr) -> Option<IpAddr> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4 == std::net::Ipv4Addr::LOCALHOST => None,
        IpAddr::V4(_) => Some(ip),
        IpAddr::V6(v6) if v6.is_loopback() => None,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
        }
    }
}

/// Shared by a lease and the pool: the pool sets it when the connection must give
/// way to a newer one.
#[derive(Default)]
struct Eviction {
    evicted: Cell<bool>,
    wake: Event,
}

struct Slot {
    peer: SocketAddr,
    kind: Kind,
    eviction: Rc<Eviction>,
    /// It sent more than a stream header (STARTTLS, SASL): one that is logging
    /// in gives way only after every idle one has.
    progressed: bool,
}

struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    count: [usize; KINDS],
    /// Unauthenticated slots, oldest first (at most `max_unauthenticated` + 1).
    unauthenticated: VecDeque<u32>,
    /// Unauthenticated connections per address key.
    per_address: HashMap<IpAddr, u32>,
    shares: Shares,
}

/// Why a connection got no slot, or lost its promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Every slot holds an authenticated connection.
    Pool,
    /// The kind's share is full.
    Share(Kind),
}

/// A fixed number of connection slots, shared out by kind.
pub struct SessionPool {
    inner: RefCell<Slots>,
}

impl SessionPool {
    /// A pool with the default shares.
    pub fn new(capacity: usize) -> Rc<Self> {
        Self::with_shares(Shares::with_capacity(capacity))
    }

    pub fn with_shares(shares: Shares) -> Rc<Self> {
        let capacity = shares.capacity.min(u32::MAX as usize);
        let unauthenticated = shares.max_unauthenticated.min(capacity);
        let shares = Shares { capacity, max_unauthenticated: unauthenticated, ..shares };
        Rc::new(SessionPool {
            inner: RefCell::new(Slots {
                slots: Vec::with_capacity(capacity),
                free: Vec::with_capacity(capacity),
                count: [0; KINDS],
                unauthenticated: VecDeque::with_capacity(unauthenticated + 1),
                per_address: HashMap::with_capacity(unauthenticated + 1),
                shares,
            }),
        })
    }

    pub fn capacity(&self) -> usize {
        self.inner.borrow().shares.capacity
    }

    pub fn shares(&self) -> Shares {
        self.inner.borrow().shares
    }

    pub fn in_use(&self) -> usize {
        self.inner.borrow().count.iter().sum()
    }

    /// Connections of one kind in the pool now.
    pub fn count(&self, kind: Kind) -> usize {
        self.inner.borrow().count[kind.index()]
    }

    /// A slot for a new connection (`Unauthenticated` from a listener, `S2sOut` for
    /// a link of ours). A full unauthenticated share, a full per-address share, or a
    /// full pool with unauthenticated connections in it makes the oldest of them
    /// give way; otherwise `None`.
    pub fn try_acquire(self: &Rc<Self>, peer: SocketAddr) -> Option<SessionLease> {
        self.acquire(peer, Kind::Unauthenticated).ok()
    }

    pub fn acquire(self: &Rc<Self>, peer: SocketAddr, kind: Kind) -> Result<SessionLease, Full> {
        let mut inner = self.inner.borrow_mut();
        let key = address_key(peer.ip());
        let mut reuse = None;
        if kind == Kind::Unauthenticated {
            let from_address = key.and_then(|k| inner.per_address.get(&k).copied()).unwrap_or(0) as usize;
            if from_address >= inner.shares.max_unauthenticated_per_ip {
                reuse = inner.evict_oldest(key);
            } else if inner.count[Kind::Unauthenticated.index()] >= inner.shares.max_unauthenticated {
                reuse = inner.evict_oldest(None);
            }
        }
        let in_use: usize = inner.count.iter().sum();
        if reuse.is_none() && in_use >= inner.shares.capacity {
            if kind != Kind::Unauthenticated {
                return Err(Full::Pool);
            }
            reuse = inner.evict_oldest(None);
            if reuse.is_none() {
                return Err(Full::Pool);
            }
        }
        let eviction = Rc::new(Eviction::default());
        let slot = Some(Slot { peer, kind, eviction: Rc::clone(&eviction), progressed: false });
        let index = match reuse.or_else(|| inner.free.pop()) {
            Some(index) => {
                inner.slots[index as usize] = slot;
                index
            }
            None => {
                // Within the reserved capacity: no reallocation.
                inner.slots.push(slot);
                (inner.slots.len() - 1) as u32
            }
        };
        inner.count[kind.index()] += 1;
        if kind == Kind::Unauthenticated {
            inner.unauthenticated.push_back(index);
            if let Some(key) = key {
                *inner.per_address.entry(key).or_insert(0) += 1;
            }
        }
        Ok(SessionLease { pool: Rc::clone(self), index, eviction })
    }

    fn release(&self, index: u32) {
        let mut inner = self.inner.borrow_mut();
        if let Some(slot) = inner.slots.get_mut(index as usize).and_then(Option::take) {
            inner.forget(index, slot.kind, slot.peer);
            inner.free.push(index);
        }
    }
}

impl Slots {
    /// Takes the counts of a slot that leaves its kind (released, evicted, or
    /// promoted).
    fn forget(&mut self, index: u32, kind: Kind, peer: SocketAddr) {
        self.count[kind.index()] -= 1;
        if kind == Kind::Unauthenticated {
            self.unauthenticated.retain(|i| *i != index);
            if let Some(key) = address_key(peer.ip()) {
                if let Some(n) = self.per_address.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_address.remove(&key);
                    }
                }
            }
        }
    }

    /// Evicts the oldest unauthenticated connection (of one address key, if given)
    /// that has sent nothing but a header, else the oldest of them all; returns
    /// its slot, now empty and not on the free list.
    fn evict_oldest(&mut self, key: Option<IpAddr>) -> Option<u32> {
        let slots = &self.slots;
        let candidate = |i: &u32, idle_only: bool| match (key, &slots[*i as usize]) {
            (_, None) => false,
            (_, Some(slot)) if idle_only && slot.progressed => false,
            (None, Some(_)) => true,
            (Some(key), Some(slot)) => address_key(slot.peer.ip()) == Some(key),
        };
        let position = self
            .unauthenticated
            .iter()
            .position(|i| candidate(i, true))
            .or_else(|| self.unauthenticated.iter().position(|i| candidate(i, false)))?;
        let index = self.unauthenticated[position];
        let slot = self.slots[index as usize].take()?;
        self.forget(index, slot.kind, slot.peer);
        slot.eviction.evicted.set(true);
        slot.eviction.wake.notify(usize::MAX);
        log::info!("{}: unauthenticated connection gives way to a newer one (pool shares full)", slot.peer);
        Some(index)
    }
}

/// A held slot; dropping it frees the slot (unless it was evicted: then the slot
/// already belongs to the connection that replaced it).
pub struct SessionLease {
    pool: Rc<SessionPool>,
    index: u32,
    eviction: Rc<Eviction>,
}

impl SessionLease {
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The peer address.
    pub fn peer(&self) -> Option<SocketAddr> {
        let inner = self.pool.inner.borrow();
        inner.slots.get(self.index as usize).and_then(|s| s.as_ref()).map(|s| s.peer)
    }

    /// The connection authenticated: it leaves the unauthenticated share for the
    /// share of its kind. `Err` when that share is full (the stream must end with
    /// `resource-constraint`); promoting twice is a no-op.
    pub fn promote(&self, kind: Kind) -> Result<(), Full> {
        if self.evicted() {
            return Err(Full::Share(Kind::Unauthenticated));
        }
        let mut inner = self.pool.inner.borrow_mut();
        let Some(Some(slot)) = inner.slots.get(self.index as usize) else { return Ok(()) };
        let (from, peer) = (slot.kind, slot.peer);
        if from == kind {
            return Ok(());
        }
        if kind == Kind::S2sIn && inner.count[Kind::S2sIn.index()] >= inner.shares.max_s2s_in {
            return Err(Full::Share(Kind::S2sIn));
        }
        if kind == Kind::Http && inner.count[Kind::Http.index()] >= inner.shares.max_http {
            return Err(Full::Share(Kind::Http));
        }
        inner.forget(self.index, from, peer);
        inner.count[kind.index()] += 1;
        if let Some(Some(slot)) = inner.slots.get_mut(self.index as usize) {
            slot.kind = kind;
        }
        Ok(())
    }

    /// The connection sent a first element after its header: it is logging in.
    pub fn progressed(&self) {
        let mut inner = self.pool.inner.borrow_mut();
        if let Some(Some(slot)) = inner.slots.get_mut(self.index as usize) {
            slot.progressed = true;
        }
    }

    /// The pool gave this connection's slot to a newer one: end it.
    pub fn evicted(&self) -> bool {
        self.eviction.evicted.get()
    }

    /// Resolves when the connection is evicted (never, once promoted).
    pub async fn wait_evicted(&self) {
        loop {
            if self.evicted() {
                return;
            }
            let listener: EventListener = self.eviction.wake.listen();
            if self.evicted() {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        if !self.evicted() {
            self.pool.release(self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn capacity_is_fixed_and_slots_come_back() {
        let pool = SessionPool::new(2);
        let a = pool.acquire(peer("127.0.0.1:1"), Kind::S2sOut).unwrap();
        let b = pool.acquire(peer("127.0.0.1:1"), Kind::S2sOut).unwrap();
        assert_eq!(pool.acquire(peer("127.0.0.1:1"), Kind::S2sOut).err(), Some(Full::Pool));
        assert!(pool.try_acquire(peer("127.0.0.1:1")).is_none(), "nothing to evict");
        assert_eq!(pool.in_use(), 2);
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.try_acquire(peer("127.0.0.1:1")).unwrap();
        assert_eq!(c.index(), 0);
        assert_eq!(pool.capacity(), 2);
        drop(b);
    }

    #[test]
    fn a_full_unauthenticated_share_evicts_its_oldest() {
        let shares =
            Shares { capacity: 10, max_unauthenticated: 3, max_unauthenticated_per_ip: 8, max_s2s_in: 1, max_http: 1 };
        let pool = SessionPool::with_shares(shares);
        let first: Vec<_> = (1..=3).map(|i| pool.try_acquire(peer(&format!("10.0.0.{i}:1"))).unwrap()).collect();
        let newest = pool.try_acquire(peer("10.0.0.9:1")).unwrap();
        assert!(first[0].evicted() && !first[1].evicted() && !newest.evicted());
        assert_eq!(pool.count(Kind::Unauthenticated), 3);
        assert_eq!(newest.index(), first[0].index(), "the slot passed to the newcomer");
        drop(first);
        assert_eq!(pool.in_use(), 1, "an evicted lease does not free the slot twice");
        // Promoted connections are never evicted; inbound servers have their own cap.
        newest.promote(Kind::S2sIn).unwrap();
        let other = pool.try_acquire(peer("10.0.0.8:1")).unwrap();
        assert_eq!(other.promote(Kind::S2sIn), Err(Full::Share(Kind::S2sIn)));
        other.promote(Kind::Client).unwrap();
        assert_eq!((pool.count(Kind::S2sIn), pool.count(Kind::Client)), (1, 1));
        // HTTP transfers too.
        let web = pool.try_acquire(peer("10.0.0.7:1")).unwrap();
        web.promote(Kind::Http).unwrap();
        let web2 = pool.try_acquire(peer("10.0.0.6:1")).unwrap();
        assert_eq!(web2.promote(Kind::Http), Err(Full::Share(Kind::Http)));
        drop((web, web2));
    }

    #[test]
    fn a_connection_that_is_logging_in_gives_way_after_the_idle_ones() {
        let shares =
            Shares { capacity: 10, max_unauthenticated: 3, max_unauthenticated_per_ip: 8, max_s2s_in: 1, max_http: 1 };
        let pool = SessionPool::with_shares(shares);
        let login = pool.try_acquire(peer("10.0.0.1:1")).unwrap();
        login.progressed();
        let idle: Vec<_> = (2..=3).map(|i| pool.try_acquire(peer(&format!("10.0.0.{i}:1"))).unwrap()).collect();
        let new = pool.try_acquire(peer("10.0.0.9:1")).unwrap();
        assert!(!login.evicted() && idle[0].evicted() && !idle[1].evicted());
        new.progressed();
        let newer = pool.try_acquire(peer("10.0.0.8:1")).unwrap();
        assert!(idle[1].evicted() && !login.evicted());
        newer.progressed();
        let _newest = pool.try_acquire(peer("10.0.0.7:1")).unwrap();
        assert!(login.evicted() && !new.evicted(), "with only progressed ones left, the oldest goes");
    }

    #[test]
    fn one_address_evicts_only_its_own_and_ipv6_counts_per_64() {
        let shares =
            Shares { capacity: 10, max_unauthenticated: 10, max_unauthenticated_per_ip: 2, max_s2s_in: 1, max_http: 1 };
        let pool = SessionPool::with_shares(shares);
        let other = pool.try_acquire(peer("192.168.1.5:1")).unwrap();
        let a = pool.try_acquire(peer("[2001:db8::1]:1")).unwrap();
        let b = pool.try_acquire(peer("[2001:db8::2]:1")).unwrap();
        let c = pool.try_acquire(peer("[2001:db8::ffff:3]:1")).unwrap();
        assert!(a.evicted() && !b.evicted() && !c.evicted() && !other.evicted());
        let d = pool.try_acquire(peer("[2001:db8:0:1::1]:1")).unwrap();
        assert!(!d.evicted() && !b.evicted(), "another /64 is another address");
        let local: Vec<_> = (0..5).map(|_| pool.try_acquire(peer("127.0.0.1:1")).unwrap()).collect();
        assert!(local.iter().all(|l| !l.evicted()), "a local proxy's address counts only in the share of all");
    }

    #[test]
    fn a_pool_full_of_sessions_refuses_and_a_full_pool_evicts_unauthenticated() {
        let shares =
            Shares { capacity: 2, max_unauthenticated: 2, max_unauthenticated_per_ip: 8, max_s2s_in: 1, max_http: 1 };
        let pool = SessionPool::with_shares(shares);
        let a = pool.try_acquire(peer("10.0.0.1:1")).unwrap();
        a.promote(Kind::Client).unwrap();
        let b = pool.try_acquire(peer("10.0.0.2:1")).unwrap();
        let c = pool.try_acquire(peer("10.0.0.3:1")).unwrap();
        assert!(b.evicted() && !c.evicted() && !a.evicted());
        c.promote(Kind::Component).unwrap();
        assert!(pool.try_acquire(peer("10.0.0.4:1")).is_none());
    }
}
