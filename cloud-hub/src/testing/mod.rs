//! Test support shared by the workspace's tests (feature `testing`): a fresh
//! PostgreSQL database per test, and a fault-injecting UDP proxy.

pub mod pg;
pub mod udp_proxy;
