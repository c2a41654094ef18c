//! `pahlawan recipients channels add|list|remove`: a recipient's
//! notification channels on a running edge — a webhook (its signing secret
//! is printed this once), an SMS or WhatsApp number through the edge's
//! gateway (`/api/v1/recipients/{id}/channels`).

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use super::edge::Target;
use super::subject::parse_uuid;
use crate::output::{Out, cell, fields, table};

#[derive(Subcommand)]
pub enum ChannelsCommand {
    /// Register a channel: every offer made to the recipient is sent there.
    /// A webhook's signing secret is printed this once.
    #[command(
        after_help = "Examples:\n  pahlawan recipients channels add 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --webhook https://foodbank.example/pahlawan --data-dir ./data\n  pahlawan recipients channels add 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --sms +6281234567890 --data-dir ./data\n  (--sms and --whatsapp need the edge's gateway, [notify.sms])"
    )]
    Add(AddArgs),
    /// The recipient's channels, oldest first (numbers masked, never a secret).
    #[command(
        after_help = "Examples:\n  pahlawan recipients channels list 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data\n  pahlawan recipients channels list 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f --json --data-dir ./data"
    )]
    List {
        /// The recipient's id.
        recipient: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a channel: nothing more is sent to it.
    #[command(
        after_help = "Example:\n  pahlawan recipients channels remove 0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Remove {
        /// The recipient's id.
        recipient: String,
        /// The channel id `channels list` shows.
        channel: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
#[command(group(ArgGroup::new("channel").required(true).args(["webhook", "sms", "whatsapp"])))]
pub struct AddArgs {
    /// The recipient's id.
    recipient: String,
    /// A webhook: offers are POSTed there as JSON, signed the Standard
    /// Webhooks way (https://…; http:// only on loopback).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// A phone number (E.164, +62…) for text messages; the recipient
    /// answers YA n or TIDAK n.
    #[arg(long, value_name = "PHONE")]
    sms: Option<String>,
    /// A phone number (E.164, +62…) for WhatsApp messages.
    #[arg(long, value_name = "PHONE")]
    whatsapp: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: ChannelsCommand, out: Out) -> anyhow::Result<()> {
    match command {
        ChannelsCommand::Add(args) => add(args, out).await,
        ChannelsCommand::List { recipient, target } => {
            let id = parse_uuid(&recipient, "a recipient id")?;
            let listed = target
                .admin()?
                .get(&format!("/recipients/{id}/channels"))
                .await?;
            out.show(&listed, render_list)
        }
        ChannelsCommand::Remove {
            recipient,
            channel,
            target,
        } => {
            let id = parse_uuid(&recipient, "a recipient id")?;
            let channel = parse_uuid(&channel, "a channel id")?;
            target
                .admin()?
                .delete(&format!("/recipients/{id}/channels/{channel}"))
                .await?;
            let removed = json!({ "id": channel, "recipient_id": id, "removed": true });
            out.show(&removed, |r| format!("removed {}\n", cell(&r["id"])))
        }
    }
}

/// The channel on stdout; for a webhook, its secret too, and on stderr
/// that it is shown this once.
async fn add(args: AddArgs, out: Out) -> anyhow::Result<()> {
    let id = parse_uuid(&args.recipient, "a recipient id")?;
    // clap's group guarantees exactly one of the three.
    let body = match (args.webhook, args.sms, args.whatsapp) {
        (Some(url), _, _) => json!({ "kind": "webhook", "url": url }),
        (None, Some(phone), _) => json!({ "kind": "sms", "phone": phone }),
        (None, None, Some(phone)) => json!({ "kind": "whatsapp", "phone": phone }),
        (None, None, None) => {
            return Err(crate::exit::usage(
                "name the channel: --webhook URL, --sms PHONE or --whatsapp PHONE",
            ));
        }
    };
    let created = args
        .target
        .admin()?
        .post(&format!("/recipients/{id}/channels"), &body)
        .await?;
    let secret = created["secret"].as_str().unwrap_or_default();
    if !secret.is_empty() {
        eprintln!(
            "The secret is shown this once: keep it to verify each delivery's webhook-signature."
        );
    }
    out.show(&created, render_one)
}

/// A channel's field as a cell: empty (a webhook's phone, a phone's URL) as `-`.
fn shown(v: &Value) -> String {
    match v.as_str() {
        Some("") => "-".into(),
        _ => cell(v),
    }
}

fn render_one(c: &Value) -> String {
    let mut pairs: Vec<(&str, String)> =
        ["id", "recipient_id", "kind", "url", "phone", "created_at"]
            .iter()
            .map(|k| (*k, shown(&c[*k])))
            .collect();
    if c["secret"].as_str().is_some_and(|s| !s.is_empty()) {
        pairs.push(("secret", cell(&c["secret"])));
    }
    fields(&pairs)
}

fn render_list(l: &Value) -> String {
    let items = l["items"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            ["id", "kind", "phone", "created_at", "url"]
                .iter()
                .map(|k| shown(&c[*k]))
                .collect()
        })
        .collect();
    table(&["ID", "KIND", "PHONE", "CREATED", "URL"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_prints_whatever_kind_url_and_phone_come_back() {
        let listed = json!({"items": [
            {"id": "a", "recipient_id": "r", "kind": "webhook", "url": "https://x.example/h",
             "phone": "", "created_at": "2025-01-01T00:00:00Z"},
            {"id": "b", "recipient_id": "r", "kind": "web_push", "url": "https://push.example/p",
             "phone": "", "created_at": "2025-01-02T00:00:00Z"},
            {"id": "c", "recipient_id": "r", "kind": "sms", "url": "",
             "phone": "+62•••••••890", "created_at": "2025-01-03T00:00:00Z"},
        ]});
        let text = render_list(&listed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].contains("webhook") && lines[1].ends_with("https://x.example/h"));
        assert!(lines[2].contains("web_push") && lines[2].ends_with("https://push.example/p"));
        assert!(lines[3].contains("+62•••••••890") && lines[3].ends_with('-'));
        let one = render_one(
            &json!({"id": "a", "kind": "sms", "url": "", "phone": "+62•••890",
                                     "secret": ""}),
        );
        assert!(!one.contains("secret"), "{one}");
        assert!(one.contains("url           -"), "{one}");
    }
}
