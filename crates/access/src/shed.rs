//! Oldest-first shedding of connections that have not authenticated yet.
//!
//! A TLS handshake (or an SSH key exchange and authentication) costs the server memory for as
//! long as the peer cares to take, up to its timeout. A fixed pool of slots that new
//! connections *wait* for lets a few thousand peers that start a handshake and stall it lock
//! every real client out until their timeouts fire. A [`Shedder`] never makes a newcomer
//! wait: when its [`capacity`](Shedder::capacity) is reached, the connection that has been in
//! the stage **longest** is told to go ([`Ticket::evicted`]) and the newcomer takes its place.
//! A real handshake lasts milliseconds; to evict it an attacker would have to open
//! `capacity` connections within those milliseconds, so real clients get through a flood of
//! stalled handshakes, which are closed oldest first.
//!
//! Bounded: at most `capacity` tickets are live (an evicted ticket no longer counts), and
//! the bookkeeping is O(capacity). Sans-IO apart from the eviction signal (a tokio
//! `oneshot`), and no clock: the order of entry is the age.
//!
//! ```
//! use std::sync::Arc;
//! use ippin_access::shed::Shedder;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let shedder = Arc::new(Shedder::new(2));
//! let mut first = shedder.enter();
//! let _second = shedder.enter();
//! assert!(!first.is_evicted());
//! let _third = shedder.enter(); // full: the oldest, `first`, is told to go
//! first.evicted().await;
//! assert_eq!(shedder.live(), 2);
//! assert_eq!(shedder.shed_total(), 1);
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A bounded set of connections in an unauthenticated stage, shed oldest first.
#[derive(Debug)]
pub struct Shedder {
    capacity: usize,
    inner: Mutex<Inner>,
    shed: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// The live tickets and how to tell each to go.
    live: HashMap<u64, oneshot::Sender<()>>,
    /// Ticket ids in order of entry; may hold ids no longer live (removed lazily).
    order: VecDeque<u64>,
}

/// A connection's place in a [`Shedder`]; leaving the stage is dropping it.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    shedder: Arc<Shedder>,
    evicted: oneshot::Receiver<()>,
    gone: bool,
}

impl Shedder {
    /// A shedder that keeps at most `capacity` connections (at least 1).
    pub fn new(capacity: usize) -> Shedder {
        Shedder {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
            shed: AtomicU64::new(0),
        }
    }

    /// The most connections kept in the stage.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many connections are in the stage now.
    pub fn live(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.live.len())
    }

    /// How many connections were told to go since the start.
    pub fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Enters the stage. Never waits: when the stage is full, the oldest connection in it is
    /// told to go first.
    pub fn enter(self: &Arc<Self>) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut id = 0;
        if let Ok(mut inner) = self.inner.lock() {
            while inner.live.len() >= self.capacity {
                let Some(oldest) = inner.order.pop_front() else {
                    break;
                };
                if let Some(tell) = inner.live.remove(&oldest) {
                    let _ = tell.send(());
                    self.shed.fetch_add(1, Ordering::Relaxed);
                }
            }
            id = inner.next;
            inner.next = inner.next.wrapping_add(1);
            inner.live.insert(id, tx);
            inner.order.push_back(id);
            // Ids of tickets dropped out of order stay in `order` until they reach the
            // front; compact when they would make it grow past twice the capacity.
            if inner.order.len() > self.capacity.saturating_mul(2) {
                let Inner { live, order, .. } = &mut *inner;
                order.retain(|i| live.contains_key(i));
            }
        }
        Ticket {
            id,
            shedder: self.clone(),
            evicted: rx,
            gone: false,
        }
    }
}

impl Ticket {
    /// Resolves when this connection is told to go (and never otherwise, while the ticket
    /// lives). Cancel-safe: use it in `select!` beside the stage's work.
    pub async fn evicted(&mut self) {
        if self.gone {
            return;
        }
        match (&mut self.evicted).await {
            Ok(()) => self.gone = true,
            // The sender is only dropped when this ticket is removed from the shedder,
            // which only eviction and `Drop` do: treat it as an eviction.
            Err(_) => self.gone = true,
        }
    }

    /// Whether this connection has been told to go.
    pub fn is_evicted(&mut self) -> bool {
        if !self.gone && self.evicted.try_recv().is_ok() {
            self.gone = true;
        }
        self.gone
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.shedder.inner.lock() {
            inner.live.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oldest_goes_first_and_the_live_set_stays_bounded() {
        let s = Arc::new(Shedder::new(3));
        let mut tickets: Vec<Ticket> = (0..3).map(|_| s.enter()).collect();
        assert!(tickets.iter_mut().all(|t| !t.is_evicted()));
        // Each newcomer evicts exactly the oldest still-live ticket.
        let mut newer = Vec::new();
        for round in 0..3 {
            newer.push(s.enter());
            assert_eq!(s.live(), 3);
            for (i, t) in tickets.iter_mut().enumerate() {
                assert_eq!(t.is_evicted(), i <= round, "round {round}, ticket {i}");
            }
        }
        assert_eq!(s.shed_total(), 3);
        for t in &mut newer {
            assert!(!t.is_evicted());
        }
    }

    #[tokio::test]
    async fn leaving_frees_a_place_without_shedding() {
        let s = Arc::new(Shedder::new(2));
        let mut a = s.enter();
        let b = s.enter();
        drop(b);
        assert_eq!(s.live(), 1);
        let mut c = s.enter();
        assert!(!a.is_evicted() && !c.is_evicted());
        assert_eq!(s.shed_total(), 0);
        // Full again: `a` is the oldest live one.
        let _d = s.enter();
        a.evicted().await;
        assert!(!c.is_evicted());
    }

    #[tokio::test]
    async fn order_bookkeeping_stays_bounded_under_churn() {
        let s = Arc::new(Shedder::new(4));
        let keep: Vec<Ticket> = (0..3).map(|_| s.enter()).collect();
        for _ in 0..10_000 {
            drop(s.enter());
        }
        let len = s.inner.lock().map(|i| i.order.len()).unwrap_or(usize::MAX);
        assert!(len <= 2 * 4 + 1, "order grew to {len}");
        assert_eq!(s.live(), 3);
        assert_eq!(s.shed_total(), 0);
        drop(keep);
        assert_eq!(s.live(), 0);
    }

    #[tokio::test]
    async fn evicted_resolves_in_a_select() {
        let s = Arc::new(Shedder::new(1));
        let mut first = s.enter();
        let stalled = async {
            tokio::select! {
                () = first.evicted() => "shed",
                () = std::future::pending::<()>() => "never",
            }
        };
        let _second = s.enter();
        assert_eq!(stalled.await, "shed");
    }
}
