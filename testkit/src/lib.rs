//! Test support shared by the edge's, the hub's and the CLI's tests (a
//! dev-dependency only): waits on a condition with a bounded deadline
//! ([`until`], [`eventually`]) instead of sleeps, a fresh PostgreSQL
//! database per test ([`pg`]; on a Citus cluster with
//! `PAHLAWAN_TEST_DB=citus`, [`citus`]), and a fault-injecting UDP proxy for QUIC
//! partitions ([`udp_proxy`]), a headless Chromium over WebDriver for
//! page tests ([`browser`]), and a fake webhook receiver that checks
//! Standard Webhooks signatures with the reference library ([`webhook`]),
//! and a fake Web Push service that decrypts what it is sent ([`push`]).

pub mod browser;
pub mod citus;
pub mod page;
pub mod pg;
pub mod push;
pub mod udp_proxy;
pub mod webhook;

use std::time::Duration;

/// How long a wait may take before the test fails: generous, so only a real
/// hang fails, never a slow machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// How often a waited-on condition is checked.
const POLL: Duration = Duration::from_millis(50);

/// Waits until `check` holds, failing with `what` after [`DEADLINE`].
pub async fn until<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let mut wait = Wait::new(what, DEADLINE);
    while !check().await {
        wait.again().await;
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after
/// [`DEADLINE`]. (`check` returns a plain future, so a spawned task may
/// wait too.)
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, DEADLINE, check).await
}

/// [`eventually`] with another deadline.
pub async fn eventually_within<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut wait = Wait::new(what, deadline);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        wait.again().await;
    }
}

/// One bounded wait: [`again`](Wait::again) sleeps a poll interval, or
/// fails the test once the deadline has passed.
struct Wait<'a> {
    what: &'a str,
    deadline: Duration,
    give_up: tokio::time::Instant,
}

impl<'a> Wait<'a> {
    fn new(what: &'a str, deadline: Duration) -> Wait<'a> {
        let give_up = tokio::time::Instant::now() + deadline;
        Wait {
            what,
            deadline,
            give_up,
        }
    }

    async fn again(&mut self) {
        assert!(
            tokio::time::Instant::now() < self.give_up,
            "timed out after {:?} waiting for {}",
            self.deadline,
            self.what
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    }

    #[test]
    fn a_wait_returns_what_it_waited_for() {
        let polls = std::cell::Cell::new(0);
        let got = paused_runtime().block_on(eventually("the third poll", || async {
            polls.set(polls.get() + 1);
            (polls.get() == 3).then_some(polls.get())
        }));
        assert_eq!(got, 3);
        let mut n = 0;
        paused_runtime().block_on(until("the fifth poll", async || {
            n += 1;
            n == 5
        }));
        assert_eq!(n, 5);
    }

    #[test]
    fn a_wait_fails_at_its_deadline_naming_what_it_waited_for() {
        let failed = std::panic::catch_unwind(|| {
            paused_runtime().block_on(until("what never happens", async || false))
        });
        let panic = failed.expect_err("the wait fails");
        let msg = panic.downcast_ref::<String>().expect("a message");
        assert!(msg.contains("what never happens"), "{msg}");
        assert!(msg.contains("120s"), "{msg}");
    }
}
