//! `pahlawan dlq list|retry|resolve`: the dead-letter queue of a running
//! edge — surplus nobody could be matched to (`/api/v1/admin/dlq`).

use clap::{Args, Subcommand};

use super::edge::Target;
use super::subject::parse_uuid;
use crate::exit;
use crate::output::Out;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// The dead-lettered surplus, oldest posted first.
    #[command(after_help = "Example:\n  pahlawan dlq list --data-dir ./data")]
    List(ListArgs),
    /// Match a dead-lettered surplus again now (nobody offered it before is
    /// offered it again); it goes back into the queue if nobody fits.
    #[command(
        after_help = "Example:\n  pahlawan dlq retry 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Retry {
        /// The surplus id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Offer a dead-lettered surplus to a recipient you choose (radius, food
    /// type and capacity are your call); they accept or decline as usual.
    #[command(
        after_help = "Example:\n  pahlawan dlq resolve 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --to 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Resolve {
        /// The surplus id.
        id: String,
        /// The recipient to offer it to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// At most this many, 1 to 500.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: DlqCommand, out: Out) -> anyhow::Result<()> {
    let shown = match command {
        DlqCommand::List(args) => {
            if !(1..=500).contains(&args.limit) {
                return Err(exit::usage("--limit must be between 1 and 500"));
            }
            let listed = args
                .target
                .admin()?
                .get(&format!("/admin/dlq?limit={}", args.limit))
                .await?;
            return out.show(&listed, super::surplus::render_list);
        }
        DlqCommand::Retry { id, target } => {
            let id = parse_uuid(&id, "a surplus id")?;
            target
                .admin()?
                .post(&format!("/admin/dlq/{id}/retry"), &serde_json::json!({}))
                .await?
        }
        DlqCommand::Resolve { id, to, target } => {
            let id = parse_uuid(&id, "a surplus id")?;
            let to = parse_uuid(&to, "a recipient id (--to)")?;
            target
                .admin()?
                .post(
                    &format!("/admin/dlq/{id}/resolve"),
                    &serde_json::json!({ "recipient_id": to }),
                )
                .await?
        }
    };
    out.show(&shown, |s| {
        format!(
            "{} is {} (version {}){}\n",
            crate::output::cell(&s["id"]),
            crate::output::cell(&s["status"]),
            crate::output::cell(&s["version"]),
            s["offer"]["recipient_id"]
                .as_str()
                .map(|r| format!(", offered to {r}"))
                .unwrap_or_default()
        )
    })
}
