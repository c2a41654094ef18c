//! Backups of the edge's SQLite database, taken while it runs and restored
//! while it does not.
//!
//! **Taking one** ([`take`]): `VACUUM INTO` on a read-only connection — one
//! read transaction, so in WAL mode the snapshot is consistent and the
//! writer never waits — then `PRAGMA integrity_check` on the snapshot, then
//! the file: [`MAGIC`], the manifest's length (u32, big-endian), the
//! [`Manifest`] as JSON, and the database gzip-compressed. It is written
//! to `FILE.partial`, synced and renamed over `FILE`: a backup killed half
//! way leaves any earlier `FILE` as it was.
//!
//! **Restoring one** ([`restore`]): into `DB_FILE.restoring` next to the
//! database, checked (length, SHA-256, `integrity_check`, the manifest's
//! seq), the outbox numbering moved past what the hub already holds, synced,
//! and only then swapped in by rename; the database it replaces is kept as
//! `DB_FILE.before-restore` (with its WAL). The caller holds the data
//! directory's lock.
//!
//! **Outbox numbering after a restore.** The hub holds `(edge, seq)` up to
//! its high-water mark and refuses a batch that does not start right after
//! it; a restored edge whose outbox ends before that mark would be refused
//! (`EdgeBehindHub`), and new events reusing those numbers would be taken
//! for replays. So the hub's mark wins: the restore sets the published seq
//! to `max(backup's published seq, hub's mark)`, and since the next seq is
//! `max(last outbox seq, published seq) + 1` ([`super::load`]), the restored
//! edge's next event follows the hub's mark exactly. The events between the
//! backup and the mark stay at the hub only (the edge lost them with its disk).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DB_FILE;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"PAHLBAK1";
/// The manifest's format version.
pub const FORMAT: u32 = 1;
/// The largest manifest read back (it is a few hundred bytes).
const MAX_MANIFEST_BYTES: u32 = 64 * 1024;
/// Copy buffer for compressing and expanding.
const CHUNK_BYTES: usize = 256 * 1024;

/// What a backup holds, in its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub edge_id: String,
    /// When the snapshot was taken (UTC ms).
    pub taken_at_ms: i64,
    /// The last outbox seq the snapshot holds (retention may have deleted
    /// acknowledged rows: then the published seq).
    pub last_seq: u64,
    /// The hub's acknowledged mark as the snapshot recorded it.
    pub published_seq: u64,
    /// The database's size and SHA-256 (hex) before compression.
    pub db_bytes: u64,
    pub db_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not an edge data directory (no {DB_FILE})")]
    NotADataDir(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the snapshot failed its integrity check: {0}")]
    Integrity(String),
    #[error("{0} is not a pahlawan backup: {1}")]
    NotABackup(String, String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Called as bytes are written or read: (done, total).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Takes a backup of the database in `data_dir` into `to` (see the module
/// doc); returns its manifest.
pub fn take(
    data_dir: &Path,
    to: &Path,
    edge_id: &str,
    now_ms: i64,
    progress: Progress<'_>,
) -> Result<Manifest, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NotADataDir(data_dir.display().to_string()));
    }
    let snapshot = sibling(to, "snapshot");
    let partial = sibling(to, "partial");
    remove_if_there(&snapshot)?;
    let result = snapshot_and_write(&db, &snapshot, &partial, to, edge_id, now_ms, progress);
    // The uncompressed snapshot is scratch either way; a failed write leaves
    // no partial file behind (a killed one is replaced by the next run).
    let _ = std::fs::remove_file(&snapshot);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn snapshot_and_write(
    db: &Path,
    snapshot: &Path,
    partial: &Path,
    to: &Path,
    edge_id: &str,
    now_ms: i64,
    progress: Progress<'_>,
) -> Result<Manifest, BackupError> {
    {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])?;
    }
    let (last_seq, published_seq) = check(snapshot)?;
    let (db_bytes, db_sha256) = digest(snapshot)?;
    let manifest = Manifest {
        format: FORMAT,
        edge_id: edge_id.to_string(),
        taken_at_ms: now_ms,
        last_seq,
        published_seq,
        db_bytes,
        db_sha256,
    };
    write_file(snapshot, partial, &manifest, progress)?;
    std::fs::rename(partial, to).map_err(io(to))?;
    sync_dir(to)?;
    Ok(manifest)
}

