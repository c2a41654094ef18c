//! `pahlawan cells list|show`: the S2 cells an edge owns and the lease
//! epoch it holds from the hub (`GET /api/v1/admin/cells`).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::edge::Target;
use crate::output::{Out, cell, fields, table};

#[derive(Subcommand)]
pub enum CellsCommand {
    /// The owned cells, their lease (held, or conflict: another edge holds
    /// it and the hub fences our events there) and the lease epoch.
    #[command(after_help = "Example:\n  pahlawan cells list --data-dir ./data")]
    List(CellsArgs),
    /// One owned cell.
    #[command(after_help = "Example:\n  pahlawan cells show 2e69 --data-dir ./data")]
    Show {
        /// The S2 cell token.
        cell: String,
        #[command(flatten)]
        args: CellsArgs,
    },
}

#[derive(Args)]
pub struct CellsArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: CellsCommand, out: Out) -> anyhow::Result<()> {
    match command {
        CellsCommand::List(args) => {
            let cells = args.target.admin()?.get("/admin/cells").await?;
            out.show(&cells, render_list)
        }
        CellsCommand::Show { cell: token, args } => {
            let all = args.target.admin()?.get("/admin/cells").await?;
            let one = all["cells"]
                .as_array()
                .and_then(|cells| cells.iter().find(|c| c["token"] == token.as_str()))
                .ok_or_else(|| anyhow::anyhow!("this edge does not own cell {token:?}"))?;
            let shown = serde_json::json!({
                "token": one["token"], "lease": one["lease"], "level": all["level"],
                "lease_epoch": all["lease_epoch"], "hub_connected": all["hub_connected"],
            });
            out.show(&shown, |c| {
                fields(&[
                    ("cell", cell(&c["token"])),
                    ("level", cell(&c["level"])),
                    ("lease", cell(&c["lease"])),
                    ("lease epoch", cell(&c["lease_epoch"])),
                    ("hub connected", cell(&c["hub_connected"])),
                ])
            })
        }
    }
}

fn render_list(c: &Value) -> String {
    let rows: Vec<Vec<String>> = c["cells"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| vec![cell(&x["token"]), cell(&x["lease"])])
        .collect();
    format!(
        "level {}, lease epoch {}, hub connected: {}\n{}",
        cell(&c["level"]),
        cell(&c["lease_epoch"]),
        cell(&c["hub_connected"]),
        table(&["CELL", "LEASE"], &rows)
    )
}
