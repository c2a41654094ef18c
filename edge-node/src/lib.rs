//! Pahlawan Pangan's city edge node.
pub mod core;
