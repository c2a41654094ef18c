//! A fresh database per test. With `DATABASE_URL` set (the README's test
//! command starts a throwaway cluster and sets it), a new database is created
//! in that cluster. Without it, this process starts its own throwaway
//! cluster from Debian's PostgreSQL binaries (as the `postgres` user when run
//! as root, since `initdb` refuses root) and removes it when the last
//! database handle is dropped. [`pg_dump`] dumps a test database, for tests
//! that look for what must not be stored. The admin connection is plain
//! (loopback clusters); a `DATABASE_URL` demanding TLS (`sslmode=require`)
//! is refused with a clear message. With `PAHLAWAN_TEST_DB=citus` the same
//! call gives a database on a Citus cluster instead ([`crate::citus`]), so
//! the hub's tests run unchanged on both.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// A database that exists for the life of the handle's cluster.
pub struct TestDb {
    /// A libpq key-value connection string to the fresh database.
    pub url: String,
    /// The fresh database's name.
    pub name: String,
    /// A connection string to the database the fresh one was created from
    /// (`DATABASE_URL`'s, or the throwaway cluster's `postgres`): for tests
    /// that must act on the fresh database from outside it.
    pub admin_url: String,
    /// The same database on each Citus worker, where the shards' rows live
    /// (empty on plain PostgreSQL).
    pub worker_urls: Vec<String>,
    /// What keeps the database's server(s) alive, or removes the database
    /// when the handle drops: a throwaway cluster, a Citus database.
    pub(crate) _keep: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// One throwaway PostgreSQL server (a cluster in PostgreSQL's sense), run as
/// the `postgres` user when this process is root; stopped and removed when
/// dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    options: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl().args(["-m", "immediate", "stop"]).output();
    }
}

