//! The matching worker pool: at most `workers` requests match at once (a
//! post, a decline: each holds a slot from before its travel times are asked
//! until the writer has answered), at most `queue` more wait for a slot, and
//! any beyond that are refused at once — the API answers 503 with
//! `Retry-After` instead of queueing without bound. Busy slots / workers is
//! `matching_engine_saturation_ratio`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct MatchPool {
    workers: usize,
    queue: usize,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    busy: Arc<AtomicUsize>,
}

/// A held slot; released (and the gauge updated) on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    busy: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool and its queue are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saturated;

impl MatchPool {
    pub fn new(workers: usize, queue: usize) -> MatchPool {
        let workers = workers.max(1);
        MatchPool {
            workers,
            queue,
            slots: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot now, or after waiting in the bounded queue; `Saturated` when
    /// the queue is full too. Cancel-safe: a dropped wait leaves the queue.
    pub async fn enter(&self) -> Result<Slot, Saturated> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _leave = Leave(&self.waiting);
                if waiting >= self.queue {
                    return Err(Saturated);
                }
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Saturated)?
            }
        };
        self.busy.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            _permit: permit,
            busy: self.busy.clone(),
        })
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Busy slots / workers, in [0, 1].
    pub fn saturation(&self) -> f64 {
        self.busy() as f64 / self.workers as f64
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_then_a_bounded_queue_then_refusal() {
        let pool = Arc::new(MatchPool::new(2, 1));
        let a = pool.enter().await.expect("slot 1");
        let b = pool.enter().await.expect("slot 2");
        assert_eq!(pool.saturation(), 1.0);
        // The third waits in the queue...
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.enter().await.map(|_| ()) })
        };
        while pool.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // ...and the fourth finds the queue full.
        assert_eq!(pool.enter().await.err(), Some(Saturated));
        drop(a);
        assert_eq!(waiter.await.expect("joined"), Ok(()));
        assert_eq!(pool.waiting(), 0);
        drop(b);
        assert_eq!(pool.busy(), 0);
        assert_eq!(pool.saturation(), 0.0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let pool = MatchPool::new(1, 1);
        let _a = pool.enter().await.expect("slot");
        let wait = tokio::time::timeout(std::time::Duration::from_millis(5), pool.enter()).await;
        assert!(wait.is_err(), "timed out waiting");
        assert_eq!(pool.waiting(), 0, "the queue place was given back");
        assert_eq!(pool.busy(), 1);
    }

    #[tokio::test]
    async fn no_queue_means_refuse_when_busy() {
        let pool = MatchPool::new(1, 0);
        let _a = pool.enter().await.expect("slot");
        assert_eq!(pool.enter().await.err(), Some(Saturated));
    }
}
