//! Failed logins per source IP, with bounded memory: a fixed number of entries,
//! each counting the failures of one address in the current one-minute window.
//! When the table is full the entry with the oldest window is reused.

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
}

impl AuthLimiter {
    pub fn new(per_window: u32) -> AuthLimiter {
        AuthLimiter { entries: RefCell::new(Vec::new()), per_window }
    }

    /// May this address try to log in now?
    pub fn allowed(&self, ip: IpAddr, now: Instant) -> bool {
        self.entries
            .borrow()
            .iter()
            .find(|e| e.ip == ip)
            .is_none_or(|e| now.duration_since(e.window_start) >= WINDOW || e.failures < self.per_window)
    }

    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
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
        } else if let Some(oldest) = entries.iter_mut().min_by_key(|e| e.window_start) {
            *oldest = fresh;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
