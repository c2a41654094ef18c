//! The parts of `pahlawan` its tests and its verbs share: the tools behind
//! `pahlawan simulate` and `pahlawan bench` (they drive a real edge from
//! outside its library, as a user's load would, so they live with the
//! binary rather than in the product crates), the HTTP client for an edge
//! ([`client`]) and the exit codes ([`exit`]).

pub mod bench;
pub mod client;
pub mod exit;
pub mod sim;
