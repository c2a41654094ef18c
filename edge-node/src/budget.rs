//! The edge's memory budget: what each part may hold at the limits a
//! configuration sets, so an operator can size a box (or lower a limit to
//! fit one) before the city fills it. `pahlawan edge budget` prints it;
//! `edge run` logs its total at start.
//!
//! SQLite's page caches are exact upper bounds (`cache_size`); the rest
//! are the configured counts times a cost per item — measured on a real
//! edge for surplus and recipients, estimated from buffer sizes for
//! connections and streams. A budget, not a guarantee: a description of
//! 2,000 characters costs more than one of 40.

use crate::config::EdgeConfig;

/// What a live (unfinished) surplus costs: the engine's lifecycle state
/// and timers, the read model's snapshot, its pending offers, its
/// idempotency key. Measured: 40,000 live surplus with matching offers
/// grew a real edge by ~80 MiB, SQLite's caches filling included.
pub const BYTES_PER_LIVE_SURPLUS: u64 = 1_400;
/// What a registered recipient costs: the R-tree entry, the matching
/// index's capacity counters, the routing directory's entry. Measured:
/// 100,000 recipients, restarted from SQLite, grew the box build on x86-64
/// from 28.9 to 112 MiB (~870 B each, caches included; BENCHMARKS.md).
pub const BYTES_PER_RECIPIENT: u64 = 1_000;
/// What a registered provider costs (its id in the engine's set).
pub const BYTES_PER_PROVIDER: u64 = 64;
/// An open HTTP connection: hyper's read and write buffers and its task
/// (an estimate from their sizes, not measured).
pub const BYTES_PER_CONNECTION: u64 = 24 * 1024;
/// An SSE offer stream beyond its connection: its receiver and the
/// frames it has not yet written (an estimate).
pub const BYTES_PER_STREAM: u64 = 8 * 1024;
/// An event in a batch the hub link has in flight (encoded, and the row).
pub const BYTES_PER_OUTBOX_EVENT: u64 = 512;
/// A notification waiting in the dispatcher (the message and its target).
pub const BYTES_PER_NOTIFICATION: u64 = 2 * 1024;
/// The binary's touched code, the runtime, the thread stacks, idle:
/// measured idle RSS of the box build on x86-64 (28.9 MiB, BENCHMARKS.md).
pub const BASE_BYTES: u64 = 29 * 1024 * 1024;

/// One part of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub part: &'static str,
    /// The configuration that bounds it, as `key = value` pairs.
    pub limit: String,
    pub bytes: u64,
}

