//! `pahlawan keys init|rotate` and `pahlawan token issue`: an edge's key
//! material and the bearer tokens it accepts (and, with `--for hub`, the
//! hub's, through `hub_tokens`).

use anyhow::Context;
use clap::{Args, Subcommand};

use super::edge::{EdgeArgs, edge_config};
use crate::exit;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create whatever is missing under <data-dir>/keys: the RS256 signing
    /// key, the JWKS holding its public half, the PII key and (with Web Push
    /// on) the VAPID key — what the edge makes at its first start. Existing
    /// keys are kept.
    #[command(after_help = "Example:\n  pahlawan keys init --data-dir ./data")]
    Init(EdgeArgs),
    /// Make a new PII key active; the edge re-seals every contact under it
    /// (at once if it is not running, within seconds if it is).
    #[command(after_help = "Example:\n  pahlawan keys rotate --data-dir ./data")]
    Rotate(EdgeArgs),
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the data dir's key (or, with --for hub, the hub's)
    /// and print it alone on stdout.
    #[command(
        after_help = "Examples:\n  pahlawan token issue --role ngo --sub 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --ttl 15m --data-dir ./data\n  pahlawan token issue --for hub --role viewer --sub siti --ttl 1h --certs-dir certs"
    )]
    Issue(TokenArgs),
}

#[derive(Args)]
pub struct TokenArgs {
    /// provider, ngo or admin (an edge's); admin or viewer (the hub's).
    #[arg(long)]
    role: String,
    /// The subject: a provider id (provider), a recipient id (ngo), a name (admin, viewer).
    #[arg(long)]
    sub: String,
    /// Lifetime: 900, 900s, 15m or 1h.
    #[arg(long, default_value = "15m")]
    ttl: String,
    /// Whose API the token opens: an edge's (signed with --data-dir's key)
    /// or the hub's (signed with the hub's token key; --config is then the
    /// hub's configuration file).
    #[arg(long = "for", value_enum, default_value_t = TokenFor::Edge)]
    token_for: TokenFor,
    /// With --for hub: the directory holding the hub's TLS key; its token
    /// keys are in tokens/ beside it unless [auth] keys_dir says otherwise.
    #[arg(long)]
    certs_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFor {
    Edge,
    Hub,
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init(args) => {
            let config = edge_config(&args)?;
            let mut created = edge_node::auth::keys::init(&config.data_dir)?;
            if let Some(vapid) = edge_node::service::vapid_key(&config)? {
                if vapid.created {
                    created.files.push(vapid.path);
                } else {
                    created.kept.push(vapid.path);
                }
            }
            for f in created.files {
                println!("created {}", f.display());
            }
            for f in created.kept {
                println!("kept    {}", f.display());
            }
        }
        KeysCommand::Rotate(args) => rotate(&args).await?,
    }
    Ok(())
}

async fn rotate(args: &EdgeArgs) -> anyhow::Result<()> {
    let config = edge_config(args)?;
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
    Ok(())
}

pub fn token(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue(args) = command;
    println!("{}", token_issue(&args)?);
    Ok(())
}

/// Seconds from `900`, `900s`, `15m` or `1h`.
pub(crate) fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let bad = || exit::usage(format!("--ttl {s:?}: expected e.g. 900, 900s, 15m or 1h"));
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        _ => None,
    };
    match secs {
        Some(secs) if secs >= 1 => Ok(secs),
        _ => Err(bad()),
    }
}

fn token_issue(args: &TokenArgs) -> anyhow::Result<String> {
    if args.token_for == TokenFor::Hub {
        let config =
            crate::hub_tokens::config(args.edge.config.as_deref(), args.certs_dir.as_deref())?;
        return crate::hub_tokens::issue(&config, &args.role, &args.sub, parse_ttl(&args.ttl)?);
    }
    let config = edge_config(&args.edge)?;
    let role: edge_node::auth::Role = args.role.parse().map_err(|_| {
        exit::usage(format!(
            "--role {:?}: expected provider, ngo or admin",
            args.role
        ))
    })?;
    if role != edge_node::auth::Role::Admin && uuid::Uuid::parse_str(&args.sub).is_err() {
        return Err(exit::usage(format!(
            "--sub {:?}: a {} token's subject is the {} id (a UUID)",
            args.sub,
            role.as_str(),
            if role == edge_node::auth::Role::Ngo {
                "recipient"
            } else {
                "provider"
            }
        )));
    }
    if args.sub.trim().is_empty() {
        return Err(exit::usage("--sub must not be empty"));
    }
    let ttl = parse_ttl(&args.ttl)?;
    if ttl > config.auth.max_token_lifetime_secs {
        return Err(exit::usage(format!(
            "--ttl {}: the edge refuses tokens living longer than {} s (auth.max_token_lifetime_secs)",
            args.ttl, config.auth.max_token_lifetime_secs
        )));
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