/// `integrity_check` passes; the outbox's last seq and the published seq.
fn check(db: &Path) -> Result<(u64, u64), BackupError> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if verdict != ["ok"] {
        return Err(BackupError::Integrity(verdict.join("; ")));
    }
    let (last, published): (i64, i64) = conn.query_row(
        "SELECT COALESCE((SELECT MAX(seq) FROM outbox), 0),
                COALESCE((SELECT published_seq FROM sync_state WHERE id = 1), 0)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (last, published) = (last.max(0) as u64, published.max(0) as u64);
    Ok((last.max(published), published))
}

fn digest(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = BufReader::new(File::open(path).map_err(io(path))?);
    let mut hash = Sha256::new();
    let mut buf = vec![0; CHUNK_BYTES];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(io(path))?;
        if got == 0 {
            break;
        }
        hash.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex(&hash.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(
    snapshot: &Path,
    partial: &Path,
    manifest: &Manifest,
    progress: Progress<'_>,
) -> Result<(), BackupError> {
    let header = serde_json::to_vec(manifest).map_err(|e| BackupError::Damaged(e.to_string()))?;
    let file = File::create(partial).map_err(io(partial))?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC).map_err(io(partial))?;
    out.write_all(&(header.len() as u32).to_be_bytes())
        .map_err(io(partial))?;
    out.write_all(&header).map_err(io(partial))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut input = BufReader::new(File::open(snapshot).map_err(io(snapshot))?);
    let mut buf = vec![0; CHUNK_BYTES];
    let mut done = 0u64;
    loop {
        let got = input.read(&mut buf).map_err(io(snapshot))?;
        if got == 0 {
            break;
        }
        gz.write_all(&buf[..got]).map_err(io(partial))?;
        done += got as u64;
        progress(done, manifest.db_bytes);
    }
    let out = gz.finish().map_err(io(partial))?;
    let file = out.into_inner().map_err(|e| io(partial)(e.into_error()))?;
    file.sync_all().map_err(io(partial))
}

/// The manifest of a backup file, and the reader positioned at the
/// compressed database.
pub fn open(path: &Path) -> Result<(Manifest, BufReader<File>), BackupError> {
    let not = |why: &str| BackupError::NotABackup(path.display().to_string(), why.to_string());
    let mut r = BufReader::new(File::open(path).map_err(io(path))?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| not("too short"))?;
    if &magic != MAGIC {
        return Err(not("wrong magic bytes"));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|_| not("no manifest"))?;
    let len = u32::from_be_bytes(len);
    if len > MAX_MANIFEST_BYTES {
        return Err(not("manifest too large"));
    }
    let mut header = vec![0; len as usize];
    r.read_exact(&mut header)
        .map_err(|_| not("manifest cut short"))?;
    let manifest: Manifest =
        serde_json::from_slice(&header).map_err(|e| not(&format!("manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not(&format!(
            "format {} (this build reads {FORMAT})",
            manifest.format
        )));
    }
    Ok((manifest, r))
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub manifest: Manifest,
    /// The published seq the restored database starts from: its next event
    /// is this + 1 (or the backup's last seq + 1, whichever is higher).
    pub published_seq: u64,
    /// Where the replaced database was kept, if there was one.
    pub kept: Option<PathBuf>,
}

