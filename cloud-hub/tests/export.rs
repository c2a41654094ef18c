//! The cold tier on a real PostgreSQL (and on the cluster with
//! `PAHLAWAN_TEST_DB=citus`): `export` writes the months that ended by
//! `--before` as Parquet, one file per month and region, that the `parquet`
//! crate's reader and DuckDB (from PyPI) read back whole; then detaches the
//! months, their kilograms kept as daily totals. Bad requests change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use cloud_hub::db::export::{self, ExportError};
use cloud_hub::db::{apply, partitions, queries};
use cloud_hub::region::region_of;
use common::{cell, delivered_story, log_of, posted_at, setup, sid};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sync_protocol::{EdgeId, Timestamp};
use time::OffsetDateTime;
use time::macros::datetime;

const SURABAYA: (f64, f64) = (-7.25, 112.75);
const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
const BEFORE: OffsetDateTime = datetime!(2026-09-01 00:00 UTC);

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_unix_ms((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// July and August in Jakarta, August also in Surabaya, November kept.
async fn seeded() -> (testkit::pg::TestDb, tokio_postgres::Client, i64) {
    let edge = EdgeId::new("jkt-1").unwrap();
    let x = cell(-6.2, 106.8);
    let (tdb, mut c, home) = setup(&[&edge], x).await;
    let mut log = log_of(&edge);
    for (received, n) in [
        (datetime!(2026-07-15 10:00 UTC), 1u8),
        (datetime!(2026-08-20 10:00 UTC), 2),
        (datetime!(2026-11-30 10:00 UTC), 4),
    ] {
        log.base =
            ts(received - time::Duration::minutes(1) - time::Duration::seconds(log.seq as i64));
        delivered_story(&mut log, x, n, 1_000 * u64::from(n));
        if n == 2 {
            let (y, p) = posted_at(3, SURABAYA.0, SURABAYA.1);
            log.push(y, p);
        }
        apply::apply_batch_at(&mut c, &edge, home, &log.batch(), received)
            .await
            .unwrap();
    }
    (tdb, c, home)
}

fn file(dir: &Path, table: &str, month: &str, region: i64) -> PathBuf {
    dir.join(table)
        .join(month)
        .join(format!("region-{}.parquet", region as u64))
}

fn batches(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[tokio::test]
async fn old_months_become_parquet_per_month_and_region_and_leave_postgresql() {
    let (_tdb, mut c, home) = seeded().await;
    let far = region_of(cell(SURABAYA.0, SURABAYA.1));
    let impact = queries::global_impact(&c).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = export::export(&mut c, BEFORE, dir.path(), NOW)
        .await
        .unwrap();

    let expected = [
        (file(dir.path(), "event_log", "2026-07", home), 5),
        (file(dir.path(), "event_log", "2026-08", home), 6),
        (file(dir.path(), "surplus", "2026-07", home), 1),
        (file(dir.path(), "surplus", "2026-08", far), 1),
        (file(dir.path(), "surplus", "2026-08", home), 1),
    ];
    let mut got: Vec<(PathBuf, u64)> = out.files.iter().map(|f| (f.path.clone(), f.rows)).collect();
    got.sort();
    let mut want: Vec<(PathBuf, u64)> = expected.to_vec();
    want.sort();
    assert_eq!(got, want, "one file per month and region");
    assert_eq!(
        out.detached,
        [
            "event_log_p202607",
            "event_log_p202608",
            "surplus_p202607",
            "surplus_p202608"
        ]
    );
    let left = partitions::list(&c, "event_log").await.unwrap();
    assert!(
        left.iter().all(|m| m.label().as_str() >= "2026-09"),
        "{left:?}"
    );
    let rows: i64 = c
        .query_one("SELECT count(*) FROM event_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 5, "November's batch stays");
    assert_eq!(
        queries::global_impact(&c).await.unwrap(),
        impact,
        "kilograms of the detached months kept as daily totals"
    );

    // The log, read back with the parquet crate: the edge's seqs, dense,
    // and every envelope decodes to its own seq.
    let mut seqs = Vec::new();
    for (month, m) in [("2026-07", 7), ("2026-08", 8)] {
        let m = partitions::Month {
            year: 2026,
            month: m,
        };
        let (start, end) = (
            m.start().unix_timestamp() * 1_000_000,
            m.end().unix_timestamp() * 1_000_000,
        );
        for b in batches(&file(dir.path(), "event_log", month, home)) {
            let seq = b.column_by_name("seq").unwrap().as_primitive::<Int64Type>();
            let env = b.column_by_name("envelope").unwrap().as_binary::<i32>();
            let received = b
                .column_by_name("received_at")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                let e = sync_protocol::wire::decode_envelope(env.value(i)).unwrap();
                assert_eq!(e.seq as i64, seq.value(i));
                let t = received.value(i);
                assert!((start..end).contains(&t), "received in {month}");
                seqs.push(seq.value(i));
            }
        }
    }
    assert_eq!(seqs, (1..=11).collect::<Vec<i64>>());
    let schema = batches(&file(dir.path(), "surplus", "2026-08", far))[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "geo_region_id",
            "id",
            "edge_id",
            "provider_id",
            "lat",
            "lon",
            "cell",
            "quantity_g",
            "food_type",
            "description",
            "expires_at",
            "posted_at",
            "status",
            "version",
            "claimed_by",
            "delivered_g",
            "updated_at",
            "received_at"
        ]
    );
    let far_rows = batches(&file(dir.path(), "surplus", "2026-08", far));
    let id = far_rows[0].column_by_name("id").unwrap().as_string::<i32>();
    assert_eq!(id.value(0), sid(3).as_uuid().to_string());

    duckdb_reads(dir.path(), home);
}

/// DuckDB, as a user would run it, sums what the files hold.
fn duckdb_reads(dir: &Path, home: i64) {
    let python = duckdb_python();
    let script = format!(
        "import duckdb\n\
         d = {dir:?}\n\
         con = duckdb.connect()\n\
         print(con.execute(f\"SELECT count(*), sum(delivered_g), count(DISTINCT geo_region_id) FROM read_parquet('{{d}}/surplus/*/*.parquet')\").fetchall()[0])\n\
         print(con.execute(f\"SELECT count(*), min(seq), max(seq), min(geo_region_id) FROM read_parquet('{{d}}/event_log/*/*.parquet')\").fetchall()[0])\n",
        dir = dir.display().to_string()
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["(3, 3000, 2)".to_string(), format!("(11, 1, 11, {home})")],
        "surplus 1 and 2 delivered 1 + 2 kg (3 was only posted); the log's seqs 1..=11"
    );
}

/// A Python with DuckDB: `PAHLAWAN_DUCKDB_PYTHON`, or the venv the test
/// command makes under the cache directory.
fn duckdb_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PAHLAWAN_DUCKDB_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    let venv = cache
        .join("pahlawan")
        .join("venv-duckdb")
        .join("bin")
        .join("python");
    assert!(
        venv.exists(),
        "no Python with DuckDB: ./scripts/test makes {} (pip install duckdb), or set PAHLAWAN_DUCKDB_PYTHON",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn a_too_recent_date_or_a_file_in_the_way_changes_nothing() {
    let (_tdb, mut c, home) = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let count = async |c: &tokio_postgres::Client| -> (usize, i64) {
        let months = partitions::list(c, "event_log").await.unwrap().len()
            + partitions::list(c, "surplus").await.unwrap().len();
        let rows: i64 = c
            .query_one(
                "SELECT (SELECT count(*) FROM event_log) + (SELECT count(*) FROM surplus)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (months, rows)
    };
    let before = count(&c).await;

    let recent = NOW - time::Duration::days(10);
    let err = export::export(&mut c, recent, dir.path(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::TooRecent { .. }), "{err}");
    assert!(err.to_string().contains("too recent"), "{err}");

    let in_the_way = file(dir.path(), "event_log", "2026-07", home);
    std::fs::create_dir_all(in_the_way.parent().unwrap()).unwrap();
    std::fs::write(&in_the_way, b"someone else's").unwrap();
    let err = export::export(&mut c, BEFORE, dir.path(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Exists { .. }), "{err}");
    assert_eq!(
        std::fs::read(&in_the_way).unwrap(),
        b"someone else's",
        "never overwritten"
    );
    assert_eq!(count(&c).await, before, "nothing detached, nothing deleted");
}
