//! `pahlawan config show`: an edge's effective configuration, each setting
//! with where its value came from — the built-in default, the TOML file,
//! a `PAHLAWAN_EDGE_*` variable, or a flag of this command.

use clap::Subcommand;
use serde_json::{Value, json};

use super::edge::EdgeArgs;
use crate::output::{Out, cell, table};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Every setting, its value and its source (default, file, env or flag).
    #[command(
        after_help = "Example:\n  PAHLAWAN_EDGE_MATCHING__RADIUS_KM=10 pahlawan config show --config edge.toml --data-dir /var/lib/pahlawan"
    )]
    Show(EdgeArgs),
}

pub fn run(command: ConfigCommand, out: Out) -> anyhow::Result<()> {
    let ConfigCommand::Show(args) = command;
    let (_, sourced) = edge_node::EdgeConfig::load_with_sources(args.config.as_deref())?;
    let flags: Vec<(&str, Value)> = [
        args.data_dir
            .as_ref()
            .map(|d| ("data_dir", json!(d.display().to_string()))),
        args.listen.map(|l| ("listen", json!(l.to_string()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let settings: Vec<Value> = sourced
        .into_iter()
        .map(
            |(key, value, source)| match flags.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => json!({"key": key, "value": v, "source": "flag"}),
                None => json!({"key": key, "value": value, "source": source.as_str()}),
            },
        )
        .collect();
    let shown = json!({ "settings": settings });
    out.show(&shown, |s| {
        let rows: Vec<Vec<String>> = s["settings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| vec![cell(&x["key"]), cell(&x["value"]), cell(&x["source"])])
            .collect();
        table(&["KEY", "VALUE", "SOURCE"], &rows)
    })
}
