//! The hub's retention on a real PostgreSQL (and, with
//! `PAHLAWAN_TEST_DB=citus`, on the cluster), driven by a fake clock: months
//! wholly older than `retention_days` are dropped as partitions, the older
//! rows of the month that straddles the cutoff are deleted, delivered
//! kilograms survive as daily totals, offers older than the cutoff go, and
//! the audit log stays whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cloud_hub::db::{apply, partitions, queries, retention};
use common::{cell, delivered_story, log_of, setup};
use sync_protocol::{AuditRecord, EdgeId, Event, Timestamp};
use time::OffsetDateTime;
use time::macros::datetime;

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_unix_ms((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn audit(n: u16) -> Event {
    Event::Audited(AuditRecord {
        actor: format!("admin-{n}"),
        role: "admin".into(),
        action: "recipient.read_contact".into(),
        resource: format!("recipients/{n}"),
        status: 200,
        ip: None,
        user_agent: None,
    })
}

async fn scalar(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn retention_drops_old_months_folds_their_kilograms_and_keeps_the_audit_log() {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (_tdb, mut c, home) = setup(&[&edge], x).await;
    // (received by the hub, surplus, grams): the edge's events happen a
    // minute before the hub receives them.
    let story = [
        (datetime!(2026-07-15 10:00 UTC), 1u8, 1_000u64),
        (datetime!(2026-08-20 10:00 UTC), 2, 2_000),
        (datetime!(2026-09-01 06:00 UTC), 3, 4_000),
        (datetime!(2026-09-10 10:00 UTC), 4, 8_000),
        (datetime!(2026-11-30 10:00 UTC), 5, 16_000),
    ];
    let mut log = log_of(&edge);
    for (received, n, grams) in story {
        log.base =
            ts(received - time::Duration::minutes(1) - time::Duration::seconds(log.seq as i64));
        delivered_story(&mut log, x, n, grams);
        log.push(x, audit(u16::from(n)));
        apply::apply_batch_at(&mut c, &edge, home, &log.batch(), received)
            .await
            .unwrap();
    }
    let before = queries::global_impact(&c).await.unwrap();
    assert_eq!((before.surplus_delivered, before.delivered_kg), (5, 31.0));
    let months = partitions::list(&c, "event_log").await.unwrap();
    for m in ["2026-07", "2026-08", "2026-09", "2026-11"] {
        assert!(
            months.iter().any(|x| x.label() == m),
            "{m} made on demand: {months:?}"
        );
    }

    // 2026-12-01 12:00 with 90 days: the cutoff is 2026-09-02 12:00.
    let now = datetime!(2026-12-01 12:00 UTC);
    assert_eq!(retention::cutoff(now, 90), datetime!(2026-09-02 12:00 UTC));
    let swept = retention::run(&mut c, now, 90).await.unwrap();
    assert_eq!(
        swept.dropped,
        [
            "event_log_p202607",
            "event_log_p202608",
            "surplus_p202607",
            "surplus_p202608"
        ],
        "whole months older than the cutoff"
    );
    // September straddles it: surplus 3's log rows (6) and row (1) go.
    assert_eq!(swept.rows_deleted, 7);
    assert_eq!(swept.offers_deleted, 3, "offers made before the cutoff");

    let left = partitions::list(&c, "surplus").await.unwrap();
    assert!(
        left.iter().all(|m| m.label().as_str() >= "2026-09"),
        "{left:?}"
    );
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM event_log").await,
        12,
        "surplus 4 and 5: 6 rows each"
    );
    assert_eq!(
        scalar(
            &c,
            "SELECT count(*) FROM event_log WHERE received_at < '2026-09-02 12:00Z'"
        )
        .await,
        0
    );
    assert_eq!(scalar(&c, "SELECT count(*) FROM surplus").await, 2);
    assert_eq!(scalar(&c, "SELECT count(*) FROM matching_history").await, 2);
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM audit_log").await,
        5,
        "the audit log is kept whole"
    );
    let after = queries::global_impact(&c).await.unwrap();
    assert_eq!(
        after, before,
        "impact totals survive: folded into impact_daily"
    );
    let days: Vec<(String, i64, i64)> = c
        .query(
            "SELECT day::text, delivered_n, delivered_g FROM impact_daily
             WHERE delivered_n > 0 ORDER BY day",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-07-15".to_string(), 1, 1_000),
            ("2026-08-20".to_string(), 1, 2_000),
            ("2026-09-01".to_string(), 1, 4_000)
        ],
        "by the day delivered"
    );

    // Running again changes nothing: no double folding.
    let again = retention::run(&mut c, now, 90).await.unwrap();
    assert_eq!(again, retention::Swept::default());
    assert_eq!(queries::global_impact(&c).await.unwrap(), before);
    // The region's figures agree with the world's (one region here).
    assert_eq!(queries::region_impact(&c, home).await.unwrap(), before);
}
