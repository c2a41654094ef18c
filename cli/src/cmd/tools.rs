//! The demo and the load tools: `simulate`, `bench`, `bench-sync`,
//! `bench-fleet`.

use clap::Args;

use crate::exit;

#[derive(Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 10_000)]
    providers: usize,
    #[arg(long, default_value_t = 500)]
    recipients: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open-loop target rate in requests/s (default: closed loop, as fast as possible).
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long, default_value_t = 500)]
    recipients: usize,
}

#[derive(Args)]
pub struct BenchSyncArgs {
    /// PostgreSQL to use (default: $DATABASE_URL). Tables are created in it.
    #[arg(long)]
    database_url: Option<String>,
    /// Surplus posted before the edges first meet the hub (2 events each),
    /// shared among the edges of each scenario.
    #[arg(long, default_value_t = 100_000)]
    backlog_posts: u64,
    /// Ingest scenarios, as numbers of edges connecting at once (1 to 10).
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    edges: Vec<usize>,
    /// What the database is, for the report's title.
    #[arg(long, default_value = "PostgreSQL")]
    label: String,
    /// Posts/s served while lag is measured.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
}

#[derive(Args)]
pub struct BenchFleetArgs {
    /// PostgreSQL to use (default: $DATABASE_URL), empty: the hub's tables
    /// are created and filled in it.
    #[arg(long)]
    database_url: Option<String>,
    /// Events in the hub's log, at least (ten cities' edges, ~9 events per
    /// surplus).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Days of history up to now (inside the hub's 90-day retention).
    #[arg(long, default_value_t = 89)]
    history_days: i64,
    /// Concurrent HTTP clients, a keep-alive connection each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds measured per endpoint.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Where `EXPLAIN (ANALYZE, BUFFERS)` of each fleet statement is written.
    #[arg(long, default_value = "docs/bench/fleet-explain.txt")]
    explain_out: std::path::PathBuf,
    /// What the database is, for the report's title.
    #[arg(long, default_value = "PostgreSQL")]
    label: String,
    /// Seed of the history's stories.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The hub's `[http] db_connections` (default: the hub's own default).
    #[arg(long)]
    hub_db_connections: Option<usize>,
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    if args.providers < 1 {
        return Err(exit::usage("--providers must be at least 1"));
    }
    if args.recipients < 1 {
        return Err(exit::usage("--recipients must be at least 1"));
    }
    let report = pahlawan_cli::sim::run(pahlawan_cli::sim::SimConfig {
        providers: args.providers,
        recipients: args.recipients,
        seed: args.seed,
        show_progress: !args.no_progress,
        ..Default::default()
    })
    .await?;
    print!("{}", report.render());
    Ok(())
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency < 1 {
        return Err(exit::usage("--concurrency must be at least 1"));
    }
    if args.duration_secs < 1 {
        return Err(exit::usage("--duration-secs must be at least 1"));
    }
    let report = pahlawan_cli::bench::run(pahlawan_cli::bench::BenchConfig {
        duration: std::time::Duration::from_secs(args.duration_secs),
        warmup: std::time::Duration::from_secs(args.warmup_secs),
        concurrency: args.concurrency,
        rate: args.rate,
        recipients: args.recipients,
    })
    .await?;
    print!("{}", report.render());
    Ok(())
}

pub async fn bench_sync(args: BenchSyncArgs) -> anyhow::Result<()> {
    let database_url = args
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or_else(|| exit::usage("no database: pass --database-url or set DATABASE_URL"))?;
    let report = crate::sync_bench::run(crate::sync_bench::SyncBenchConfig {
        database_url,
        label: args.label,
        edges: args.edges,
        backlog_posts: args.backlog_posts,
        rate: args.rate,
        duration: std::time::Duration::from_secs(args.duration_secs.max(1)),
    })
    .await?;
    print!("{report}");
    Ok(())
}

pub async fn bench_fleet(args: BenchFleetArgs) -> anyhow::Result<()> {
    let database_url = args
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or_else(|| exit::usage("no database: pass --database-url or set DATABASE_URL"))?;
    if args.events < crate::fleet_bench::MIN_EVENTS {
        return Err(exit::usage(format!(
            "--events must be at least {}",
            crate::fleet_bench::MIN_EVENTS
        )));
    }
    if !(1..=89).contains(&args.history_days) {
        return Err(exit::usage(
            "--history-days must be 1 to 89 (the hub keeps 90 days)",
        ));
    }
    if args.connections < 1 || args.duration_secs < 1 {
        return Err(exit::usage(
            "--connections and --duration-secs must be at least 1",
        ));
    }
    let report = crate::fleet_bench::run(crate::fleet_bench::FleetBenchConfig {
        database_url,
        label: args.label,
        events: args.events,
        history_days: args.history_days,
        connections: args.connections,
        warmup: std::time::Duration::from_secs(args.warmup_secs),
        duration: std::time::Duration::from_secs(args.duration_secs),
        explain_out: args.explain_out,
        seed: args.seed,
        hub_db_connections: args.hub_db_connections,
    })
    .await?;
    print!("{report}");
    Ok(())
}
