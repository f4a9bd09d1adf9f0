//! Byte budgets of what other parties can make an identity hold.
//!
//! Every store that outside senders fill (reassembly buffers, received
//! SURBs, messages waiting for the app, reply keys) has a byte bound of its
//! own per identity (an [`Account`]), and all of them together draw on one
//! [`MemoryBudget`] shared by every identity of the daemon. A store that
//! reaches either bound behaves as its own documentation says (it evicts
//! its own oldest entries, or stops taking more); it never evicts another
//! store's or another identity's data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Default total budget of a daemon: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1024 * 1024 * 1024;

/// One byte budget shared by the stores of every identity.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: AtomicU64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
        })
    }

    /// The total.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes the stores hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes that can still be taken.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.used())
    }

    /// Whether anything is left.
    pub fn has_room(&self) -> bool {
        self.used() < self.limit()
    }

    /// Take `n` bytes if they fit.
    fn try_take(&self, n: u64) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|t| *t <= limit)
            })
            .is_ok()
    }

    /// Take `n` bytes even past the limit (what was admitted while there
    /// was room, sized only once it is there).
    fn force_take(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give_back(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// One store's share of a [`MemoryBudget`]: its own bound, and the bytes it
/// took. What it holds goes back to the budget when it is dropped (the
/// identity stopped).
#[derive(Debug)]
pub struct Account {
    budget: Arc<MemoryBudget>,
    bound: usize,
    used: usize,
}

impl Account {
    /// A share of `budget` bounded by `bound` bytes.
    pub fn new(budget: Arc<MemoryBudget>, bound: usize) -> Self {
        Self {
            budget,
            bound,
            used: 0,
        }
    }

    /// The store's own bound.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Bytes the store holds.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The shared budget.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Whether the store may take more now (below its bound, and the
    /// daemon's budget is not used up).
    pub fn has_room(&self) -> bool {
        self.used < self.bound && self.budget.has_room()
    }

    /// Take `n` bytes if they fit under the store's own bound; the daemon's
    /// budget is charged whatever it has left (for what the identity makes
    /// itself, not what others send it: it counts against the budget, and
    /// so stops others' input sooner, but is never refused for it).
    pub fn try_take_within_bound(&mut self, n: usize) -> bool {
        match self.used.checked_add(n) {
            Some(total) if total <= self.bound => {
                self.force_take(n);
                true
            }
            _ => false,
        }
    }

    /// Take `n` bytes if they fit under both bounds.
    pub fn try_take(&mut self, n: usize) -> bool {
        let Some(total) = self.used.checked_add(n) else {
            return false;
        };
        if total > self.bound || !self.budget.try_take(n as u64) {
            return false;
        }
        self.used = total;
        true
    }

    /// Take `n` bytes whatever the bounds (one item admitted while there
    /// was room).
    pub fn force_take(&mut self, n: usize) {
        self.used = self.used.saturating_add(n);
        self.budget.force_take(n as u64);
    }

    /// Give `n` bytes back.
    pub fn give_back(&mut self, n: usize) {
        let n = n.min(self.used);
        self.used -= n;
        self.budget.give_back(n as u64);
    }

    /// The store measured itself at `n` bytes.
    pub fn set_used(&mut self, n: usize) {
        if n > self.used {
            self.force_take(n - self.used);
        } else {
            self.give_back(self.used - n);
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.budget.give_back(self.used as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_respect_their_bound_and_the_shared_budget() {
        let b = MemoryBudget::new(100);
        let mut x = Account::new(b.clone(), 60);
        let mut y = Account::new(b.clone(), 60);
        assert!(x.try_take(60));
        assert!(!x.try_take(1), "own bound");
        assert!(y.try_take(40));
        assert!(!y.try_take(1), "the daemon's budget is used up");
        assert_eq!((b.used(), b.available()), (100, 0));
        x.give_back(10);
        assert!(y.try_take(10));
        y.force_take(5);
        assert_eq!(b.used(), 105);
        y.set_used(20);
        assert_eq!((y.used(), b.used()), (20, 70));
        drop(x);
        assert_eq!(b.used(), 20, "a dropped account gives everything back");
        let mut own = Account::new(b.clone(), 100);
        assert!(own.try_take_within_bound(90), "past the daemon's budget");
        assert!(!own.try_take_within_bound(11), "not past its own bound");
        assert_eq!(b.used(), 110);
        drop(own);
        y.give_back(1000);
        assert_eq!((y.used(), b.used()), (0, 0));
    }
}
