//! Failed logins per source address, with bounded memory: a fixed number of
//! entries, each counting the failures of one address in the current one-minute
//! window. IPv6 addresses count per /64 (one host owns a whole /64, REVIEW S12).
//! When the table is full, the entry reused is the oldest one that is not
//! blocking its address now, so a flood of fresh addresses cannot evict the entry
//! that stops an attacker. Used for SASL and for component handshakes (S19).
//!
//! Failures are counted per account too (S12), against guessing one password
//! from many addresses. A plain per-account lockout would let anyone lock a user
//! out, so the per-account limit never applies to an address this account has
//! logged in from before (each account remembers its last few): past
//! `auth_failures_per_account` in a minute, only new addresses get
//! `temporary-auth-failure`, without a password check; the user's own devices log
//! in as usual.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// How many source addresses are tracked at once.
pub const CAPACITY: usize = 1024;

struct Entry {
    ip: IpAddr,
    window_start: Instant,
    failures: u32,
}

pub struct AuthLimiter {
    entries: RefCell<Vec<Entry>>,
    per_window: u32,
    accounts: RefCell<Vec<AccountEntry>>,
    per_account: u32,
}

/// Addresses remembered per account (the user's devices).
const TRUSTED_PER_ACCOUNT: usize = 4;

/// Failures for one account, and the addresses it logged in from.
struct AccountEntry {
    account: Box<str>,
    window_start: Instant,
    failures: u32,
    /// Most recent first.
    trusted: heapless::Vec<IpAddr, TRUSTED_PER_ACCOUNT>,
}

/// IPv4 as is (and IPv4-mapped IPv6 as IPv4), other IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl AuthLimiter {
    pub fn new(per_window: u32) -> AuthLimiter {
        AuthLimiter::with_account_limit(per_window, u32::MAX)
    }

    /// Limits per address (`per_window`) and per account (`per_account`), per minute.
    pub fn with_account_limit(per_window: u32, per_account: u32) -> AuthLimiter {
        AuthLimiter { entries: RefCell::new(Vec::new()), per_window, accounts: RefCell::new(Vec::new()), per_account }
    }

    /// May `ip` try a password for `account` now? Always for an address the
    /// account logged in from before; for others, while the account's failures in
    /// this minute are below the limit.
    pub fn account_allowed(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        let ip = key(ip);
        self.accounts.borrow().iter().find(|e| &*e.account == account).is_none_or(|e| {
            now.duration_since(e.window_start) >= WINDOW || e.failures < self.per_account || e.trusted.contains(&ip)
        })
    }

    /// A wrong password for an existing account.
    pub fn record_account_failure(&self, account: &str, now: Instant) {
        let mut accounts = self.accounts.borrow_mut();
        if let Some(e) = accounts.iter_mut().find(|e| &*e.account == account) {
            if now.duration_since(e.window_start) >= WINDOW {
                e.window_start = now;
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            return;
        }
        let fresh =
            AccountEntry { account: account.into(), window_start: now, failures: 1, trusted: Default::default() };
        self.insert_account(&mut accounts, fresh, now);
    }

    /// A login: the address becomes one of the account's own.
    pub fn record_success(&self, account: &str, ip: IpAddr, now: Instant) {
        let ip = key(ip);
        let mut accounts = self.accounts.borrow_mut();
        let Some(e) = accounts.iter_mut().find(|e| &*e.account == account) else {
            let mut trusted = heapless::Vec::new();
            let _ = trusted.push(ip);
            let fresh = AccountEntry { account: account.into(), window_start: now, failures: 0, trusted };
            self.insert_account(&mut accounts, fresh, now);
            return;
        };
        e.trusted.retain(|t| *t != ip);
        if e.trusted.is_full() {
            e.trusted.pop();
        }
        let _ = e.trusted.insert(0, ip);
    }

    /// A bounded table: when full, the entry reused is one that blocks nobody now,
    /// the oldest such (an account under attack keeps its entry).
    fn insert_account(&self, accounts: &mut Vec<AccountEntry>, fresh: AccountEntry, now: Instant) {
        if accounts.len() < CAPACITY {
            accounts.push(fresh);
        } else if let Some(oldest) = accounts.iter_mut().min_by_key(|e| {
            (now.duration_since(e.window_start) < WINDOW && e.failures >= self.per_account, e.window_start)
        }) {
            *oldest = fresh;
        }
    }

    /// May this address try to log in now?
    pub fn allowed(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = key(ip);
        self.entries
            .borrow()
            .iter()
            .find(|e| e.ip == ip)
            .is_none_or(|e| now.duration_since(e.window_start) >= WINDOW || e.failures < self.per_window)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let ip = key(ip);
        let per_window = self.per_window;
        let mut entries = self.entries.borrow_mut();
        if let Some(e) = entries.iter_mut().find(|e| e.ip == ip) {
            if now.duration_since(e.window_start) >= WINDOW {
                e.window_start = now;
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            return;
        }
        let fresh = Entry { ip, window_start: now, failures: 1 };
        if entries.len() < CAPACITY {
            entries.push(fresh);
        } else if let Some(oldest) = entries
            .iter_mut()
            .min_by_key(|e| (now.duration_since(e.window_start) < WINDOW && e.failures >= per_window, e.window_start))
        {
            *oldest = fresh;
        }
    }
}

/// At most this many password checks (PBKDF2 for SASL PLAIN, tens of ms each on a
/// small board) run at once, one per core: a thousand connections sending PLAIN
/// at once wait their turn instead of starting a thousand threads (REVIEW S12).
pub struct CheckPermits {
    free: std::cell::Cell<usize>,
    returned: event_listener::Event,
}

/// A running check; dropping it lets the next one start.
pub struct CheckPermit<'a>(&'a CheckPermits);

