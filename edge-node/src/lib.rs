//! Pahlawan Pangan's city edge node: it owns its S2 cells, keeps its state in
//! SQLite (WAL) with an in-memory R-tree, matches surplus food to recipients
//! locally and records every change in a transactional outbox.
//!
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod api;
pub mod auth;
pub mod budget;
pub mod cells;
pub mod clock;
pub mod commands;
pub mod config;
pub mod housekeeping;
pub mod ids;
pub mod keyfiles;
pub mod metrics;
pub mod notify;
pub mod pii;
pub mod pool;
pub mod ports;
pub mod publish;
pub mod ratelimit;
pub mod read_model;
pub mod routing;
pub mod service;
pub mod standard_webhooks;
pub mod store;
pub mod sync;
pub mod systemd;
pub mod twilio;
pub mod web_push;

pub use config::EdgeConfig;
pub use ports::EdgeError;
pub use service::{Edge, StartError, StartOptions};
