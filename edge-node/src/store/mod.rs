//! SQLite: the edge's durable state. One writer thread owns the write
//! connection and group-commits ([`writer`]); readers use read-only
//! connections ([`reader`]); [`load`] rebuilds the engine at start;
//! [`stats`] is the writer's own telemetry. The store knows nothing above
//! it: what a group committed leaves the writer as a value
//! ([`writer::Committed`]) for whoever publishes it.
//!
//! Architecture invariant: only the writer thread holds a connection that
//! can write, and every state change commits its rows and its outbox events
//! in one transaction.

pub mod backup;
pub mod export;
pub mod load;
pub mod reader;
pub mod retention;
pub mod rows;
pub mod stats;
pub mod writer;

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

mod embedded {
    refinery::embed_migrations!("../migrations/edge");
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migrating the edge database: {0}")]
    Migration(#[from] refinery::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "this data directory was written by a development build (schema {0}) that kept contact data in the clear; start from an empty data directory"
    )]
    Legacy(i64),
    #[error("PII keys: {0}")]
    Pii(#[from] crate::pii::PiiError),
}

/// The database file inside a data directory.
pub const DB_FILE: &str = "edge.sqlite3";

/// Opens (creating if needed) the write connection: WAL, `synchronous=FULL`
/// (a 2xx survives a power cut, not only a crash), migrations applied.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536;
         PRAGMA secure_delete = ON;",
    )?;
    refuse_legacy(&conn)?;
    embedded::migrations::runner().run(&mut conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Schema 4 sealed contact data and changed the wire format; a database
/// from before it that holds events cannot be carried over.
fn refuse_legacy(conn: &Connection) -> Result<(), StoreError> {
    let migrated: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'refinery_schema_history'",
        [],
        |r| r.get(0),
    )?;
    if migrated == 0 {
        return Ok(());
    }
    let version: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )?;
    if version == 0 || version >= 4 {
        return Ok(());
    }
    let events: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
    if events > 0 {
        return Err(StoreError::Legacy(version));
    }
    Ok(())
}

/// Opens a read-only connection to an existing database.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -16384;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// SQLite stores integers as i64: cell ids and masses keep their bits.
pub(crate) fn u64_to_sql(v: u64) -> i64 {
    v as i64
}

pub(crate) fn u64_from_sql(v: i64) -> u64 {
    v as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_3_database_with_events_is_refused_an_empty_one_migrates() {
        for (events, refused) in [(0, false), (1, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(DB_FILE);
            {
                let mut conn = Connection::open(&path).expect("open");
                embedded::migrations::runner()
                    .set_target(refinery::Target::Version(3))
                    .run(&mut conn)
                    .expect("migrate to 3");
                for seq in 1..=events {
                    conn.execute(
                        "INSERT INTO outbox (seq, envelope) VALUES (?1, x'01')",
                        [seq],
                    )
                    .expect("insert");
                }
            }
            let result = open_writer(&path);
            assert_eq!(
                matches!(result, Err(StoreError::Legacy(3))),
                refused,
                "{events} events"
            );
            if !refused {
                let conn = result.expect("migrated");
                let cols: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM pragma_table_info('providers')
                         WHERE name LIKE 'contact_%' AND name <> 'contact_sealed'",
                        [],
                        |r| r.get(0),
                    )
                    .expect("columns");
                assert_eq!(cols, 0, "no plaintext contact column remains");
            }
        }
    }

    #[test]
    fn a_new_database_is_wal_full_and_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let conn = open_writer(&path).expect("opens");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(sync, 2, "synchronous=FULL");
        let published: i64 = conn
            .query_row("SELECT published_seq FROM sync_state", [], |r| r.get(0))
            .expect("migrated");
        assert_eq!(published, 0);
        drop(conn);
        // Re-opening applies nothing twice.
        open_writer(&path).expect("reopens");
        let reader = open_reader(&path).expect("reader");
        assert!(
            reader.execute("DELETE FROM outbox", []).is_err(),
            "readers cannot write"
        );
    }

    #[test]
    fn cell_ids_keep_their_high_bit() {
        let v = 0xb000_0000_0000_0000u64;
        assert_eq!(u64_from_sql(u64_to_sql(v)), v);
    }
}
