//! `pahlawan hub run|config|export|login-code`: the cloud hub.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::exit;

#[derive(Subcommand)]
pub enum HubCommand {
    /// Serve QUIC sync for edges and the HTTP status API, backed by PostgreSQL.
    #[command(
        after_help = "Example:\n  pahlawan hub run --database-url postgres://pahlawan@db/pahlawan --certs-dir certs"
    )]
    Run(HubArgs),
    /// Print the effective hub configuration as TOML.
    #[command(after_help = "Example:\n  pahlawan hub config --config hub.toml")]
    Config(HubArgs),
    /// Write the months of the event log and surplus that ended by --before
    /// as Parquet (one file per month and region: DIR/<table>/<YYYY-MM>/
    /// region-<id>.parquet), check each file, then detach the months from
    /// PostgreSQL (their delivered kilograms stay as daily totals).
    #[command(
        after_help = "Example:\n  pahlawan hub export --before 2026-09-01 --to /srv/pahlawan-cold"
    )]
    Export(HubExportArgs),
    /// Ask the running hub for a one-time code a person trades for a
    /// dashboard session at /dashboard (printed alone on stdout).
    #[command(
        after_help = "Example:\n  pahlawan hub login-code --role viewer --sub siti@example.org --certs-dir certs"
    )]
    LoginCode(LoginCodeArgs),
}

#[derive(Args)]
pub struct LoginCodeArgs {
    /// admin or viewer.
    #[arg(long, default_value = "viewer")]
    role: String,
    /// Who signs in with it: a person's name or address.
    #[arg(long)]
    sub: String,
    /// How long the code may wait to be used: 60s to 1h.
    #[arg(long, default_value = "10m")]
    ttl: String,
    /// The hub's base URL (default: http://<listen_http>, or https:// with
    /// [http.tls], from the configuration).
    #[arg(long)]
    url: Option<String>,
    /// Trust this CA (PEM) for an HTTPS hub, e.g. certs/ca.crt.
    #[arg(long, env = "PAHLAWAN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The hub's TOML configuration (for its token key and address).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory holding the hub's TLS key (its token keys are in tokens/ beside it).
    #[arg(long)]
    certs_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct HubExportArgs {
    /// TOML configuration file (for database_url); PAHLAWAN_HUB_* and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PostgreSQL connection string (default: $DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Export months that ended by this UTC date, e.g. 2026-09-01 (at least 15 days ago).
    #[arg(long)]
    before: String,
    /// Directory for the Parquet files (created if missing; existing files are never overwritten).
    #[arg(long)]
    to: PathBuf,
}

#[derive(Args)]
pub struct HubArgs {
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

pub async fn run(command: HubCommand) -> anyhow::Result<()> {
    match command {
        HubCommand::Run(args) => hub_run(args).await,
        HubCommand::Config(args) => {
            print!("{}", hub_config(&args)?.to_toml());
            Ok(())
        }
        HubCommand::Export(args) => hub_export(args).await,
        HubCommand::LoginCode(args) => login_code(args).await,
    }
}

async fn login_code(args: LoginCodeArgs) -> anyhow::Result<()> {
    let config = crate::hub_tokens::config(args.config.as_deref(), args.certs_dir.as_deref())?;
    let req = crate::hub_tokens::LoginCodeRequest {
        ttl_secs: super::keys::parse_ttl(&args.ttl)?,
        role: args.role,
        sub: args.sub,
        url: args.url,
        ca_cert: args.ca_cert,
    };
    let answer = crate::hub_tokens::login_code(&config, &req).await?;
    println!("{}", answer["code"].as_str().unwrap_or_default());
    eprintln!(
        "a one-time code for {} ({}), valid until {}: sign in at /dashboard",
        answer["sub"].as_str().unwrap_or_default(),
        answer["role"].as_str().unwrap_or_default(),
        answer["expires_at"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `--before`, checked here rather than by clap so that a bad date is one
/// line like every other error.
fn parse_date(s: &str) -> anyhow::Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format).map_err(|e| {
        exit::usage(format!(
            "--before {s:?}: expected a date as YYYY-MM-DD ({e})"
        ))
    })
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
    let shutdown = super::edge::shutdown_signal();
    let hub = cloud_hub::Hub::start(hub_config(&args)?)
        .await
        .context("starting the hub")?;
    let scheme = if hub.http_is_tls() { "https" } else { "http" };
    println!(
        "quic on {} http on {scheme}://{}",
        hub.quic_addr(),
        hub.http_addr()
    );
    hub.run_until(shutdown).await;
    Ok(())
}

async fn hub_export(args: HubExportArgs) -> anyhow::Result<()> {
    let before = parse_date(&args.before)?;
    let mut config = cloud_hub::HubConfig::load(args.config.as_deref())?;
    if let Some(u) = args.database_url {
        config.database_url = u;
    }
    config.validate()?;
    let mut client = cloud_hub::db::connect(&config.database_url)
        .await
        .context("connecting to PostgreSQL")?;
    let exported = cloud_hub::db::export::export(
        &mut client,
        before.midnight().assume_utc(),
        &args.to,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    for f in &exported.files {
        println!("wrote    {} ({} rows)", f.path.display(), f.rows);
    }
    for p in &exported.detached {
        println!("detached {p}");
    }
    if exported.detached.is_empty() {
        println!("no month ended by {before} is left in PostgreSQL");
    }
    Ok(())
}
