//! Monthly partitions of `event_log` and `surplus` (by `received_at`, the
//! hub's clock; see `migrations/hub/V4__…`): made ahead of time, listed,
//! and taken away whole — dropped by retention, detached by the export.
//! The same DDL serves plain PostgreSQL and Citus: a partition created on a
//! distributed partitioned table is distributed with it.

use time::{Date, Month as TimeMonth, OffsetDateTime, Time};
use tokio_postgres::Client;

use super::DbError;

/// The tables partitioned by month.
pub const PARTITIONED: [&str; 2] = ["event_log", "surplus"];

/// Months made ahead of the current one, so that a month never begins
/// without its partition even if housekeeping is late.
pub const MONTHS_AHEAD: u32 = 2;

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u8,
}

impl Month {
    pub fn of(t: OffsetDateTime) -> Month {
        let t = t.to_offset(time::UtcOffset::UTC);
        Month {
            year: t.year(),
            month: u8::from(t.month()),
        }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Midnight UTC on the first day of the month.
    pub fn start(self) -> OffsetDateTime {
        let month = TimeMonth::try_from(self.month).unwrap_or(TimeMonth::January);
        Date::from_calendar_date(self.year, month, 1)
            .unwrap_or(Date::MIN)
            .with_time(Time::MIDNIGHT)
            .assume_utc()
    }

    /// The first instant after the month.
    pub fn end(self) -> OffsetDateTime {
        self.next().start()
    }

    /// `2026-08`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// `<table>_p202608`.
    pub fn partition_of(self, table: &str) -> String {
        format!("{table}_p{:04}{:02}", self.year, self.month)
    }

    /// The month of a partition named by [`Month::partition_of`].
    pub fn from_partition(table: &str, name: &str) -> Option<Month> {
        let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = digits[..4].parse().ok()?;
        let month: u8 = digits[4..].parse().ok()?;
        (1..=12).contains(&month).then_some(Month { year, month })
    }
}

fn is_partitioned(table: &str) -> Result<(), DbError> {
    if PARTITIONED.contains(&table) {
        Ok(())
    } else {
        Err(DbError::Integrity(format!(
            "{table} is not partitioned by month"
        )))
    }
}

/// Creates `table`'s partition for `month` unless it exists.
pub async fn ensure(client: &Client, table: &str, month: Month) -> Result<(), DbError> {
    is_partitioned(table)?;
    let name = month.partition_of(table);
    if exists(client, &name).await? {
        return Ok(());
    }
    // Names and bounds are ours (no user text): formatted, not bound,
    // because DDL takes no parameters.
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table}
         FOR VALUES FROM ('{}') TO ('{}')",
        rfc3339(month.start()),
        rfc3339(month.end())
    );
    client.batch_execute(&ddl).await?;
    tracing::info!(table, month = %month.label(), "partition created");
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} 00:00:00+00",
        t.year(),
        u8::from(t.month()),
        t.day()
    )
}

async fn exists(client: &Client, name: &str) -> Result<bool, DbError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&name])
        .await?
        .is_some())
}

/// The month of `now` and [`MONTHS_AHEAD`] after it, for every partitioned table.
pub async fn ensure_around(client: &Client, now: OffsetDateTime) -> Result<(), DbError> {
    for table in PARTITIONED {
        let mut month = Month::of(now);
        for _ in 0..=MONTHS_AHEAD {
            ensure(client, table, month).await?;
            month = month.next();
        }
    }
    Ok(())
}

/// `table`'s partitions, oldest first.
pub async fn list(client: &Client, table: &str) -> Result<Vec<Month>, DbError> {
    is_partitioned(table)?;
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass",
            &[&table],
        )
        .await?;
    let mut months: Vec<Month> = rows
        .iter()
        .filter_map(|r| Month::from_partition(table, r.get::<_, &str>(0)))
        .collect();
    months.sort_unstable();
    Ok(months)
}

/// Whether `e` is PostgreSQL's "no partition of relation … found for row"
/// (SQLSTATE 23514; under Citus, relayed from a worker's COPY as XX000).
pub fn is_missing_partition(e: &DbError) -> bool {
    match e {
        DbError::Postgres(e) => e
            .as_db_error()
            .is_some_and(|d| d.message().starts_with("no partition of relation")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_name_their_partitions_and_roll_over_the_year() {
        let t = OffsetDateTime::from_unix_timestamp(1_798_761_599).unwrap(); // 2026-12-31T23:59:59Z
        let m = Month::of(t);
        assert_eq!(
            m,
            Month {
                year: 2026,
                month: 12
            }
        );
        assert_eq!(
            m.next(),
            Month {
                year: 2027,
                month: 1
            }
        );
        assert_eq!(m.partition_of("event_log"), "event_log_p202612");
        assert_eq!(m.label(), "2026-12");
        assert_eq!(rfc3339(m.start()), "2026-12-01 00:00:00+00");
        assert_eq!(rfc3339(m.end()), "2027-01-01 00:00:00+00");
        assert_eq!(
            Month::from_partition("event_log", "event_log_p202612"),
            Some(m)
        );
        for other in [
            "event_log_p20261",
            "event_log_p202613",
            "event_log_p2026120",
            "surplus_p202612",
            "event_log_v3",
            "event_log_pabcdef",
        ] {
            assert_eq!(Month::from_partition("event_log", other), None, "{other}");
        }
    }
}