/// Restores `from` into `data_dir` (see the module doc). `hub_high_water`:
/// the hub's mark for this edge, when it syncs with one. The caller holds
/// the data directory's lock, so no edge runs on it.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    hub_high_water: Option<u64>,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
    let (manifest, compressed) = open(from)?;
    let db = data_dir.join(DB_FILE);
    let staged = data_dir.join(format!("{DB_FILE}.restoring"));
    remove_if_there(&staged)?;
    let staged_result = stage(&manifest, compressed, &staged, hub_high_water, progress);
    let published_seq = match staged_result {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    let kept = set_aside(&db)?;
    std::fs::rename(&staged, &db).map_err(io(&db))?;
    sync_dir(&db)?;
    Ok(Restored {
        manifest,
        published_seq,
        kept,
    })
}

/// Expands and checks the backup into `staged`, moves its numbering past
/// the hub's mark, syncs it; returns the published seq it starts from.
fn stage(
    manifest: &Manifest,
    compressed: BufReader<File>,
    staged: &Path,
    hub_high_water: Option<u64>,
    progress: Progress<'_>,
) -> Result<u64, BackupError> {
    let mut gz = flate2::read::GzDecoder::new(compressed);
    let mut out = BufWriter::new(File::create(staged).map_err(io(staged))?);
    let mut hash = Sha256::new();
    let mut buf = vec![0; CHUNK_BYTES];
    let mut done = 0u64;
    loop {
        let got = gz
            .read(&mut buf)
            .map_err(|e| BackupError::Damaged(format!("decompressing: {e}")))?;
        if got == 0 {
            break;
        }
        hash.update(&buf[..got]);
        out.write_all(&buf[..got]).map_err(io(staged))?;
        done += got as u64;
        if done > manifest.db_bytes {
            return Err(BackupError::Damaged("longer than its manifest says".into()));
        }
        progress(done, manifest.db_bytes);
    }
    out.flush().map_err(io(staged))?;
    drop(out);
    if done != manifest.db_bytes || hex(&hash.finalize()) != manifest.db_sha256 {
        return Err(BackupError::Damaged(
            "the database does not match its manifest (length or SHA-256)".into(),
        ));
    }
    let (last_seq, published) = check(staged)?;
    if last_seq != manifest.last_seq {
        return Err(BackupError::Damaged(format!(
            "the outbox ends at {last_seq}, the manifest says {}",
            manifest.last_seq
        )));
    }
    let start = published.max(hub_high_water.unwrap_or(0));
    let conn = Connection::open(staged)?;
    conn.execute(
        "UPDATE sync_state SET published_seq = ?1 WHERE id = 1",
        [start as i64],
    )?;
    drop(conn);
    File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(io(staged))?;
    Ok(start)
}

/// Moves the database being replaced, and its WAL and shared memory, to
/// `<name>.before-restore…` (a WAL left behind would be replayed into the
/// restored file).
fn set_aside(db: &Path) -> Result<Option<PathBuf>, BackupError> {
    let kept = db.with_file_name(format!("{DB_FILE}.before-restore"));
    let mut moved = None;
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", kept.display()));
            std::fs::rename(&from, &to).map_err(io(&from))?;
            if suffix.is_empty() {
                moved = Some(to);
            }
        }
    }
    Ok(moved)
}

/// `FILE.<what>` beside `to`.
fn sibling(to: &Path, what: &str) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}"));
    to.with_file_name(name)
}

fn remove_if_there(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Backups in `dir` named by [`scheduled_name`], newest first, with their
/// manifests' times.
pub fn scheduled(dir: &Path) -> Vec<(PathBuf, i64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, i64)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX) && n.ends_with(SCHEDULED_SUFFIX))
        })
        .filter_map(|p| open(&p).ok().map(|(m, _)| (p, m.taken_at_ms)))
        .collect();
    found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    found
}

const SCHEDULED_PREFIX: &str = "edge-";
const SCHEDULED_SUFFIX: &str = ".pahlbak";

/// The file name of a scheduled backup taken at `now_ms`.
pub fn scheduled_name(now_ms: i64) -> String {
    format!("{SCHEDULED_PREFIX}{now_ms:013}{SCHEDULED_SUFFIX}")
}