impl Cluster {
    /// Starts a server with extra `-c name=value` settings.
    pub fn start(settings: &[String]) -> Result<Cluster, String> {
        start_cluster(settings)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (owned by `postgres` when run as root).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A key-value connection string to `dbname` as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    fn pg_ctl(&self) -> Command {
        let mut c = pg_command(&self.bin.join("pg_ctl"), self.as_postgres);
        c.arg("-D").arg(self.data_dir());
        c
    }

    /// SIGKILLs the postmaster and every process it started, as a crashed
    /// machine would; returns once none of them is left.
    pub fn kill9(&self) -> Result<(), String> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .map_err(|e| format!("postmaster.pid: {e}"))?;
        let pid: i32 = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("postmaster.pid has no pid")?;
        // Stop the postmaster first, so it cannot react to its children's
        // deaths, then kill them and it.
        let kill = |sig: &str, pid: i32| {
            let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
        };
        kill("-STOP", pid);
        let children = children_of(pid);
        for c in &children {
            kill("-KILL", *c);
        }
        kill("-KILL", pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::iter::once(&pid).chain(&children).any(|p| running(*p)) {
            if std::time::Instant::now() > deadline {
                return Err(format!("postmaster {pid} or its children outlived SIGKILL"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Starts the server again on the same port (after [`Cluster::kill9`]:
    /// with crash recovery).
    pub fn restart(&self) -> Result<(), String> {
        let out = self
            .pg_ctl()
            .args(["-o", &self.options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Cluster {
    /// A `pg_basebackup` of this running server (WAL streamed alongside, so
    /// the copy is consistent on its own) restored as a new cluster and
    /// started on a free port: how the README says to back up a hub.
    pub fn base_backup(&self) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("pahlawan-pg-restored-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            if !ok.is_ok_and(|s| s.success()) {
                return Err("chown of the restored cluster's directory failed".into());
            }
        }
        let data = dir.path().join("data");
        let out = pg_command(&self.bin.join("pg_basebackup"), self.as_postgres)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&data)
            .args(["-X", "stream", "-c", "fast", "--no-sync"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            dir.path().display()
        );
        let restored = Cluster {
            dir,
            bin: self.bin.clone(),
            port,
            as_postgres: self.as_postgres,
            options,
        };
        restored.restart()?;
        Ok(restored)
    }
}

/// `/proc/<pid>/stat`: (state, parent pid).
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive and not a zombie.
fn running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

fn pg_command(program: &std::path::Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The version the project targets: preferred whenever it is installed.
const PREFERRED_VERSION: &str = "15";

/// The server binaries: PostgreSQL 15 when installed, otherwise the highest
/// installed version (`/usr/lib/postgresql/<version>/bin` with an `initdb`).
fn find_bin() -> Option<PathBuf> {
    find_bin_with("initdb")
}

/// The `/usr/lib/postgresql/<version>/bin` holding `program`: version 15
/// when it has one, otherwise the highest version that does.
fn find_bin_with(program: &str) -> Option<PathBuf> {
    let root = std::path::Path::new("/usr/lib/postgresql");
    let installed: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|v| root.join(v).join("bin").join(program).exists())
        .collect();
    let version = choose_version(&installed)?;
    Some(root.join(version).join("bin"))
}

/// `pg_dump`: from the PostgreSQL binaries as [`find_bin`] chooses them
/// (15 preferred; Debian's `/usr/lib/postgresql/15/bin`), else the first on
/// `PATH`.
fn find_pg_dump() -> Option<PathBuf> {
    if let Some(bin) = find_bin_with("pg_dump") {
        return Some(bin.join("pg_dump"));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("pg_dump"))
        .find(|p| p.is_file())
}

/// Why [`pg_dump`] produced no dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "pg_dump not found (looked in /usr/lib/postgresql/*/bin, 15 preferred, and on PATH): install postgresql-client-15"
    )]
    NotFound,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// A plain-SQL dump (schema and data) of `db` (of each node's copy on
/// Citus), as bytes: everything the
/// database stores, for tests asserting what it must not contain.
///
/// `bytea` values are dumped in PostgreSQL's `escape` format, not `hex`:
/// printable ASCII inside binary columns (a plaintext phone number in an
/// envelope, say) appears as itself, so a plain byte search finds it.
pub async fn pg_dump(db: &TestDb) -> Result<Vec<u8>, DumpError> {
    let program = find_pg_dump().ok_or(DumpError::NotFound)?;
    // On Citus the coordinator holds the schema and the workers the rows:
    // every node's database is dumped.
    // Citus hides shard tables from applications unless told otherwise.
    let options = if db.worker_urls.is_empty() {
        "-c bytea_output=escape"
    } else {
        "-c bytea_output=escape -c citus.show_shards_for_app_name_prefixes=* -c citus.enable_manual_changes_to_shards=on"
    };
    let mut dump = Vec::new();
    for url in std::iter::once(&db.url).chain(&db.worker_urls) {
        dump.extend(dump_one(&program, url, options).await?);
    }
    Ok(dump)
}

async fn dump_one(
    program: &std::path::Path,
    url: &str,
    options: &str,
) -> Result<Vec<u8>, DumpError> {
    let out = tokio::process::Command::new(program)
        .arg("--dbname")
        .arg(url)
        .args(["--no-owner", "--no-privileges", "--no-password"])
        .env("PGOPTIONS", options)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| DumpError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(DumpError::Failed {
            program: program.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}

/// Which of the installed version directories to use: [`PREFERRED_VERSION`]
/// if present, else the highest by numeric order (`"15" > "9.6"`, `"16" >
/// "15"`). Names that are not dotted numbers are never chosen.
fn choose_version(installed: &[String]) -> Option<&str> {
    if installed.iter().any(|v| v == PREFERRED_VERSION) {
        return Some(PREFERRED_VERSION);
    }
    installed
        .iter()
        .filter_map(|v| Some((numeric_version(v)?, v.as_str())))
        .max()
        .map(|(_, v)| v)
}

/// `"9.6"` → `[9, 6]`; `None` for anything but dot-separated numbers.
fn numeric_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn start_cluster(settings: &[String]) -> Result<Cluster, String> {
    let bin = find_bin().ok_or("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; install postgresql-15 or set DATABASE_URL")?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("pahlawan-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    if as_postgres {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            return Err("chown of the cluster directory to postgres failed".into());
        }
    }
    let out = pg_command(&bin.join("initdb"), as_postgres)
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
        dir.path().display()
    );
    for s in settings {
        options.push_str(" -c ");
        options.push_str(s);
    }
    let cluster = Cluster {
        dir,
        bin,
        port,
        as_postgres,
        options,
    };
    cluster.restart()?;
    Ok(cluster)
}

static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

fn shared_cluster() -> Result<Arc<Cluster>, String> {
    let mut slot = CLUSTER.lock().map_err(|_| "poisoned".to_string())?;
    if let Some(c) = slot.upgrade() {
        return Ok(c);
    }
    let c = Arc::new(start_cluster(&[])?);
    *slot = Arc::downgrade(&c);
    Ok(c)
}

/// The server's connection string (key-value form) with `dbname` replaced.
fn with_dbname(base: &str, dbname: &str) -> Result<String, String> {
    let cfg: tokio_postgres::Config = base.parse().map_err(|e| format!("bad DATABASE_URL: {e}"))?;
    let mut parts = Vec::new();
    for h in cfg.get_hosts() {
        match h {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
            tokio_postgres::config::Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(p) = cfg.get_ports().first() {
        parts.push(format!("port={p}"));
    }
    if let Some(u) = cfg.get_user() {
        parts.push(format!("user={u}"));
    }
    if let Some(pw) = cfg.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(pw)));
    }
    parts.push(format!("dbname={dbname}"));
    Ok(parts.join(" "))
}

/// A plain connection to a test server (loopback: no TLS), its connection
/// task spawned.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A new, empty database for one test: on plain PostgreSQL, or on a Citus
/// cluster when `PAHLAWAN_TEST_DB=citus` (see [`crate::citus`]).
pub async fn fresh_database() -> TestDb {
    if crate::citus::wanted() {
        return crate::citus::fresh_database().await;
    }
    let (admin_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let c = tokio::task::spawn_blocking(shared_cluster)
                .await
                .expect("cluster task")
                .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
            (
                format!(
                    "host=127.0.0.1 port={} user=postgres dbname=postgres",
                    c.port
                ),
                Some(c),
            )
        }
    };
    let admin = connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    TestDb {
        url: with_dbname(&admin_url, &name).expect("a parsable DATABASE_URL"),
        name,
        admin_url,
        worker_urls: Vec::new(),
        _keep: cluster.map(|c| c as Arc<dyn std::any::Any + Send + Sync>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_15_when_installed_else_the_highest_numerically() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["9.6", "15", "16"], Some("15")),
            (&["16", "15"], Some("15")),
            (&["9.6", "14", "10"], Some("14")),
            (&["9.6", "13"], Some("13")),
            (&["9.6", "9.10"], Some("9.10")),
            (&["16", "notes", "17beta"], Some("16")),
            (&["9.6"], Some("9.6")),
            (&["notes"], None),
            (&[], None),
        ];
        for (installed, expected) in cases {
            let installed: Vec<String> = installed.iter().map(|v| v.to_string()).collect();
            assert_eq!(
                choose_version(&installed),
                *expected,
                "installed {installed:?}"
            );
        }
    }
}
