//! The process-wide budget for connection buffers (REVIEW S1): every connection's
//! framer (input buffer and parsed tables) and reply buffer are charged here.
//! Past `max_buffer_memory`, new connections are refused with
//! `resource-constraint` and an unauthenticated connection that sends more is
//! closed with it (its buffers are what fills the budget, and closing gives them
//! back); authenticated ones go on, each bounded by its own limits. A flood can
//! neither grow memory nor stall real users.

use std::cell::Cell;

pub struct MemoryBudget {
    used: Cell<usize>,
    limit: usize,
}

/// What one connection has charged; released when it is dropped.
pub struct Charge<'b> {
    budget: &'b MemoryBudget,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget { used: Cell::new(0), limit }
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// The buffers in use exceed the budget.
    pub fn exceeded(&self) -> bool {
        self.used.get() > self.limit
    }

    pub fn charge(&self) -> Charge<'_> {
        Charge { budget: self, bytes: 0 }
    }
}

impl Charge<'_> {
    /// The connection now holds `bytes`.
    pub fn set(&mut self, bytes: usize) {
        let used = self.budget.used.get() - self.bytes + bytes;
        self.budget.used.set(used);
        self.bytes = bytes;
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_come_back() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.charge();
        let mut b = budget.charge();
        a.set(60);
        b.set(30);
        assert!(!budget.exceeded());
        b.set(50);
        assert!(budget.exceeded());
        drop(a);
        assert_eq!(budget.used(), 50);
        b.set(10);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
