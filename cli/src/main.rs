//! `pahlawan`: the command line. Each verb is a thin call into a crate; this
//! file only parses arguments, sets up logging and reports errors in one line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use edge_node::EdgeConfig;

mod sync_bench;

#[derive(Parser)]
#[command(
    name = "pahlawan",
    version,
    about = "Pahlawan Pangan: real-time food-surplus redistribution"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run or inspect a city edge node.
    Edge {
        #[command(subcommand)]
        command: EdgeCommand,
    },
    /// The thundering-herd demo: an in-process edge, N restaurants posting
    /// within one simulated minute, recipients answering by a seeded policy.
    Simulate(SimulateArgs),
    /// Load-test `POST /api/v1/surplus` over real HTTP, beside an empty axum
    /// handler and raw SQLite inserts measured in the same run.
    Bench(BenchArgs),
    /// Measure edge → hub sync: events/s into PostgreSQL, and replication
    /// lag while the edge serves a steady load (needs a PostgreSQL).
    BenchSync(BenchSyncArgs),
    /// Run or inspect the cloud hub.
    Hub {
        #[command(subcommand)]
        command: HubCommand,
    },
    /// The hub's certificate authority and edge certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Args)]
struct BenchSyncArgs {
    /// PostgreSQL to use (default: $DATABASE_URL). Tables are created in it.
    #[arg(long)]
    database_url: Option<String>,
    /// Surplus posted before the edge first meets the hub (2 events each).
    #[arg(long, default_value_t = 100_000)]
    backlog_posts: u64,
    /// Posts/s served while lag is measured.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
}

#[derive(Subcommand)]
enum HubCommand {
    /// Serve QUIC sync for edges and the HTTP status API, backed by PostgreSQL.
    Run(HubArgs),
    /// Print the effective hub configuration as TOML.
    Config(HubArgs),
}

#[derive(Args)]
struct HubArgs {
    /// TOML configuration file; PAHLAWAN_HUB_* variables override it, flags override both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PostgreSQL connection string (default: $DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// UDP address for edges' QUIC connections.
    #[arg(long)]
    listen_quic: Option<SocketAddr>,
    /// Address of the HTTP status API.
    #[arg(long)]
    listen_http: Option<SocketAddr>,
    /// Directory holding ca.crt, hub.crt and hub.key (from `certs init`).
    #[arg(long)]
    certs_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create the CA and the hub's certificate.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// DNS names or IPs edges use to reach the hub (repeatable);
        /// default: pahlawan-hub, localhost, 127.0.0.1.
        #[arg(long = "hub-name")]
        hub_names: Vec<String>,
        /// Replace an existing CA (every edge certificate must then be reissued).
        #[arg(long)]
        force: bool,
    },
    /// Issue an edge's client certificate and key, signed by the CA.
    IssueEdge {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        edge_id: String,
    },
}

#[derive(Subcommand)]
enum EdgeCommand {
    /// Serve the edge's HTTP API (embedded defaults: SQLite under ./data,
    /// Greater Jakarta's cells, 127.0.0.1:8080, no hub).
    Run(EdgeArgs),
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    Config(EdgeArgs),
}

