//! `pahlawan status`: a running edge's health, version, uptime, sync,
//! queues and disk use (`GET /api/v1/admin/status`).

use clap::Args;
use serde_json::Value;

use super::edge::Target;
use crate::output::{Out, cell, fields};

#[derive(Args)]
#[command(
    after_help = "Example:\n  pahlawan status --data-dir ./data\n  pahlawan status --url http://edge.lan:8080 --token \"$TOKEN\" --json"
)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: StatusArgs, out: Out) -> anyhow::Result<()> {
    let admin = args.target.admin()?;
    let status = admin.get("/admin/status").await?;
    out.show(&status, render)
}

/// The human view: one field a line, in the order an operator reads them.
fn render(s: &Value) -> String {
    let f = |k: &str| cell(&s[k]);
    let hub = if s["hub_enabled"].as_bool() == Some(true) {
        if s["hub_connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "disconnected"
        }
    } else {
        "none configured"
    };
    fields(&[
        ("edge", f("edge_id")),
        ("version", f("version")),
        (
            "health",
            if s["ready"].as_bool() == Some(true) {
                "ready"
            } else {
                "NOT READY"
            }
            .into(),
        ),
        (
            "uptime",
            format!("{} s (since {})", f("uptime_seconds"), f("started_at")),
        ),
        ("hub", hub.into()),
        ("committed seq", f("committed_seq")),
        ("acked seq", f("acked_seq")),
        ("outbox backlog", format!("{} events", f("outbox_backlog"))),
        (
            "replication lag",
            format!("{} s", f("replication_lag_seconds")),
        ),
        ("last sync", f("last_sync_at")),
        ("lease epoch", f("lease_epoch")),
        ("live surplus", f("live_surplus")),
        ("dlq size", f("dlq_size")),
        ("data dir", format!("{} bytes", f("data_dir_bytes"))),
    ])
}
