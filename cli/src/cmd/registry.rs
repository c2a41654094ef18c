//! `pahlawan recipients …` and `pahlawan providers …`: the registries of a
//! running edge — pages of the listing (`GET /api/v1/admin/{kind}`), one
//! entry with its contact data (`GET /api/v1/{kind}/{id}`, audited); a
//! recipient's notification channels are [`super::channels`].

use clap::{Args, Subcommand};
use serde_json::Value;

use super::edge::Target;
use super::subject::parse_uuid;
use crate::exit;
use crate::output::{Out, cell, fields, table};

/// Which registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Recipients,
    Providers,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Recipients => "recipients",
            Kind::Providers => "providers",
        }
    }
}

/// `pahlawan recipients …`: the registry's verbs, and the channels only
/// recipients have.
#[derive(Subcommand)]
pub enum RecipientsCommand {
    #[command(flatten)]
    Registry(RegistryCommand),
    /// A recipient's notification channels: webhooks, SMS and WhatsApp
    /// numbers that every offer made to it is sent to.
    Channels {
        #[command(subcommand)]
        command: super::channels::ChannelsCommand,
    },
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Register one entry (recipients also need --capacity-kg-per-day and --food-types).
    #[command(
        after_help = "Examples:\n  pahlawan recipients add --name 'Bank Makanan' --lat -6.21 --lon 106.82 --capacity-kg-per-day 500 \\\n    --food-types prepared_meals,bakery --phone '+62 21 555 9876' --email b@example.org --data-dir ./data\n  pahlawan providers add --name Warung --lat -6.2 --lon 106.816 --phone '+62 21 555 1234' --email w@example.org --data-dir ./data"
    )]
    Add(super::import::AddArgs),
    /// Register every row of a CSV file; bad rows are reported with their
    /// line numbers and nothing is imported unless --skip-bad.
    #[command(
        after_help = "Examples:\n  pahlawan recipients import food-banks.csv --data-dir ./data\n  (header: name,lat,lon,capacity_kg_per_day,accepted_food_types,is_fallback,contact_phone,contact_email;\n   accepted_food_types separated by ';')\n  pahlawan providers import restaurants.csv --skip-bad --data-dir ./data\n  (header: name,lat,lon,contact_phone,contact_email)"
    )]
    Import(super::import::ImportArgs),
    /// Every entry as CSV on stdout (no contact data).
    #[command(
        after_help = "Example:\n  pahlawan recipients export --data-dir ./data > recipients.csv"
    )]
    Export(super::import::ExportArgs),
    /// List entries in id order, a page at a time (--all follows every page).
    #[command(
        after_help = "Examples:\n  pahlawan recipients list --data-dir ./data\n  pahlawan providers list --all --json --data-dir ./data"
    )]
    List(ListArgs),
    /// One entry, contact data included (the read is audited).
    #[command(
        after_help = "Example:\n  pahlawan recipients show 0190c3e2-7b1a-7c3d-9e4f-5a6b7c8d9e0f --data-dir ./data"
    )]
    Show {
        /// The recipient's or provider's id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// Entries per page, 1 to 500.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this id (a page's `next`).
    #[arg(long)]
    after: Option<String>,
    /// Follow `next` to the last page.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    target: Target,
}

pub async fn recipients(command: RecipientsCommand, out: Out) -> anyhow::Result<()> {
    match command {
        RecipientsCommand::Registry(command) => run(Kind::Recipients, command, out).await,
        RecipientsCommand::Channels { command } => super::channels::run(command, out).await,
    }
}

pub async fn run(kind: Kind, command: RegistryCommand, out: Out) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Add(args) => super::import::add(kind, args, out).await,
        RegistryCommand::Import(args) => super::import::import(kind, args, out).await,
        RegistryCommand::Export(args) => super::import::export(kind, args).await,
        RegistryCommand::List(args) => list(kind, args, out).await,
        RegistryCommand::Show { id, target } => {
            let id = parse_uuid(&id, "an id")?;
            let entry = target
                .admin()?
                .get(&format!("/{}/{id}", kind.path()))
                .await?;
            out.show(&entry, |e| render_one(kind, e))
        }
    }
}

async fn list(kind: Kind, args: ListArgs, out: Out) -> anyhow::Result<()> {
    if !(1..=500).contains(&args.limit) {
        return Err(exit::usage("--limit must be between 1 and 500"));
    }
    let mut after = match &args.after {
        Some(a) => Some(parse_uuid(a, "an id")?),
        None => None,
    };
    let admin = args.target.admin()?;
    let mut items = Vec::new();
    let next = loop {
        let mut path = format!("/admin/{}?limit={}", kind.path(), args.limit);
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let page = admin.get(&path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        let next = page["next"]
            .as_str()
            .and_then(|s| uuid::Uuid::try_parse(s).ok());
        match next {
            Some(n) if args.all => after = Some(n),
            _ => break next,
        }
    };
    let page = serde_json::json!({ "items": items, "next": next });
    out.show(&page, |p| render_list(kind, p))
}

fn render_list(kind: Kind, page: &Value) -> String {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let (header, rows): (&[&str], Vec<Vec<String>>) = match kind {
        Kind::Recipients => (
            &[
                "ID",
                "NAME",
                "CELL",
                "CAPACITY_KG",
                "FALLBACK",
                "FOOD_TYPES",
            ],
            items
                .iter()
                .map(|r| {
                    [
                        "id",
                        "name",
                        "cell",
                        "capacity_kg_per_day",
                        "is_fallback",
                        "accepted_food_types",
                    ]
                    .map(|k| cell(&r[k]))
                    .into()
                })
                .collect(),
        ),
        Kind::Providers => (
            &["ID", "NAME", "LAT", "LON"],
            items
                .iter()
                .map(|p| ["id", "name", "lat", "lon"].map(|k| cell(&p[k])).into())
                .collect(),
        ),
    };
    let mut text = table(header, &rows);
    if let Some(next) = page["next"].as_str() {
        text.push_str(&format!("more: --after {next}\n"));
    }
    text
}

fn render_one(kind: Kind, e: &Value) -> String {
    let keys: &[&str] = match kind {
        Kind::Recipients => &[
            "id",
            "name",
            "lat",
            "lon",
            "cell",
            "capacity_kg_per_day",
            "accepted_food_types",
            "is_fallback",
            "contact_phone",
            "contact_email",
        ],
        Kind::Providers => &["id", "name", "lat", "lon", "contact_phone", "contact_email"],
    };
    let pairs: Vec<(&str, String)> = keys.iter().map(|k| (*k, cell(&e[*k]))).collect();
    fields(&pairs)
}