#[derive(Args)]
struct EdgeArgs {
    /// TOML configuration file (see README); environment variables
    /// PAHLAWAN_EDGE_* override it, flags override both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory holding the SQLite database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API, e.g. 0.0.0.0:8080 for kiosks on the LAN.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Args)]
struct SimulateArgs {
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
struct BenchArgs {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the benchmark report their own figures; keep logs to errors.
    let quiet = matches!(
        cli.command,
        Command::Simulate(_) | Command::Bench(_) | Command::BenchSync(_)
    );
    init_logging(cli.log_format, if quiet { "error" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes a message already
/// quotes (typed errors often embed their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out.replace('\n', " ")
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Edge {
            command: EdgeCommand::Run(args),
        } => edge_run(args).await,
        Command::Edge {
            command: EdgeCommand::Config(args),
        } => {
            print!("{}", edge_config(&args)?.to_toml());
            Ok(())
        }
        Command::Simulate(args) => simulate(args).await,
        Command::Bench(args) => bench(args).await,
        Command::BenchSync(args) => {
            let database_url = args
                .database_url
                .or_else(|| std::env::var("DATABASE_URL").ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("no database: pass --database-url or set DATABASE_URL")
                })?;
            let report = sync_bench::run(sync_bench::SyncBenchConfig {
                database_url,
                backlog_posts: args.backlog_posts,
                rate: args.rate,
                duration: std::time::Duration::from_secs(args.duration_secs.max(1)),
            })
            .await?;
            print!("{report}");
            Ok(())
        }
        Command::Hub {
            command: HubCommand::Run(args),
        } => hub_run(args).await,
        Command::Hub {
            command: HubCommand::Config(args),
        } => {
            print!("{}", hub_config(&args)?.to_toml());
            Ok(())
        }
        Command::Certs { command } => certs(command),
    }
}

fn hub_config(args: &HubArgs) -> anyhow::Result<cloud_hub::HubConfig> {
    let mut config = cloud_hub::HubConfig::load(args.config.as_deref())?;
    if let Some(u) = &args.database_url {
        config.database_url = u.clone();
    }
    if let Some(a) = args.listen_quic {
        config.listen_quic = a;
    }
    if let Some(a) = args.listen_http {
        config.listen_http = a;
    }
    if let Some(d) = &args.certs_dir {
        config.tls.ca_cert = d.join(cloud_hub::certs::CA_CERT);
        config.tls.cert = d.join(cloud_hub::certs::HUB_CERT);
        config.tls.key = d.join(cloud_hub::certs::HUB_KEY);
    }
    Ok(config)
}

async fn hub_run(args: HubArgs) -> anyhow::Result<()> {
    let hub = cloud_hub::Hub::start(hub_config(&args)?)
        .await
        .context("starting the hub")?;
    println!(
        "quic on {} http on http://{}",
        hub.quic_addr(),
        hub.http_addr()
    );
    hub.run_until(shutdown_signal()).await;
    Ok(())
}

fn certs(command: CertsCommand) -> anyhow::Result<()> {
    let created = match command {
        CertsCommand::Init {
            dir,
            hub_names,
            force,
        } => cloud_hub::certs::init(&dir, &hub_names, force)?,
        CertsCommand::IssueEdge { dir, edge_id } => {
            let edge = sync_protocol::EdgeId::new(&edge_id)
                .map_err(|e| anyhow::anyhow!("--edge-id {edge_id:?}: {e}"))?;
            cloud_hub::certs::issue_edge(&dir, &edge)?
        }
    };
    for f in created.files {
        println!("{}", f.display());
    }
    Ok(())
}

fn edge_config(args: &EdgeArgs) -> anyhow::Result<EdgeConfig> {
    let mut config = EdgeConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    Ok(config)
}

async fn edge_run(args: EdgeArgs) -> anyhow::Result<()> {
    let config = edge_config(&args)?;
    let edge = edge_node::Edge::start(config, edge_node::StartOptions::default())
        .await
        .context("starting the edge")?;
    if let Some(addr) = edge.local_addr() {
        // A machine-readable line for scripts and tests, then the human hint.
        println!("listening on http://{addr}");
        eprintln!(
            "edge serving on http://{addr}/api/v1 (OpenAPI at /api/v1/openapi.json); Ctrl-C to stop"
        );
    }
    edge.run_until(shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.providers >= 1, "--providers must be at least 1");
    anyhow::ensure!(args.recipients >= 1, "--recipients must be at least 1");
    let report = edge_node::sim::run(edge_node::sim::SimConfig {
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

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    let report = edge_node::bench::run(edge_node::bench::BenchConfig {
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
