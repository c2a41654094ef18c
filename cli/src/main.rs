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
    /// An edge's key material: token signing keys and the PII keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Bearer tokens for an edge's API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// GDPR: export or erase a provider's or recipient's data on a running edge.
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// The food bank's kiosk page: pair one, list and revoke paired kiosks
    /// on a running edge.
    Kiosk {
        #[command(subcommand)]
        command: KioskCommand,
    },
}

#[derive(Subcommand)]
enum KioskCommand {
    /// Print a one-time code (and its QR code) that pairs a kiosk page with
    /// a recipient; it is valid for a few minutes (`kiosk.code_ttl_secs`).
    Pair(KioskPairArgs),
    /// List paired kiosks.
    List(AdminArgs),
    /// Revoke a kiosk: its cookie stops working at once.
    Revoke(KioskRevokeArgs),
}

#[derive(Args)]
struct KioskPairArgs {
    /// The recipient (food bank) the kiosk acts for.
    #[arg(long)]
    recipient: String,
    /// Address the kiosk reaches the edge at, for the QR code's link
    /// (default: the --url, or http://<listen>).
    #[arg(long)]
    kiosk_url: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct KioskRevokeArgs {
    /// The device id `kiosk list` shows.
    device: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// How an admin verb reaches a running edge.
#[derive(Args)]
struct AdminArgs {
    /// The edge's base URL (default: http://<listen> from the configuration).
    #[arg(long)]
    url: Option<String>,
    /// Admin tokens are signed with this edge's keys (from --data-dir).
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create whatever is missing under <data-dir>/keys: the RS256 signing
    /// key, the JWKS holding its public half, the PII key. Existing keys are kept.
    Init(EdgeArgs),
    /// Make a new PII key active; the edge re-seals every contact under it
    /// (at once if it is not running, within seconds if it is).
    Rotate(EdgeArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token with the data dir's key and print it alone on stdout.
    Issue(TokenArgs),
}

#[derive(Args)]
struct TokenArgs {
    /// provider, ngo or admin.
    #[arg(long)]
    role: String,
    /// The subject: a provider id (provider), a recipient id (ngo), a name (admin).
    #[arg(long)]
    sub: String,
    /// Lifetime: 900, 900s, 15m or 1h.
    #[arg(long, default_value = "15m")]
    ttl: String,
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// Print everything the edge holds on a provider or recipient (JSON).
    Export(SubjectArgs),
    /// Erase a provider's or recipient's name and contact data; its surplus
    /// and delivered kilograms stay.
    Erase(SubjectArgs),
}

#[derive(Args)]
struct SubjectArgs {
    /// The provider or recipient id.
    id: String,
    /// The edge's base URL (default: http://<listen>, or https://<listen>
    /// with [http.tls], from the configuration).
    #[arg(long)]
    url: Option<String>,
    /// Trust this CA (PEM) for an HTTPS edge, e.g. certs/ca.crt; without
    /// it, the system's roots.
    #[arg(long, env = "PAHLAWAN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Admin tokens are signed with this edge's keys (from --data-dir).
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Args)]
struct BenchSyncArgs {
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

#[derive(Subcommand)]
enum HubCommand {
    /// Serve QUIC sync for edges and the HTTP status API, backed by PostgreSQL.
    Run(HubArgs),
    /// Print the effective hub configuration as TOML.
    Config(HubArgs),
    /// Write the months of the event log and surplus that ended by --before
    /// as Parquet (one file per month and region: DIR/<table>/<YYYY-MM>/
    /// region-<id>.parquet), check each file, then detach the months from
    /// PostgreSQL (their delivered kilograms stay as daily totals).
    Export(HubExportArgs),
}

#[derive(Args)]
struct HubExportArgs {
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

/// `--before`, checked here rather than by clap so that a bad date is one
/// line like every other error.
fn parse_date(s: &str) -> anyhow::Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map_err(|e| anyhow::anyhow!("--before {s:?}: expected a date as YYYY-MM-DD ({e})"))
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
    /// Issue an HTTPS certificate for an edge's (or the hub's) web
    /// listener, signed by the CA: `web-<first name>.crt` and `.key`, for
    /// `[http.tls]`. Clients trust `ca.crt`.
    IssueWeb {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// A DNS name clients use, e.g. edge.local (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// An IP address clients use, e.g. 192.168.1.10 (repeatable).
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// Days of validity.
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Replace existing files of the same name.
        #[arg(long)]
        force: bool,
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

mod kiosk {
    //! `pahlawan kiosk pair|list|revoke`: admin calls to a running edge.

    use super::{KioskCommand, admin_call};

    pub async fn run(command: KioskCommand) -> anyhow::Result<()> {
        match command {
            KioskCommand::Pair(a) => {
                let id = uuid::Uuid::parse_str(&a.recipient).map_err(|_| {
                    anyhow::anyhow!("{:?} is not a recipient id (a UUID)", a.recipient)
                })?;
                let body = serde_json::json!({ "recipient_id": id.hyphenated().to_string() });
                let (base, paired) = admin_call(
                    &a.admin,
                    reqwest::Method::POST,
                    "/api/v1/kiosk/pairings",
                    Some(body),
                )
                .await?;
                let code = paired["code"].as_str().unwrap_or_default();
                let expires = paired["expires_at"].as_str().unwrap_or_default();
                let page = a.kiosk_url.unwrap_or(base);
                let link = format!("{}/kiosk#code={code}", page.trim_end_matches('/'));
                println!("{code}");
                eprintln!(
                    "Type this code on the kiosk page ({page}/kiosk) before {expires}, or scan:"
                );
                eprintln!("{}", qr(&link)?);
                eprintln!("{link}");
                Ok(())
            }
            KioskCommand::List(admin) => {
                let (_, list) =
                    admin_call(&admin, reqwest::Method::GET, "/api/v1/kiosk/devices", None).await?;
                let items = list["items"].as_array().cloned().unwrap_or_default();
                println!(
                    "{:<36}  {:<36}  {:<7}  {:<20}  label",
                    "device", "recipient", "status", "expires"
                );
                for d in items {
                    let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                    println!(
                        "{:<36}  {:<36}  {:<7}  {:<20}  {}",
                        s("id"),
                        s("recipient_id"),
                        s("status"),
                        s("expires_at"),
                        s("label")
                    );
                }
                Ok(())
            }
            KioskCommand::Revoke(a) => {
                let id = uuid::Uuid::parse_str(&a.device)
                    .map_err(|_| anyhow::anyhow!("{:?} is not a device id (a UUID)", a.device))?;
                let path = format!("/api/v1/kiosk/devices/{}/revoke", id.hyphenated());
                admin_call(&a.admin, reqwest::Method::POST, &path, None).await?;
                println!("revoked {}", id.hyphenated());
                Ok(())
            }
        }
    }

    /// The QR code of `text` for a terminal: two rows of modules per line.
    fn qr(text: &str) -> anyhow::Result<String> {
        let code = qrcode::QrCode::new(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("making the QR code: {e}"))?;
        Ok(code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build())
    }
}

/// An admin call to a running edge: a short-lived admin token signed with
/// the data dir's key; the edge's JSON answer, or its refusal on one line.
async fn admin_call(
    args: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(String, serde_json::Value)> {
    let config = edge_config(&args.edge)?;
    let token = edge_node::auth::keys::issue(
        &config.data_dir,
        &config.auth.issuer,
        &config.auth.audience,
        edge_node::auth::Role::Admin,
        "pahlawan-cli",
        300,
        edge_node::clock::Clock::now(&edge_node::clock::SystemClock),
    )?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    let base = base.trim_end_matches('/').to_string();
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("reaching the edge at {base}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("the edge at {base} answered {status} with no JSON"))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("the edge answered {}: {code}: {message}", status.as_u16());
    }
    Ok((base, body))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the benchmark report their own figures; keep logs to errors.
    let quiet = matches!(
        cli.command,
        Command::Simulate(_) | Command::Bench(_) | Command::BenchSync(_)
    );
    let tracer = init_logging(cli.log_format, if quiet { "error" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    if let Some(provider) = tracer {
        // Whatever is batched goes out before the process ends.
        let _ = provider.shutdown();
    }
    match outcome {
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

/// Logs on stderr (text or JSON) and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, spans exported over OTLP/HTTP (protobuf) in batches. The
/// provider is returned so `main` can flush it before exiting.
fn init_logging(
    format: LogFormat,
    default_filter: &str,
) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `RUST_LOG` filters the logs; exported spans keep their own level, so
    // quieter logs do not switch tracing off.
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
    };
    let text = matches!(format, LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let json = matches!(format, LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let provider = otlp_provider();
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("pahlawan"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(otel)
        .init();
    provider
}

/// An OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter
/// reads it and the other standard `OTEL_*` variables itself).
fn otlp_provider() -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
    if endpoint.trim().is_empty() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OTLP export disabled: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "pahlawan".into());
    Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build(),
    )
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
        Command::Hub {
            command: HubCommand::Run(args),
        } => hub_run(args).await,
        Command::Hub {
            command: HubCommand::Config(args),
        } => {
            print!("{}", hub_config(&args)?.to_toml());
            Ok(())
        }
        Command::Hub {
            command: HubCommand::Export(args),
        } => hub_export(args).await,
        Command::Certs { command } => certs(command),
        Command::Keys { command } => keys(command).await,
        Command::Token {
            command: TokenCommand::Issue(args),
        } => {
            println!("{}", token_issue(&args)?);
            Ok(())
        }
        Command::Subject { command } => subject(command).await,
        Command::Kiosk { command } => kiosk::run(command).await,
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init(args) => {
            let config = edge_config(&args)?;
            let created = edge_node::auth::keys::init(&config.data_dir)?;
            for f in created.files {
                println!("created {}", f.display());
            }
            for f in created.kept {
                println!("kept    {}", f.display());
            }
        }
        KeysCommand::Rotate(args) => {
            let config = edge_config(&args)?;
            let id = edge_node::pii::PiiKeys::rotate_file(&config.data_dir)?;
            println!("PII key {id} is now active");
            match edge_node::service::lock_data_dir(&config.data_dir) {
                Ok(lock) => {
                    // Nobody runs on this data dir: re-seal now, through the
                    // edge itself (its start re-seals before serving).
                    drop(lock);
                    let edge = edge_node::Edge::start(
                        config,
                        edge_node::StartOptions {
                            serve_http: false,
                            ..Default::default()
                        },
                    )
                    .await
                    .context("re-sealing contact data")?;
                    edge.shutdown().await;
                    println!("every contact is sealed under key {id}");
                }
                Err(edge_node::StartError::Locked(_)) => {
                    println!("the running edge re-seals its contacts within seconds");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Seconds from `900`, `900s`, `15m` or `1h`.
fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl {s:?}: expected e.g. 900, 900s, 15m or 1h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        _ => None,
    };
    match secs {
        Some(secs) if secs >= 1 => Ok(secs),
        _ => anyhow::bail!("--ttl {s:?}: expected e.g. 900, 900s, 15m or 1h"),
    }
}

fn token_issue(args: &TokenArgs) -> anyhow::Result<String> {
    let config = edge_config(&args.edge)?;
    let role: edge_node::auth::Role = args
        .role
        .parse()
        .map_err(|_| anyhow::anyhow!("--role {:?}: expected provider, ngo or admin", args.role))?;
    if role != edge_node::auth::Role::Admin && uuid::Uuid::parse_str(&args.sub).is_err() {
        anyhow::bail!(
            "--sub {:?}: a {} token's subject is the {} id (a UUID)",
            args.sub,
            role.as_str(),
            if role == edge_node::auth::Role::Ngo {
                "recipient"
            } else {
                "provider"
            }
        );
    }
    if args.sub.trim().is_empty() {
        anyhow::bail!("--sub must not be empty");
    }
    let ttl = parse_ttl(&args.ttl)?;
    if ttl > config.auth.max_token_lifetime_secs {
        anyhow::bail!(
            "--ttl {}: the edge refuses tokens living longer than {} s (auth.max_token_lifetime_secs)",
            args.ttl,
            config.auth.max_token_lifetime_secs
        );
    }
    Ok(edge_node::auth::keys::issue(
        &config.data_dir,
        &config.auth.issuer,
        &config.auth.audience,
        role,
        &args.sub,
        ttl,
        edge_node::clock::Clock::now(&edge_node::clock::SystemClock),
    )?)
}

async fn subject(command: SubjectCommand) -> anyhow::Result<()> {
    let (args, erase) = match command {
        SubjectCommand::Export(a) => (a, false),
        SubjectCommand::Erase(a) => (a, true),
    };
    let id = uuid::Uuid::parse_str(&args.id)
        .map_err(|_| anyhow::anyhow!("{:?} is not a provider or recipient id (a UUID)", args.id))?;
    let config = edge_config(&args.edge)?;
    let token = edge_node::auth::keys::issue(
        &config.data_dir,
        &config.auth.issuer,
        &config.auth.audience,
        edge_node::auth::Role::Admin,
        "pahlawan-cli",
        300,
        edge_node::clock::Clock::now(&edge_node::clock::SystemClock),
    )?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", config.listen));
    let base = base.trim_end_matches('/');
    let client = pahlawan_cli::client::http_client(args.ca_cert.as_deref())?;
    let req = if erase {
        client.post(format!("{base}/api/v1/subjects/{id}/erase"))
    } else {
        client.get(format!("{base}/api/v1/subjects/{id}/export"))
    };
    let resp = req
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("reaching the edge at {base}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("the edge at {base} answered {status} with no JSON"))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("the edge answered {}: {code}: {message}", status.as_u16());
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
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
    let scheme = if hub.http_is_tls() { "https" } else { "http" };
    println!(
        "quic on {} http on {scheme}://{}",
        hub.quic_addr(),
        hub.http_addr()
    );
    hub.run_until(shutdown_signal()).await;
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
        CertsCommand::IssueWeb {
            dir,
            names,
            ips,
            days,
            force,
        } => {
            anyhow::ensure!((1..=3_650).contains(&days), "--days must be 1 to 3650");
            cloud_hub::certs::issue_web(&dir, &names, &ips, days, force)?
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

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
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