/// Deletes all but the newest `keep` scheduled backups in `dir`; returns
/// how many went.
pub fn prune(dir: &Path, keep: usize) -> usize {
    scheduled(dir)
        .into_iter()
        .skip(keep)
        .filter(|(p, _)| std::fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(_: u64, _: u64) {}

    #[test]
    fn a_backup_restores_checked_and_resumes_after_the_hub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let conn = super::super::open_writer(&data.join(DB_FILE)).expect("opens");
        conn.execute("UPDATE sync_state SET published_seq = 2", [])
            .expect("set");
        for seq in 1..=5 {
            conn.execute(
                "INSERT INTO outbox (seq, envelope) VALUES (?1, x'00')",
                [seq],
            )
            .expect("insert");
        }
        let file = dir.path().join("b.pahlbak");
        let m = take(&data, &file, "edge-1", 1_000, &quiet).expect("backup");
        assert_eq!(
            (m.last_seq, m.published_seq, m.edge_id.as_str()),
            (5, 2, "edge-1")
        );
        // Written after the backup: gone after the restore.
        conn.execute("INSERT INTO outbox (seq, envelope) VALUES (6, x'00')", [])
            .expect("insert");
        drop(conn);
        let r = restore(&file, &data, Some(9), &quiet).expect("restore");
        assert_eq!(r.published_seq, 9, "the hub's mark wins");
        assert!(r.kept.is_some_and(|k| k.exists()));
        let conn = super::super::open_writer(&data.join(DB_FILE)).expect("reopens");
        let (max, published): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT MAX(seq) FROM outbox), (SELECT published_seq FROM sync_state)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read");
        assert_eq!((max, published), (5, 9));
        let loaded = super::super::load::load(
            &conn,
            edge_core::engine::EngineConfig::default(),
            sync_protocol::Timestamp::from_unix_ms(0),
        )
        .expect("loads");
        assert_eq!(
            loaded.next_seq, 10,
            "numbering resumes right after the hub's mark"
        );
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        drop(super::super::open_writer(&data.join(DB_FILE)).expect("opens"));
        let file = dir.path().join("b.pahlbak");
        take(&data, &file, "e", 1, &quiet).expect("backup");
        let good = std::fs::read(&file).expect("read");
        let before = std::fs::read(data.join(DB_FILE)).expect("read db");
        let mut flipped = good.clone();
        let last = flipped.len() - 20;
        flipped[last] ^= 0xff;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not a backup", b"hello world, no magic here".to_vec()),
            ("cut short", good[..good.len() / 2].to_vec()),
            ("a flipped byte", flipped),
        ];
        for (what, bytes) in cases {
            let bad = dir.path().join("bad.pahlbak");
            std::fs::write(&bad, bytes).expect("write");
            let e = restore(&bad, &data, None, &quiet);
            assert!(
                matches!(
                    e,
                    Err(BackupError::NotABackup(..) | BackupError::Damaged(_))
                ),
                "{what}: {e:?}"
            );
            assert_eq!(
                std::fs::read(data.join(DB_FILE)).expect("db"),
                before,
                "{what}"
            );
            assert!(
                !data.join(format!("{DB_FILE}.restoring")).exists(),
                "{what}"
            );
        }
        let e = take(dir.path(), &file, "e", 2, &quiet);
        assert!(matches!(e, Err(BackupError::NotADataDir(_))), "{e:?}");
        assert_eq!(std::fs::read(&file).expect("still there"), good);
    }

    #[test]
    fn scheduled_backups_are_pruned_to_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        drop(super::super::open_writer(&data.join(DB_FILE)).expect("opens"));
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).expect("mkdir");
        for t in [10, 30, 20] {
            take(&data, &backups.join(scheduled_name(t)), "e", t, &quiet).expect("backup");
        }
        assert_eq!(prune(&backups, 2), 1);
        let left: Vec<i64> = scheduled(&backups).into_iter().map(|(_, t)| t).collect();
        assert_eq!(left, [30, 20]);
    }
}