impl CheckPermits {
    pub fn new(at_once: usize) -> CheckPermits {
        CheckPermits { free: std::cell::Cell::new(at_once.max(1)), returned: event_listener::Event::new() }
    }

    /// Waits for a turn.
    pub async fn acquire(&self) -> CheckPermit<'_> {
        loop {
            if self.free.get() > 0 {
                self.free.set(self.free.get() - 1);
                return CheckPermit(self);
            }
            let listener = self.returned.listen();
            if self.free.get() > 0 {
                continue;
            }
            listener.await;
        }
    }
}

impl Drop for CheckPermit<'_> {
    fn drop(&mut self) {
        self.0.free.set(self.0.free.get() + 1);
        self.0.returned.notify(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn failures_are_limited_per_ip_per_window_with_bounded_memory() {
        let limiter = AuthLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(limiter.allowed(ip, t0));
        limiter.record_failure(ip, t0);
        limiter.record_failure(ip, t0);
        assert!(!limiter.allowed(ip, t0));
        assert!(limiter.allowed("10.0.0.2".parse().unwrap(), t0));
        assert!(limiter.allowed(ip, t0 + WINDOW));
        for i in 0..(CAPACITY as u32 + 10) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(limiter.entries.borrow().len(), CAPACITY);
    }

    #[test]
    fn account_failures_refuse_new_addresses_only_and_the_table_is_bounded() {
        let limiter = AuthLimiter::with_account_limit(100, 2);
        let t0 = Instant::now();
        let phone: IpAddr = "2001:db8::1".parse().unwrap();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        limiter.record_success("juliet@localhost", phone, t0);
        limiter.record_account_failure("juliet@localhost", t0);
        limiter.record_account_failure("juliet@localhost", t0);
        assert!(!limiter.account_allowed("juliet@localhost", attacker, t0));
        // The phone's /64 is hers, whatever its interface id today.
        assert!(limiter.account_allowed("juliet@localhost", "2001:db8::77".parse().unwrap(), t0));
        assert!(limiter.account_allowed("romeo@localhost", attacker, t0));
        assert!(limiter.account_allowed("juliet@localhost", attacker, t0 + WINDOW));
        // A flood of other accounts' failures cannot evict the entry that blocks.
        for i in 0..(CAPACITY + 10) {
            limiter.record_account_failure(&format!("u{i}@localhost"), t0 + Duration::from_millis(1));
        }
        assert_eq!(limiter.accounts.borrow().len(), CAPACITY);
        assert!(!limiter.account_allowed("juliet@localhost", attacker, t0 + Duration::from_millis(2)));
    }

    #[test]
    fn password_checks_wait_for_a_permit() {
        let permits = CheckPermits::new(1);
        let first = futures_lite::future::block_on(permits.acquire());
        let mut second = Box::pin(permits.acquire());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(second.as_mut().poll(&mut cx).is_pending(), "one at a time");
        drop(first);
        assert!(second.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn ipv6_counts_per_64_and_a_flood_of_addresses_does_not_unblock_an_attacker() {
        let limiter = AuthLimiter::new(2);
        let t0 = Instant::now();
        limiter.record_failure("2001:db8::1".parse().unwrap(), t0);
        limiter.record_failure("2001:db8::ffff:2".parse().unwrap(), t0);
        assert!(!limiter.allowed("2001:db8::3".parse().unwrap(), t0), "the same /64");
        assert!(limiter.allowed("2001:db8:0:1::3".parse().unwrap(), t0));
        // 2000 other addresses fail once each: the blocked /64 stays blocked.
        for i in 0..2000u32 {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(!limiter.allowed("2001:db8::4".parse().unwrap(), t0 + Duration::from_secs(2)));
    }
}
