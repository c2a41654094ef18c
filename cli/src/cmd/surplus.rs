//! `pahlawan surplus list|show`: the surplus a running edge holds — all of
//! it by status (`GET /api/v1/admin/surplus`), or near a point
//! (`GET /api/v1/surplus?lat=&lon=&radius_km=`).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::edge::Target;
use super::subject::parse_uuid;
use crate::exit;
use crate::output::{Out, cell, fields, table};

#[derive(Subcommand)]
pub enum SurplusCommand {
    /// Surplus held in memory (unfinished, and finished within the recent
    /// window): oldest first, or nearest first with --near.
    #[command(
        after_help = "Examples:\n  pahlawan surplus list --status offered --data-dir ./data\n  pahlawan surplus list --near -6.2,106.816 --radius-km 5 --data-dir ./data"
    )]
    List(ListArgs),
    /// One surplus.
    #[command(
        after_help = "Example:\n  pahlawan surplus show 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Show {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this status: available, offered, claimed, picked_up, delivered,
    /// expired or dead_lettered.
    #[arg(long)]
    status: Option<String>,
    /// LAT,LON: list near this point, nearest first.
    #[arg(long, allow_hyphen_values = true)]
    near: Option<String>,
    /// With --near: how far to look (default: the edge's matching radius).
    #[arg(long, requires = "near")]
    radius_km: Option<f64>,
    /// At most this many, 1 to 500.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: SurplusCommand, out: Out) -> anyhow::Result<()> {
    match command {
        SurplusCommand::List(args) => list(args, out).await,
        SurplusCommand::Show { id, target } => {
            let id = parse_uuid(&id, "a surplus id")?;
            let s = target.admin()?.get(&format!("/surplus/{id}")).await?;
            out.show(&s, render_one)
        }
    }
}

/// `LAT,LON` in degrees.
fn parse_point(s: &str) -> anyhow::Result<(f64, f64)> {
    let bad = || {
        exit::usage(format!(
            "--near {s:?}: expected LAT,LON in degrees, e.g. -6.2,106.816"
        ))
    };
    let (lat, lon) = s.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)) {
        return Err(bad());
    }
    Ok((lat, lon))
}

async fn list(args: ListArgs, out: Out) -> anyhow::Result<()> {
    if !(1..=500).contains(&args.limit) {
        return Err(exit::usage("--limit must be between 1 and 500"));
    }
    let mut query = format!("limit={}", args.limit);
    if let Some(s) = &args.status {
        let status: sync_protocol::SurplusStatus = s
            .parse()
            .map_err(|e| exit::usage(format!("--status {s:?}: {e}")))?;
        query.push_str(&format!("&status={}", status.as_str()));
    }
    let path = match &args.near {
        Some(p) => {
            let (lat, lon) = parse_point(p)?;
            query.push_str(&format!("&lat={lat}&lon={lon}"));
            if let Some(r) = args.radius_km {
                query.push_str(&format!("&radius_km={r}"));
            }
            format!("/surplus?{query}")
        }
        None => format!("/admin/surplus?{query}"),
    };
    let listed = args.target.admin()?.get(&path).await?;
    out.show(&listed, render_list)
}

pub fn render_list(l: &Value) -> String {
    let items = l["items"].as_array().cloned().unwrap_or_default();
    let near = items
        .first()
        .is_some_and(|i| i.get("distance_km").is_some());
    let mut header = vec![
        "ID",
        "STATUS",
        "FOOD_TYPE",
        "KG",
        "EXPIRES_AT",
        "OFFERED_TO",
    ];
    if near {
        header.push("KM");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            let mut row: Vec<String> = ["id", "status", "food_type", "quantity_kg", "expires_at"]
                .map(|k| cell(&s[k]))
                .into();
            row.push(cell(&s["offer"]["recipient_id"]));
            if near {
                row.push(format!("{:.2}", s["distance_km"].as_f64().unwrap_or(0.0)));
            }
            row
        })
        .collect();
    table(&header, &rows)
}

fn render_one(s: &Value) -> String {
    let keys = [
        "id",
        "provider_id",
        "status",
        "version",
        "food_type",
        "quantity_kg",
        "description",
        "lat",
        "lon",
        "cell",
        "posted_at",
        "expires_at",
        "updated_at",
        "claimed_by",
        "delivered_kg",
    ];
    let mut pairs: Vec<(&str, String)> = keys.iter().map(|k| (*k, cell(&s[*k]))).collect();
    pairs.push(("offered_to", cell(&s["offer"]["recipient_id"])));
    fields(&pairs)
}
