//! `pahlawan kiosk pair|list|revoke`: the food bank's kiosk page on a
//! running edge — a one-time pairing code (and its QR code), the paired
//! kiosks, and revoking one (`/api/v1/kiosk/…`).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::edge::Target;
use super::subject::parse_uuid;
use crate::output::{Out, cell, table};

#[derive(Subcommand)]
pub enum KioskCommand {
    /// Print a one-time code (and its QR code) that pairs a kiosk page with
    /// a recipient; it is valid for a few minutes (`kiosk.code_ttl_secs`).
    #[command(
        after_help = "Example:\n  pahlawan kiosk pair --recipient 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --kiosk-url https://edge.local:8443 --data-dir ./data"
    )]
    Pair(PairArgs),
    /// The paired kiosks, newest first.
    #[command(after_help = "Example:\n  pahlawan kiosk list --data-dir ./data")]
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a kiosk: its cookie stops working at once.
    #[command(
        after_help = "Example:\n  pahlawan kiosk revoke 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Revoke {
        /// The device id `kiosk list` shows.
        device: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct PairArgs {
    /// The recipient (food bank) the kiosk acts for.
    #[arg(long)]
    recipient: String,
    /// The address the kiosk reaches the edge at, for the QR code's link
    /// (default: the --url, or the configuration's listen address).
    #[arg(long)]
    kiosk_url: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: KioskCommand, out: Out) -> anyhow::Result<()> {
    match command {
        KioskCommand::Pair(args) => pair(args, out).await,
        KioskCommand::List { target } => {
            let listed = target.admin()?.get("/kiosk/devices").await?;
            out.show(&listed, render_list)
        }
        KioskCommand::Revoke { device, target } => {
            let id = parse_uuid(&device, "a device id")?;
            let revoked = target
                .admin()?
                .post(
                    &format!("/kiosk/devices/{id}/revoke"),
                    &serde_json::json!({}),
                )
                .await?;
            out.show(&revoked, |d| format!("revoked {}\n", cell(&d["id"])))
        }
    }
}

/// The code alone on stdout (for scripts); how to use it, the QR code of
/// the page's link `…/kiosk#code=…` and the link itself on stderr.
async fn pair(args: PairArgs, out: Out) -> anyhow::Result<()> {
    let id = parse_uuid(&args.recipient, "a recipient id (--recipient)")?;
    let admin = args.target.admin()?;
    let paired = admin
        .post(
            "/kiosk/pairings",
            &serde_json::json!({ "recipient_id": id }),
        )
        .await?;
    let code = paired["code"].as_str().unwrap_or_default();
    let expires = paired["expires_at"].as_str().unwrap_or_default();
    let page = args.kiosk_url.unwrap_or_else(|| admin.base().to_string());
    let link = format!("{}/kiosk#code={code}", page.trim_end_matches('/'));
    eprintln!("Type this code on the kiosk page ({link}) before {expires}, or scan:");
    eprintln!("{}", qr(&link)?);
    out.show(&paired, |_| format!("{code}\n"))
}

fn render_list(l: &Value) -> String {
    let items = l["items"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            ["id", "recipient_id", "status", "expires_at", "label"]
                .iter()
                .map(|k| cell(&d[*k]))
                .collect()
        })
        .collect();
    table(
        &["DEVICE", "RECIPIENT", "STATUS", "EXPIRES", "LABEL"],
        &rows,
    )
}

/// The QR code of `text` for a terminal: two rows of modules per line.
fn qr(text: &str) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("making the QR code: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}
