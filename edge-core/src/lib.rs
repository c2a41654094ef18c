//! The edge's decision logic: synchronous, deterministic, no I/O, no clock.
//! Every function takes the current time as an argument.
//!
//! - [`index`]: the recipient registry and its R-tree.
//! - [`matching`]: candidates → feasible → scored → ranked.
//! - [`lifecycle`]: one surplus's state machine.
//! - [`engine`]: all live surplus together, their timers, and the policy that
//!   ties matching to the lifecycle (rematch, dead-letter queue, fallback).
//! - [`breaker`]: the routing service's circuit breaker (time passed in).
//! - [`idempotency`]: `Idempotency-Key` replay decisions.
//! - [`kiosk`]: pairing codes, pairing attempts and device credentials.
//! - [`notify`]: which committed events are told to whom, and each
//!   delivery's schedule (backoff, deadline, breaker, bounds, cursor).
//! - [`neighbours`]: which entries of the hub's registry feed change the
//!   registry, and which are repeats.

pub mod breaker;
pub mod engine;
pub mod idempotency;
pub mod index;
pub mod kiosk;
pub mod lifecycle;
pub mod matching;
pub mod neighbours;
pub mod notify;
