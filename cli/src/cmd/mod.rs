//! The verbs, one module per group: each defines its clap arguments and a
//! `run` that does the work, printing through [`crate::output`] and failing
//! with errors [`crate::exit`] classifies. A new group is a module, a
//! variant of [`Command`] and an arm of [`run`].

pub mod backup;
pub mod cells;
pub mod certs;
pub mod channels;
pub mod config;
pub mod dlq;
pub mod docs;
pub mod edge;
pub mod hub;
pub mod import;
pub mod keys;
pub mod kiosk;
pub mod registry;
pub mod status;
pub mod subject;
pub mod surplus;
pub mod tools;

use clap::Subcommand;

use crate::output::Out;

#[derive(Subcommand)]
pub enum Command {
    /// Run or inspect a city edge node.
    Edge {
        #[command(subcommand)]
        command: edge::EdgeCommand,
    },
    /// A running edge's health, version, uptime, sync, queues and disk use.
    Status(status::StatusArgs),
    /// The recipients (NGOs, food banks, shelters) a running edge holds,
    /// and their notification channels.
    Recipients {
        #[command(subcommand)]
        command: registry::RecipientsCommand,
    },
    /// The providers (restaurants, hotels, groceries) a running edge holds.
    Providers {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
    /// The surplus a running edge holds.
    Surplus {
        #[command(subcommand)]
        command: surplus::SurplusCommand,
    },
    /// The dead-letter queue of a running edge: list, retry, resolve by hand.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The S2 cells a running edge owns and its lease epoch.
    Cells {
        #[command(subcommand)]
        command: cells::CellsCommand,
    },
    /// Back up a running edge's database: consistent, checked, compressed.
    Backup(backup::BackupArgs),
    /// Restore a backup into a stopped edge's data directory.
    Restore(backup::RestoreArgs),
    /// An edge's effective configuration and where each value came from.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Shell completions, generated from these definitions.
    Completions(docs::CompletionsArgs),
    /// The man page (roff), generated from these definitions.
    Man(docs::ManArgs),
    /// The thundering-herd demo: an in-process edge, N restaurants posting
    /// within one simulated minute, recipients answering by a seeded policy.
    #[command(
        after_help = "Example:\n  pahlawan simulate --providers 10000 --recipients 500 --seed 42"
    )]
    Simulate(tools::SimulateArgs),
    /// Load-test `POST /api/v1/surplus` over real HTTP, beside an empty axum
    /// handler and raw SQLite inserts measured in the same run.
    #[command(after_help = "Example:\n  pahlawan bench --duration-secs 10 --concurrency 64")]
    Bench(tools::BenchArgs),
    /// Measure edge → hub sync: events/s into PostgreSQL, and replication
    /// lag while the edge serves a steady load (needs a PostgreSQL).
    #[command(
        after_help = "Example:\n  pahlawan bench-sync --database-url postgres:///bench --edges 1,10"
    )]
    BenchSync(tools::BenchSyncArgs),
    /// Measure the dashboard's fleet API on a hub holding a million events:
    /// req/s and p50/p95/p99 per endpoint beside /healthz, and EXPLAIN
    /// ANALYZE of each statement (needs an empty PostgreSQL).
    #[command(
        after_help = "Example:\n  pahlawan bench-fleet --database-url postgres:///bench --events 1000000"
    )]
    BenchFleet(tools::BenchFleetArgs),
    /// Run or inspect the cloud hub.
    Hub {
        #[command(subcommand)]
        command: hub::HubCommand,
    },
    /// The hub's certificate authority and edge certificates.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// An edge's key material: token signing keys and the PII keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Bearer tokens for an edge's API.
    Token {
        #[command(subcommand)]
        command: keys::TokenCommand,
    },
    /// GDPR: export or erase a provider's or recipient's data on a running edge.
    Subject {
        #[command(subcommand)]
        command: subject::SubjectCommand,
    },
    /// The food bank's kiosk page: pair one, list and revoke paired kiosks
    /// on a running edge.
    Kiosk {
        #[command(subcommand)]
        command: kiosk::KioskCommand,
    },
}

impl Command {
    /// The demo and the benchmarks report their own figures; their logs
    /// are kept to errors.
    pub fn is_quiet(&self) -> bool {
        !matches!(self, Command::Edge { .. } | Command::Hub { .. })
    }
}

pub async fn run(command: Command, out: Out) -> anyhow::Result<()> {
    match command {
        Command::Edge { command } => edge::run(command).await,
        Command::Status(args) => status::run(args, out).await,
        Command::Recipients { command } => registry::recipients(command, out).await,
        Command::Providers { command } => {
            registry::run(registry::Kind::Providers, command, out).await
        }
        Command::Surplus { command } => surplus::run(command, out).await,
        Command::Dlq { command } => dlq::run(command, out).await,
        Command::Cells { command } => cells::run(command, out).await,
        Command::Backup(args) => backup::take(args, out).await,
        Command::Restore(args) => backup::restore(args, out).await,
        Command::Config { command } => config::run(command, out),
        Command::Completions(args) => {
            docs::completions(&args);
            Ok(())
        }
        Command::Man(args) => docs::man(&args),
        Command::Simulate(args) => tools::simulate(args).await,
        Command::Bench(args) => tools::bench(args).await,
        Command::BenchSync(args) => tools::bench_sync(args).await,
        Command::BenchFleet(args) => tools::bench_fleet(args).await,
        Command::Hub { command } => hub::run(command).await,
        Command::Certs { command } => certs::run(command),
        Command::Keys { command } => keys::keys(command).await,
        Command::Token { command } => keys::token(command),
        Command::Subject { command } => subject::run(command).await,
        Command::Kiosk { command } => kiosk::run(command, out).await,
    }
}
