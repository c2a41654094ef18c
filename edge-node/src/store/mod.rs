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
pub mod disk;
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
    #[error(
        "the database is at schema {found}, newer than this binary's {known}: it was written by a newer pahlawan; run that version (or restore the backup taken before the upgrade, `{PRE_MIGRATION_PREFIX}{known}-…`)"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("backing the database up before migrating it to schema {to}: {source}")]
    PreMigrationBackup { to: i64, source: rusqlite::Error },
}

impl StoreError {
    /// The disk (or a quota) under the database is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => disk::is_disk_full(e),
            StoreError::PreMigrationBackup { source, .. } => disk::is_disk_full(source),
            _ => false,
        }
    }
}

/// How SQLite uses memory and the disk (`[store]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The writer connection's page cache, KiB.
    pub writer_cache_kib: u32,
    /// Each read connection's page cache, KiB.
    pub reader_cache_kib: u32,
    /// The WAL is truncated back to this after a checkpoint resets it, so
    /// a burst (or a reader that held a snapshot) does not leave a large
    /// file behind on the SD card.
    pub wal_limit_bytes: u64,
    /// A checkpoint runs once the WAL holds this many pages (SQLite's
    /// `wal_autocheckpoint`).
    pub wal_autocheckpoint_pages: u32,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            writer_cache_kib: 32 * 1024,
            reader_cache_kib: 8 * 1024,
            wal_limit_bytes: 64 * 1024 * 1024,
            wal_autocheckpoint_pages: 1_000,
        }
    }
}

/// What a database copied before a migration is called, in the data
/// directory: `edge.sqlite3.pre-v<from>-<unix ms>`.
pub const PRE_MIGRATION_PREFIX: &str = "edge.sqlite3.pre-v";

/// Copies taken before migrations that are kept (the newest); older ones
/// are removed after the next copy succeeds, so upgrades over the years do
/// not fill the card with old databases.
pub const PRE_MIGRATION_KEEP: usize = 2;

/// The database file inside a data directory.
pub const DB_FILE: &str = "edge.sqlite3";

/// Opens (creating if needed) the write connection: WAL, `synchronous=FULL`
/// (a 2xx survives a power cut, not only a crash), migrations applied.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    open_writer_with(path, &Tuning::default())
}

/// [`open_writer`] with these SQLite settings.
pub fn open_writer_with(path: &Path, tuning: &Tuning) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache};
         PRAGMA journal_size_limit = {wal_limit};
         PRAGMA wal_autocheckpoint = {autocheckpoint};
         PRAGMA secure_delete = ON;",
        cache = tuning.writer_cache_kib,
        wal_limit = tuning.wal_limit_bytes,
        autocheckpoint = tuning.wal_autocheckpoint_pages,
    ))?;
    refuse_legacy(&conn)?;
    let (current, latest) = (schema_version(&conn)?, latest_schema());
    if current > latest {
        return Err(StoreError::NewerSchema {
            found: current,
            known: latest,
        });
    }
    if current > 0 && current < latest {
        back_up_before_migrating(&conn, path, current, latest)?;
    }
    embedded::migrations::runner().run(&mut conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Schema 4 sealed contact data and changed the wire format; a database
/// from before it that holds events cannot be carried over.
fn refuse_legacy(conn: &Connection) -> Result<(), StoreError> {
    let version = schema_version(conn)?;
    if version == 0 || version >= 4 {
        return Ok(());
    }
    let events: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
    if events > 0 {
        return Err(StoreError::Legacy(version));
    }
    Ok(())
}

/// The schema version a database is at (0: never migrated).
fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    let migrated: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'refinery_schema_history'",
        [],
        |r| r.get(0),
    )?;
    if migrated == 0 {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )?)
}

/// The newest schema this binary carries.
pub fn latest_schema() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// A consistent copy of the database (`VACUUM INTO`, written beside it)
/// before a migration touches it: an upgrade that goes wrong can be
/// undone by putting the copy back and running the older binary.
fn back_up_before_migrating(
    conn: &Connection,
    path: &Path,
    from: i64,
    to: i64,
) -> Result<(), StoreError> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let copy = path.with_file_name(format!("{PRE_MIGRATION_PREFIX}{from}-{ms}"));
    if let Err(source) = conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()]) {
        // A copy cut short (a full disk) is no backup: do not leave it to
        // pile up with every restart.
        let _ = std::fs::remove_file(&copy);
        return Err(StoreError::PreMigrationBackup { to, source });
    }
    tracing::info!(from, to, backup = %copy.display(), "database backed up before its migration");
    if let Some(dir) = path.parent() {
        prune_pre_migration_copies(dir, PRE_MIGRATION_KEEP);
    }
    Ok(())
}

