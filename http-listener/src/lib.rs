//! The HTTP listener the edge and the hub serve their axum apps with: caps
//! on connections at accept time (a total derived from the open-file limit,
//! and one per client address), header, body and idle timeouts, HTTPS with
//! a certificate reloaded when its files change, HSTS, and each request's
//! [`ConnInfo`] (HTTPS or loopback: may it carry credentials?); and what
//! pages and responses share ([`page`]: security headers, embedded assets,
//! cookies).
//!
//! One client must not lock a city out: a connection that holds a slot
//! without sending a header loses it after `header_read_timeout_secs`; one
//! address can hold at most `max_connections_per_address`; the process
//! never runs out of descriptors for its own files because the total cap
//! stops `reserved_fds` short of the limit.

pub mod caps;
pub mod config;
pub mod conn;
pub mod metrics;
pub mod page;
pub mod server;
pub mod tls;

pub use config::{ConnLimits, ListenerConfig, PlainHttp, TlsFiles};
pub use conn::{BodyTimeout, ConnInfo, may_carry_credentials};
pub use metrics::ConnMetrics;
pub use server::{HttpServer, ListenError};
