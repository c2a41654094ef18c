//! The tools behind `pahlawan simulate` and `pahlawan bench`: they drive a
//! real edge from outside its library, as a user's load would, so they live
//! with the binary rather than in the product crates.

pub mod bench;
pub mod client;
pub mod sim;
