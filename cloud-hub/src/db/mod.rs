//! PostgreSQL: connections, the schema (refinery migrations from
//! `migrations/hub/`), and Citus distribution where the extension exists.
//! [`apply`] projects event batches; [`leases`] hands out cells;
//! [`queries`] answers the dashboards and the registry; [`partitions`]
//! keeps the monthly partitions, [`retention`] takes old ones away,
//! [`export`] writes them as Parquet (the cold tier);
//! [`conninfo`] and [`tls`] give connections libpq's `sslmode`.

pub mod apply;
pub mod conninfo;
pub mod export;
pub mod leases;
pub mod partitions;
pub mod queries;
pub mod retention;
pub mod signin;
pub mod tls;

use tokio_postgres::Client;

use conninfo::SslMode;

mod embedded {
    refinery::embed_migrations!("../migrations/hub");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrating the hub database: {0}")]
    Migration(#[from] refinery::Error),
    #[error("TLS for PostgreSQL: {0}")]
    Tls(String),
    #[error("database URL: {0}")]
    ConnInfo(String),
    /// Another session of the same edge applied first (or the log has a hole):
    /// the batch does not continue the stored high-water mark.
    #[error("batch starting at {got} does not continue the high-water mark {high_water}")]
    NotContiguous { high_water: u64, got: u64 },
    /// The database does not hold what the hub wrote (a row deleted by hand?).
    #[error("hub database integrity: {0}")]
    Integrity(String),
}

/// An error and its causes on one line: tokio-postgres's own message is
/// often only "db error" or "error performing TLS handshake".
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string().replace('\n', " "));
        cause = c.source();
    }
    out
}

/// Connects with libpq's TLS rules (`sslmode`, default `prefer`;
/// `sslrootcert`, `sslcert`, `sslkey`: see [`tls`]) and drives the
/// connection in the background.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let info = conninfo::split(url).map_err(|e| DbError::ConnInfo(e.to_string()))?;
    let mut config: tokio_postgres::Config = info.rest.parse()?;
    let client = match info.tls.mode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            spawn_connection(config.connect(tokio_postgres::NoTls).await?)
        }
        mode => {
            config.ssl_mode(if mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&info.tls)?);
            spawn_connection(config.connect(tls).await?)
        }
    };
    Ok(client)
}

fn spawn_connection<S, T>(
    (client, connection): (Client, tokio_postgres::Connection<S, T>),
) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    client
}

/// Readiness beyond the connection: on Citus, the workers that do not
/// answer the coordinator (`host:port`); empty when all do, or on plain
/// PostgreSQL. A batch needs the worker of its shards, so a hub whose
/// workers are not all reachable is not ready.
pub async fn workers_down(client: &Client) -> Result<Vec<String>, DbError> {
    let citus = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[])
        .await?
        .is_some();
    if !citus {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT nodename::text, nodeport FROM run_command_on_workers('SELECT 1')
             WHERE NOT success ORDER BY nodename, nodeport",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{}:{}", r.get::<_, &str>(0), r.get::<_, i32>(1)))
        .collect())
}

/// An arbitrary constant: the advisory lock that serialises migrations when
/// several hub processes start at once.
const MIGRATION_LOCK: i64 = 0x7061_686c_6177_616e;

/// Applies pending migrations, then Citus distribution if `citus` is
/// installed, then makes this month's partitions and the next ones.
/// Returns whether Citus distribution is in effect.
pub async fn migrate(client: &mut Client) -> Result<bool, DbError> {
    locked(client, async |client| {
        embedded::migrations::runner().run_async(client).await?;
        let citus = distribute_if_citus(client).await?;
        partitions::ensure_around(client, time::OffsetDateTime::now_utc()).await?;
        Ok(citus)
    })
    .await
}

/// Applies the migrations up to `version` only, nothing else: for tests
/// that upgrade a database holding rows of an older schema.
pub async fn migrate_to(client: &mut Client, version: i32) -> Result<(), DbError> {
    locked(client, async |client| {
        embedded::migrations::runner()
            .set_target(refinery::Target::Version(version))
            .run_async(client)
            .await?;
        Ok(())
    })
    .await
}

/// Runs `f` holding the schema lock (migrations, partition DDL), so that
/// several hub processes take turns.
pub async fn locked<T>(
    client: &mut Client,
    f: impl AsyncFnOnce(&mut Client) -> Result<T, DbError>,
) -> Result<T, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = f(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

/// The Citus DDL, as (table, statement): the large tables distributed by
/// `geo_region_id` and colocated, the registries as reference tables. Every
/// primary key of a distributed table contains its distribution column.
/// `audit_log` carries its append-only triggers (V3); Citus distributes a
/// table with triggers only under `citus.enable_unsafe_triggers`, which
/// [`migrate`] turns on for the session while distributing.
pub const CITUS_DDL: [(&str, &str); 10] = [
    (
        "surplus",
        "SELECT create_distributed_table('surplus', 'geo_region_id')",
    ),
    (
        "matching_history",
        "SELECT create_distributed_table('matching_history', 'geo_region_id', colocate_with => 'surplus')",
    ),
    (
        "event_log",
        "SELECT create_distributed_table('event_log', 'geo_region_id', colocate_with => 'surplus')",
    ),
    (
        "edge_progress",
        "SELECT create_distributed_table('edge_progress', 'geo_region_id', colocate_with => 'surplus')",
    ),
    (
        "audit_log",
        "SELECT create_distributed_table('audit_log', 'geo_region_id', colocate_with => 'surplus')",
    ),
    (
        "impact_daily",
        "SELECT create_distributed_table('impact_daily', 'geo_region_id', colocate_with => 'surplus')",
    ),
    ("edges", "SELECT create_reference_table('edges')"),
    ("providers", "SELECT create_reference_table('providers')"),
    ("recipients", "SELECT create_reference_table('recipients')"),
    (
        "cell_leases",
        "SELECT create_reference_table('cell_leases')",
    ),
];

async fn distribute_if_citus(client: &Client) -> Result<bool, DbError> {
    let citus: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'citus'",
            &[],
        )
        .await?
        .get(0);
    if citus == 0 {
        return Ok(false);
    }
    // `audit_log` has triggers that refuse UPDATE, DELETE and TRUNCATE
    // (local to each row: they query nothing): Citus distributes a table
    // with triggers, and propagates them to its shards, only when this is
    // on. For this session while distributing.
    client
        .batch_execute("SET citus.enable_unsafe_triggers TO on")
        .await?;
    let result = distribute_tables(client).await;
    client
        .batch_execute("RESET citus.enable_unsafe_triggers")
        .await?;
    result.map(|()| true)
}

async fn distribute_tables(client: &Client) -> Result<(), DbError> {
    // Table by table, so a start that failed halfway finishes the rest.
    for (table, ddl) in CITUS_DDL {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass",
                &[&table],
            )
            .await?
            .get(0);
        if done == 0 {
            client.batch_execute(ddl).await?;
            tracing::info!(table, "Citus: table distributed");
        }
    }
    Ok(())
}
