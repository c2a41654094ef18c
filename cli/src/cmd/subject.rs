//! `pahlawan subject export|erase`: GDPR, against a running edge.

use clap::{Args, Subcommand};

use super::edge::Target;
use crate::exit;

#[derive(Subcommand)]
pub enum SubjectCommand {
    /// Print everything the edge holds on a provider or recipient (JSON).
    #[command(
        after_help = "Example:\n  pahlawan subject export 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Export(SubjectArgs),
    /// Erase a provider's or recipient's name and contact data; its surplus
    /// and delivered kilograms stay.
    #[command(
        after_help = "Example:\n  pahlawan subject erase 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Erase(SubjectArgs),
}

#[derive(Args)]
pub struct SubjectArgs {
    /// The provider or recipient id.
    id: String,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: SubjectCommand) -> anyhow::Result<()> {
    let (args, erase) = match command {
        SubjectCommand::Export(a) => (a, false),
        SubjectCommand::Erase(a) => (a, true),
    };
    let id = parse_uuid(&args.id, "a provider or recipient id")?;
    let admin = args.target.admin()?;
    let body = if erase {
        admin
            .post(&format!("/subjects/{id}/erase"), &serde_json::json!({}))
            .await?
    } else {
        admin.get(&format!("/subjects/{id}/export")).await?
    };
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// A hyphenated UUID argument, or a usage error naming what it should be.
pub fn parse_uuid(s: &str, what: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::try_parse(s)
        .ok()
        .filter(|_| s.len() == 36)
        .ok_or_else(|| exit::usage(format!("{s:?} is not {what} (a UUID)")))
}