/// Every part of the budget at `cfg`'s limits, largest first is not
/// promised: the order is the one the documentation uses.
pub fn memory_budget(cfg: &EdgeConfig) -> Vec<Part> {
    let s = &cfg.store;
    let mib = |m: u32| u64::from(m) * 1024 * 1024;
    let n = |v: usize| v as u64;
    let conns = n(cfg.http.connections.max_connections);
    let in_flight = n(cfg.matching_pool.workers) + n(cfg.matching_pool.queue);
    let outbox = cfg
        .hub
        .as_ref()
        .map_or(0, |h| n(h.max_in_flight) * n(h.max_batch_events));
    vec![
        Part {
            part: "runtime (code, threads, idle)",
            limit: "-".into(),
            bytes: BASE_BYTES,
        },
        Part {
            part: "SQLite page cache, writer",
            limit: format!("store.writer_cache_mib = {}", s.writer_cache_mib),
            bytes: mib(s.writer_cache_mib),
        },
        Part {
            part: "SQLite page caches, readers",
            limit: format!(
                "store.read_connections = {} × store.reader_cache_mib = {}",
                s.read_connections, s.reader_cache_mib
            ),
            bytes: n(s.read_connections) * mib(s.reader_cache_mib),
        },
        Part {
            part: "live surplus (engine, read model, offers)",
            limit: format!("store.max_live_surplus = {}", s.max_live_surplus),
            bytes: n(s.max_live_surplus) * BYTES_PER_LIVE_SURPLUS,
        },
        Part {
            part: "recipients (R-tree, capacity, directory)",
            limit: format!("store.max_recipients = {}", s.max_recipients),
            bytes: n(s.max_recipients) * BYTES_PER_RECIPIENT,
        },
        Part {
            part: "providers",
            limit: format!("store.max_providers = {}", s.max_providers),
            bytes: n(s.max_providers) * BYTES_PER_PROVIDER,
        },
        Part {
            part: "HTTP connections",
            limit: format!("http.connections.max_connections = {conns}"),
            bytes: conns * BYTES_PER_CONNECTION,
        },
        Part {
            part: "request bodies in flight (matching)",
            limit: format!(
                "(matching_pool.workers + matching_pool.queue) = {in_flight} × http.max_body_bytes = {}",
                cfg.http.max_body_bytes
            ),
            bytes: in_flight * n(cfg.http.max_body_bytes),
        },
        Part {
            part: "SSE offer streams",
            limit: format!("http.max_streams = {}", cfg.http.max_streams),
            bytes: n(cfg.http.max_streams) * BYTES_PER_STREAM,
        },
        Part {
            part: "writer queues (commands waiting)",
            limit: format!(
                "store.queue_capacity + store.background_capacity = {}",
                s.queue_capacity + s.background_capacity
            ),
            // A queued command holds its request (a post: ~1 KiB decoded).
            bytes: n(s.queue_capacity + s.background_capacity) * 1024,
        },
        Part {
            part: "outbox batches in flight to the hub",
            limit: cfg.hub.as_ref().map_or_else(
                || "no [hub]".into(),
                |h| {
                    format!(
                        "hub.max_in_flight = {} × hub.max_batch_events = {}",
                        h.max_in_flight, h.max_batch_events
                    )
                },
            ),
            bytes: outbox * BYTES_PER_OUTBOX_EVENT,
        },
        Part {
            part: "notifications queued",
            limit: format!("notify.max_queue = {}", cfg.notify.max_queue),
            bytes: if cfg.notify.enabled {
                n(cfg.notify.max_queue) * BYTES_PER_NOTIFICATION
            } else {
                0
            },
        },
    ]
}

/// The budget's total.
pub fn total(parts: &[Part]) -> u64 {
    parts.iter().map(|p| p.bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part<'a>(parts: &'a [Part], name: &str) -> &'a Part {
        parts
            .iter()
            .find(|p| p.part.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {parts:?}"))
    }

    #[test]
    fn each_limit_moves_its_part_and_the_total() {
        let defaults = EdgeConfig::default();
        let base = memory_budget(&defaults);
        assert_eq!(
            part(&base, "SQLite page caches, readers").bytes,
            4 * 8 * 1024 * 1024
        );
        let mut small = defaults.clone();
        small.store.max_live_surplus = 100_000;
        small.store.writer_cache_mib = 8;
        small.http.max_streams = 500;
        let less = memory_budget(&small);
        assert_eq!(
            part(&less, "live surplus").bytes,
            100_000 * BYTES_PER_LIVE_SURPLUS
        );
        assert_eq!(part(&less, "SQLite page cache, writer").bytes, 8 << 20);
        assert_eq!(part(&less, "SSE").bytes, 500 * BYTES_PER_STREAM);
        assert!(total(&less) < total(&base));
        assert!(part(&less, "live surplus").limit.contains("100000"));
    }

    #[test]
    fn no_hub_no_outbox_batches_and_notifications_off_cost_nothing() {
        let mut cfg = EdgeConfig {
            hub: None,
            ..EdgeConfig::default()
        };
        cfg.notify.enabled = false;
        let parts = memory_budget(&cfg);
        assert_eq!(part(&parts, "outbox batches").bytes, 0);
        assert_eq!(part(&parts, "notifications").bytes, 0);
    }
}
