//! PostgreSQL: connections, the schema (refinery migrations from
//! `migrations/hub/`), and Citus distribution where the extension exists.
//! [`apply`] projects event batches; [`leases`] hands out cells;
//! [`queries`] answers the dashboards and the registry.

pub mod apply;
pub mod leases;
pub mod queries;

use std::sync::Arc;

use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("../migrations/hub");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrating the hub database: {0}")]
    Migration(#[from] refinery::Error),
    #[error("TLS for PostgreSQL: {0}")]
    Tls(String),
    /// Another session of the same edge applied first (or the log has a hole):
    /// the batch does not continue the stored high-water mark.
    #[error("batch starting at {got} does not continue the high-water mark {high_water}")]
    NotContiguous { high_water: u64, got: u64 },
    /// The database does not hold what the hub wrote (a row deleted by hand?).
    #[error("hub database integrity: {0}")]
    Integrity(String),
}

/// Connects (TLS when the server offers it, per `sslmode`; plain otherwise)
/// and drives the connection in the background.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DbError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres_rustls::MakeRustlsConnect::new(tls)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// An arbitrary constant: the advisory lock that serialises migrations when
/// several hub processes start at once.
const MIGRATION_LOCK: i64 = 0x7061_686c_6177_616e;

/// Applies pending migrations, then Citus distribution if `citus` is installed.
/// Returns whether Citus distribution is in effect.
pub async fn migrate(client: &mut Client) -> Result<bool, DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        embedded::migrations::runner().run_async(client).await?;
        distribute_if_citus(client).await
    }
    .await;
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
pub const CITUS_DDL: [(&str, &str); 9] = [
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
