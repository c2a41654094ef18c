//! `pahlawan edge run|config`: serve a city edge, or print its effective
//! configuration; [`EdgeArgs`] and [`edge_config`] are how every verb that
//! needs an edge's configuration reads it, and [`Target`] how every verb
//! that talks to a running edge finds it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use edge_node::EdgeConfig;

use crate::client::{Admin, Reach};

#[derive(Subcommand)]
pub enum EdgeCommand {
    /// Serve the edge's HTTP API (embedded defaults: SQLite under ./data,
    /// Greater Jakarta's cells, 127.0.0.1:8080, no hub).
    #[command(after_help = "Example:\n  pahlawan edge run --config /etc/pahlawan/edge.toml")]
    Run(EdgeArgs),
    /// Print the effective configuration (defaults, file, environment, flags) as TOML.
    #[command(after_help = "Example:\n  pahlawan edge config --config edge.toml")]
    Config(EdgeArgs),
    /// Print the memory budget at this configuration's limits: what each
    /// part (SQLite caches, live surplus, recipients, connections, streams,
    /// queues) may hold, and the total to size the box by.
    #[command(after_help = "Example:\n  pahlawan edge budget --config /etc/pahlawan/edge.toml")]
    Budget(EdgeArgs),
}

#[derive(Args, Clone, Debug)]
pub struct EdgeArgs {
    /// TOML configuration file (see README); environment variables
    /// PAHLAWAN_EDGE_* override it, flags override both.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory holding the SQLite database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API, e.g. 0.0.0.0:8080 for kiosks on the LAN.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// Which edge to talk to, and as whom.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The edge's base URL (default: http://<listen>, or https://<listen>
    /// with [http.tls], from the configuration).
    #[arg(long)]
    pub url: Option<String>,
    /// An admin bearer token; by default one is signed with the data
    /// directory's key (keys/token-signing.pem).
    #[arg(long, env = "PAHLAWAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this CA (PEM) for an HTTPS edge, e.g. certs/ca.crt; without
    /// it, the system's roots.
    #[arg(long, env = "PAHLAWAN_CA_CERT", hide_env_values = true)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

impl Target {
    /// The admin connection these flags describe.
    pub fn admin(&self) -> anyhow::Result<Admin> {
        let config = edge_config(&self.edge)?;
        let reach = Reach {
            url: self.url.as_deref(),
            token: self.token.as_deref(),
            ca_cert: self.ca_cert.as_deref(),
        };
        Admin::connect(&config, reach)
    }
}

/// Defaults, the file, the environment, then these flags.
pub fn edge_config(args: &EdgeArgs) -> anyhow::Result<EdgeConfig> {
    let mut config = EdgeConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    Ok(config)
}

pub async fn run(command: EdgeCommand) -> anyhow::Result<()> {
    match command {
        EdgeCommand::Run(args) => edge_run(args).await,
        EdgeCommand::Config(args) => {
            print!("{}", edge_config(&args)?.to_toml());
            Ok(())
        }
        EdgeCommand::Budget(args) => print_budget(&edge_config(&args)?),
    }
}

/// The memory budget as a table, total last.
fn print_budget(config: &EdgeConfig) -> anyhow::Result<()> {
    let parts = edge_node::budget::memory_budget(config);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for p in &parts {
        println!("{:>9.1} MiB  {:<42}  {}", mib(p.bytes), p.part, p.limit);
    }
    let total = edge_node::budget::total(&parts);
    println!("{:>9.1} MiB  total at these limits", mib(total));
    Ok(())
}

async fn edge_run(args: EdgeArgs) -> anyhow::Result<()> {
    let config = edge_config(&args)?;
    let shutdown = shutdown_signal();
    let opts = edge_node::StartOptions {
        systemd: edge_node::systemd::Notifier::from_env(),
        ..Default::default()
    };
    let edge = edge_node::Edge::start(config, opts)
        .await
        .context("starting the edge")?;
    // Once started: a refused start says only why.
    let budget = edge_node::budget::total(&edge_node::budget::memory_budget(edge.config()));
    tracing::info!(
        memory_budget_mib = budget / (1024 * 1024),
        "memory the configured limits allow, filled (`pahlawan edge budget` for the parts)"
    );
    if let Some(addr) = edge.local_addr() {
        let scheme = if edge.config().http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // A machine-readable line for scripts and tests, then the human hint.
        println!("listening on {scheme}://{addr}");
        eprintln!(
            "edge serving on {scheme}://{addr}/api/v1 (OpenAPI at /api/v1/openapi.json); Ctrl-C to stop"
        );
        if let Some(plain) = edge.plain_addr() {
            eprintln!("plain HTTP also on http://{plain}");
        }
        let data_dir = edge.config().data_dir.display().to_string();
        eprintln!(
            "every route but /healthz, /readyz and the OpenAPI document needs a bearer token; get one with\n  \
             pahlawan token issue --role admin --sub \"$USER\" --data-dir {data_dir}\n\
             (or --role provider|ngo --sub <provider or recipient id>), then send \"Authorization: Bearer <token>\""
        );
    }
    edge.run_until(shutdown).await;
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: call it before the process says it is
/// up, or a SIGTERM in between kills it without draining.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! { () = recv(interrupt) => {}, () = recv(terminate) => {} }
        tracing::info!("shutting down");
    }
}

/// Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}
