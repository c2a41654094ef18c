//! Scheduled backups of a real edge (`[backup] every_hours`, `keep`) on a
//! manual clock: the first is taken at start, the next when `every_hours`
//! have passed on the edge's clock, older ones are pruned to `keep`, each
//! is a backup `restore` accepts, and `backup_age_seconds` in `/metrics`
//! follows the newest — also after a restart, before any new one is taken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_node::clock::ManualClock;
use edge_node::store::backup;
use edge_node::{Edge, StartOptions};
use sync_protocol::{Duration, Timestamp};

const HOUR_MS: i64 = 3_600_000;

async fn start(data: &Path, backups: &Path, clock: Arc<ManualClock>) -> (Edge, String) {
    let mut cfg = common::config(data);
    cfg.backup.every_hours = 1;
    cfg.backup.keep = 2;
    cfg.backup.dir = Some(backups.to_path_buf());
    let options = StartOptions {
        clock,
        ..StartOptions::default()
    };
    let edge = Edge::start(cfg, options).await.expect("edge starts");
    let base = format!("http://{}", edge.local_addr().expect("serving"));
    (edge, base)
}

/// `backup_age_seconds` as `/metrics` reports it now.
async fn backup_age(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("backup_age_seconds "))
        .unwrap_or_else(|| panic!("no backup_age_seconds in\n{text}"))
        .parse()
        .unwrap()
}

/// The scheduled backups in `dir`, newest first, by the time they were taken.
fn taken(dir: &Path) -> Vec<(PathBuf, i64)> {
    backup::scheduled(dir)
}

async fn wait_for_backup_at(dir: &Path, at_ms: i64) {
    testkit::until(
        &format!("a scheduled backup taken at {at_ms}"),
        async || taken(dir).first().is_some_and(|(_, t)| *t == at_ms),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_follow_the_edges_clock_are_pruned_and_their_age_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let t0 = Timestamp::from_unix_ms(time::OffsetDateTime::now_utc().unix_timestamp() * 1_000);
    let clock = Arc::new(ManualClock::new(t0));
    let (edge, base) = start(&data, &backups, clock.clone()).await;

    // None existed: the first is taken at start, and is 0 s old on a still clock.
    wait_for_backup_at(&backups, t0.unix_ms()).await;
    testkit::until(
        "backup_age_seconds is 0 after the first backup",
        async || backup_age(&base).await == 0.0,
    )
    .await;

    // Not due yet: the age grows with the edge's clock.
    clock.advance(Duration::from_ms(HOUR_MS / 2));
    assert_eq!(backup_age(&base).await, 1_800.0);

    // Due: a second, then a third, and only the newest two are kept.
    clock.advance(Duration::from_ms(HOUR_MS / 2));
    let t1 = t0.unix_ms() + HOUR_MS;
    wait_for_backup_at(&backups, t1).await;
    clock.advance(Duration::from_ms(HOUR_MS));
    let t2 = t1 + HOUR_MS;
    wait_for_backup_at(&backups, t2).await;
    testkit::until("pruned to keep = 2", async || {
        taken(&backups).iter().map(|(_, t)| *t).collect::<Vec<_>>() == [t2, t1]
    })
    .await;
    testkit::until(
        "backup_age_seconds is 0 after the third backup",
        async || backup_age(&base).await == 0.0,
    )
    .await;

    // Each is a backup `restore` accepts: the header is read and checked.
    for (file, at) in taken(&backups) {
        let (manifest, _) = backup::open(&file).expect("a scheduled backup opens");
        assert_eq!(
            (manifest.edge_id.as_str(), manifest.taken_at_ms),
            ("test-edge", at)
        );
    }
    edge.shutdown().await;

    // After a restart the age is that of the newest file, before any tick
    // could take a new one (the next is not due for 50 minutes).
    clock.advance(Duration::from_ms(HOUR_MS / 6));
    let (edge, base) = start(&data, &backups, clock.clone()).await;
    testkit::until(
        "backup_age_seconds of the newest file after a restart",
        async || backup_age(&base).await == 600.0,
    )
    .await;
    assert_eq!(taken(&backups).len(), 2);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_schedule_no_backup_is_taken_and_the_age_is_minus_one() {
    let t = common::TestEdge::start().await;
    let age = backup_age(&t.base).await;
    assert_eq!(age, -1.0, "no scheduled backup yet");
    assert!(taken(&t.dir.path().join("backups")).is_empty());
    t.stop().await;
}
