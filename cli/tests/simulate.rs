//! `simulate` is deterministic per seed, and its books balance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pahlawan_cli::sim::{SimConfig, run};

fn small(seed: u64) -> SimConfig {
    SimConfig {
        providers: 400,
        recipients: 40,
        seed,
        show_progress: false,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_counts() {
    let a = run(small(9)).await.unwrap();
    let b = run(small(9)).await.unwrap();
    assert_eq!(a.counts, b.counts);
    let c = run(small(10)).await.unwrap();
    assert_ne!(a.counts, c.counts, "a different seed is a different night");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surplus_is_accounted_for() {
    let r = run(small(3)).await.unwrap();
    let c = &r.counts;
    assert_eq!(c.posted, 400);
    assert_eq!(c.delivered + c.expired + c.still_open, c.posted, "{c:?}");
    assert_eq!(c.claimed, c.picked_up, "{c:?}");
    assert!(c.delivered <= c.claimed, "{c:?}");
    assert!(
        c.offers_made >= c.surplus_offered && c.surplus_offered <= c.posted,
        "{c:?}"
    );
    assert!(c.grams_rescued <= c.grams_posted, "{c:?}");
    // The policy declines and ignores some offers, so rematching really happened.
    assert!(c.declined > 0 && c.timed_out > 0, "{c:?}");
    assert!(c.offers_made > c.surplus_offered, "{c:?}");
    assert_eq!(r.post_latency_us.len(), 400);
    assert!(r.render().contains("kg rescued"));
}
