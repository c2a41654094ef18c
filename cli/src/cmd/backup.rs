//! `pahlawan backup` and `pahlawan restore`: a consistent, checked,
//! compressed copy of an edge's SQLite database taken while it runs, and
//! its restore into a stopped edge's data directory. The file format and
//! how the outbox numbering resumes are `edge_node::store::backup`'s.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use edge_node::store::backup;

use super::edge::{EdgeArgs, edge_config};
use crate::exit;
use crate::output::{Out, fields};

#[derive(Args)]
#[command(
    after_help = "Example:\n  pahlawan backup --to /mnt/usb/jakarta-1.pahlbak --data-dir /var/lib/pahlawan"
)]
pub struct BackupArgs {
    /// The backup file to write (replaced only once the new one is complete).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  pahlawan restore --from jakarta-1.pahlbak --data-dir /var/lib/pahlawan --hub-url http://hub.internal:8090 --hub-token \"$(cat viewer.jwt)\"\n  pahlawan restore --from jakarta-1.pahlbak --config edge.toml --hub-seq 123456"
)]
pub struct RestoreArgs {
    /// The backup file (from `pahlawan backup` or a scheduled backup).
    #[arg(long)]
    from: PathBuf,
    /// The hub's HTTP address: the restored outbox resumes after the
    /// high-water mark the hub holds for this edge.
    #[arg(long, conflicts_with = "hub_seq")]
    hub_url: Option<String>,
    /// A hub token (viewer or admin) for --hub-url, e.g. from `pahlawan
    /// token issue --for hub --role viewer`.
    #[arg(long, env = "PAHLAWAN_HUB_TOKEN", hide_env_values = true)]
    hub_token: Option<String>,
    /// Trust this CA (PEM) for an HTTPS hub, e.g. certs/ca.crt; without
    /// it, the system's roots.
    #[arg(long, env = "PAHLAWAN_CA_CERT", hide_env_values = true)]
    ca_cert: Option<PathBuf>,
    /// The hub's high-water mark for this edge, when the hub cannot be asked.
    #[arg(long)]
    hub_seq: Option<u64>,
    #[command(flatten)]
    edge: EdgeArgs,
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn bar(what: &'static str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    bar
}

pub async fn take(args: BackupArgs, out: Out) -> anyhow::Result<()> {
    let config = edge_config(&args.edge)?;
    let to = args.to.clone();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000;
    let manifest = tokio::task::spawn_blocking(move || {
        let bar = bar("backup");
        let progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let m = backup::take(&config.data_dir, &to, &config.edge_id, now_ms, &progress);
        bar.finish_and_clear();
        m
    })
    .await
    .context("the backup task")??;
    let bytes = std::fs::metadata(&args.to).map(|m| m.len()).unwrap_or(0);
    let shown = serde_json::json!({
        "file": args.to, "file_bytes": bytes, "manifest": manifest,
    });
    out.show(&shown, |_| {
        fields(&[
            ("backup", args.to.display().to_string()),
            ("edge", manifest.edge_id.clone()),
            ("last outbox seq", manifest.last_seq.to_string()),
            ("integrity", "ok".into()),
            (
                "database",
                format!("{} bytes, compressed to {bytes}", manifest.db_bytes),
            ),
        ])
    })
}

pub async fn restore(args: RestoreArgs, out: Out) -> anyhow::Result<()> {
    let config = edge_config(&args.edge)?;
    let data_dir = config.data_dir.clone();
    let (manifest, _) = backup::open(&args.from)?;
    if manifest.edge_id != config.edge_id {
        anyhow::bail!(
            "{} is a backup of edge {:?}, but this configuration is edge {:?}",
            args.from.display(),
            manifest.edge_id,
            config.edge_id
        );
    }
    let hub_seq = match (args.hub_seq, &args.hub_url) {
        (Some(n), _) => Some(n),
        (None, Some(url)) => {
            let hub = HubAsk {
                url,
                ca_cert: args.ca_cert.as_deref(),
                token: args.hub_token.as_deref(),
            };
            Some(hub_high_water(&hub, &config.edge_id).await?)
        }
        (None, None) if config.hub.is_some() => {
            return Err(exit::usage(
                "this edge syncs with a hub: pass --hub-url (the hub's HTTP address) or --hub-seq N, \
                 so the restored outbox resumes after what the hub already holds",
            ));
        }
        (None, None) => None,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let lock = match edge_node::service::lock_data_dir(&data_dir) {
        Ok(lock) => lock,
        Err(edge_node::StartError::Locked(d)) => anyhow::bail!(
            "an edge is running on {d} (it holds edge.lock): stop it before restoring"
        ),
        Err(e) => return Err(e.into()),
    };
    let from = args.from.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let bar = bar("restore");
        let progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let r = backup::restore(&from, &data_dir, hub_seq, &progress);
        bar.finish_and_clear();
        r
    })
    .await
    .context("the restore task")??;
    drop(lock);
    show_restored(&restored, &args.from, out)
}

fn show_restored(r: &backup::Restored, from: &Path, out: Out) -> anyhow::Result<()> {
    let next = r.published_seq.max(r.manifest.last_seq) + 1;
    let shown = serde_json::json!({
        "from": from, "manifest": r.manifest, "published_seq": r.published_seq,
        "next_seq": next, "kept": r.kept,
    });
    out.show(&shown, |_| {
        fields(&[
            ("restored", from.display().to_string()),
            ("edge", r.manifest.edge_id.clone()),
            ("backup's last seq", r.manifest.last_seq.to_string()),
            ("next outbox seq", next.to_string()),
            (
                "previous database",
                r.kept
                    .as_ref()
                    .map_or_else(|| "none".into(), |k| format!("kept as {}", k.display())),
            ),
        ])
    })
}

/// Where and how to ask the hub.
struct HubAsk<'a> {
    url: &'a str,
    ca_cert: Option<&'a Path>,
    token: Option<&'a str>,
}

/// The hub's high-water mark for `edge_id` (`GET /api/v1/edges`); 0 when
/// the hub has never heard from it.
async fn hub_high_water(hub: &HubAsk<'_>, edge_id: &str) -> anyhow::Result<u64> {
    let base = hub.url.trim_end_matches('/');
    let mut req = crate::client::http_client(hub.ca_cert)?.get(format!("{base}/api/v1/edges"));
    if let Some(token) = hub.token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| exit::unreachable(format!("the hub at {base} did not answer: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(exit::usage(format!(
            "the hub at {base} wants a token: pass --hub-token (pahlawan token issue --for hub --role viewer)"
        )));
    }
    if !status.is_success() {
        anyhow::bail!("the hub at {base} answered {status} to GET /api/v1/edges");
    }
    let items = body["items"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("the hub at {base} sent no edge list"))?;
    Ok(items
        .iter()
        .find(|e| e["edge_id"] == edge_id)
        .and_then(|e| e["high_water"].as_u64())
        .unwrap_or(0))
}