/// Removes all but the `keep` newest pre-migration copies in `dir` (newest
/// by the time in their name); a copy that cannot be removed is logged and
/// left.
fn prune_pre_migration_copies(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut copies: Vec<(u128, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let rest = name.strip_prefix(PRE_MIGRATION_PREFIX)?;
            let (_, ms) = rest.split_once('-')?;
            Some((ms.parse().ok()?, p.clone()))
        })
        .collect();
    copies.sort();
    let old = copies.len().saturating_sub(keep);
    for (_, p) in copies.into_iter().take(old) {
        match std::fs::remove_file(&p) {
            Ok(()) => tracing::info!(removed = %p.display(), "an old pre-migration copy removed"),
            Err(e) => {
                tracing::warn!(error = %e, copy = %p.display(), "cannot remove an old pre-migration copy")
            }
        }
    }
}

/// Opens a read-only connection to an existing database.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    open_reader_with(path, Tuning::default().reader_cache_kib)
}

/// [`open_reader`] with a page cache of `cache_kib`.
pub fn open_reader_with(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON; PRAGMA cache_size = -{cache_kib};"
    ))?;
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

    fn copies_in(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PRE_MIGRATION_PREFIX))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_the_newest_pre_migration_copies_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (from, ms) in [(4, 1_000), (5, 3_000), (6, 2_000), (7, 4_000)] {
            std::fs::write(
                dir.path()
                    .join(format!("{PRE_MIGRATION_PREFIX}{from}-{ms}")),
                b"db",
            )
            .expect("a copy");
        }
        std::fs::write(dir.path().join(DB_FILE), b"live").expect("the database");
        std::fs::write(dir.path().join(format!("{PRE_MIGRATION_PREFIX}x")), b"?").expect("odd");
        prune_pre_migration_copies(dir.path(), 2);
        let left: Vec<String> = copies_in(dir.path())
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(
            left,
            [
                format!("{PRE_MIGRATION_PREFIX}5-3000"),
                format!("{PRE_MIGRATION_PREFIX}7-4000"),
                format!("{PRE_MIGRATION_PREFIX}x"),
            ],
            "the two newest by time, and what is not a copy, are left"
        );
        assert!(dir.path().join(DB_FILE).exists());
    }

    #[test]
    fn a_database_holding_data_is_carried_across_every_migration_backed_up_first() {
        let latest = latest_schema();
        assert!(latest >= 6, "{latest}");
        // Schema 4 is the oldest a database with events is carried from.
        for from in 4..latest {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(DB_FILE);
            {
                let mut conn = Connection::open(&path).expect("open");
                embedded::migrations::runner()
                    .set_target(refinery::Target::Version(from as _))
                    .run(&mut conn)
                    .expect("migrate to the old schema");
                // Rows in every table the later migrations alter or read:
                // a provider, a recipient, a surplus claimed by it, its
                // events, an audit record (schema 4's columns).
                conn.execute_batch(
                    "INSERT INTO outbox (seq, envelope) VALUES (1, x'0102'), (2, x'0304');
                     INSERT INTO audit_log (at, actor, role, action, resource, status)
                     VALUES (1, 'ops', 'admin', 'provider.register', 'provider/1', 201);
                     INSERT INTO providers (id, name, lat, lon, created_at, contact_sealed)
                     VALUES (x'01', 'Toko Roti', -6.2, 106.8, 1, x'aa');
                     INSERT INTO recipients (id, name, lat, lon, cell, capacity_g_per_day,
                         food_types, is_fallback, created_at, contact_sealed)
                     VALUES (x'02', 'Panti', -6.21, 106.82, 7, 5000000, 3, 0, 1, x'bb');
                     INSERT INTO surplus (id, provider_id, lat, lon, cell, quantity_g, food_type,
                         expires_at, description, posted_at, status, version, failed_offers,
                         dlq_attempts, fallback_tried, claimed_by, claimed_at, claimed_day,
                         updated_at)
                     VALUES (x'03', x'01', -6.2, 106.8, 7, 2500, 'bakery', 99, 'roti tawar', 1,
                         'claimed', 3, 0, 0, 0, x'02', 2, 0, 2);",
                )
                .expect("data");
            }
            let conn = open_writer(&path).expect("migrates");
            assert_eq!(
                schema_version(&conn).expect("version"),
                latest,
                "from {from}"
            );
            let kept: (i64, Vec<u8>) = conn
                .query_row(
                    "SELECT count(*), (SELECT envelope FROM outbox WHERE seq = 2) FROM outbox",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("outbox");
            assert_eq!(kept, (2, vec![3, 4]), "from {from}");
            let audits: i64 = conn
                .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
                .expect("audit");
            assert_eq!(audits, 1, "from {from}");
            let rows: (String, Vec<u8>, String, i64, Vec<u8>, Vec<u8>) = conn
                .query_row(
                    "SELECT p.name, p.contact_sealed, s.description, s.quantity_g, s.claimed_by,
                            r.contact_sealed
                     FROM surplus s JOIN providers p ON p.id = s.provider_id
                     JOIN recipients r ON r.id = s.claimed_by",
                    [],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )
                .expect("the provider, recipient and surplus carried over");
            assert_eq!(
                rows,
                (
                    "Toko Roti".to_string(),
                    vec![0xaa],
                    "roti tawar".to_string(),
                    2500,
                    vec![2],
                    vec![0xbb]
                ),
                "from {from}"
            );
            drop(conn);
            // The copy taken first is the old database, whole.
            let copies = copies_in(dir.path());
            assert_eq!(copies.len(), 1, "from {from}: {copies:?}");
            let name = copies[0]
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            assert!(
                name.starts_with(&format!("{PRE_MIGRATION_PREFIX}{from}-")),
                "{name}"
            );
            let old = Connection::open(&copies[0]).expect("open the copy");
            assert_eq!(schema_version(&old).expect("version"), from);
            let events: i64 = old
                .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
                .expect("outbox");
            assert_eq!(events, 2);
            // Opened again: nothing to migrate, nothing copied.
            drop(open_writer(&path).expect("opens"));
            assert_eq!(copies_in(dir.path()).len(), 1);
        }
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let latest = latest_schema();
        drop(open_writer(&path).expect("a current database"));
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
                 VALUES (?1, 'from_the_future', '2027-01-01T00:00:00Z', '0')",
                [latest + 1],
            )
            .expect("a newer binary's migration");
        }
        let err = open_writer(&path).expect_err("refused");
        assert!(
            matches!(err, StoreError::NewerSchema { found, known } if found == latest + 1 && known == latest),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("newer than this binary"), "{text}");
        assert!(copies_in(dir.path()).is_empty(), "nothing copied");
        let conn = Connection::open(&path).expect("open");
        assert_eq!(
            schema_version(&conn).expect("version"),
            latest + 1,
            "left as it was"
        );
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
    fn the_wal_is_truncated_back_to_its_limit_after_a_reader_let_it_grow() {
        let wal_size = |dir: &Path| {
            std::fs::metadata(dir.join(format!("{DB_FILE}-wal")))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        // With the limit (1 MiB) and without it (-1: SQLite keeps the file).
        for (limit, bounded) in [(1024 * 1024, true), (u64::MAX, false)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(DB_FILE);
            let tuning = Tuning {
                wal_limit_bytes: limit,
                wal_autocheckpoint_pages: 100,
                ..Tuning::default()
            };
            let conn = open_writer_with(&path, &tuning).expect("opens");
            if !bounded {
                conn.execute_batch("PRAGMA journal_size_limit = -1")
                    .expect("unbounded");
            }
            conn.execute_batch("CREATE TABLE junk (b BLOB)")
                .expect("table");
            let write = |n: usize| {
                for _ in 0..n {
                    conn.execute("INSERT INTO junk VALUES (zeroblob(64 * 1024))", [])
                        .expect("insert");
                }
            };
            // A reader holds a snapshot: no checkpoint can reset the WAL,
            // which grows past 6 MiB.
            let reader = open_reader(&path).expect("reader");
            reader.execute_batch("BEGIN").expect("begin");
            let _: i64 = reader
                .query_row("SELECT count(*) FROM junk", [], |r| r.get(0))
                .expect("snapshot");
            write(100);
            assert!(wal_size(dir.path()) > 6 * 1024 * 1024, "the WAL grew");
            reader.execute_batch("COMMIT").expect("release");
            // Once the reader lets go, checkpoints reset the WAL and the
            // limit truncates the file.
            write(50);
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .expect("checkpoint");
            write(1);
            let after = wal_size(dir.path());
            if bounded {
                assert!(after <= limit, "the WAL is back under its limit: {after}");
            } else {
                assert!(after > 6 * 1024 * 1024, "without a limit it stays: {after}");
            }
        }
    }

    #[test]
    fn cell_ids_keep_their_high_bit() {
        let v = 0xb000_0000_0000_0000u64;
        assert_eq!(u64_from_sql(u64_to_sql(v)), v);
    }
}
