//! The hub's migrations are embedded at compile time
//! (`refinery::embed_migrations!` in `src/db/mod.rs`): a new or changed
//! file under `migrations/hub/` must rebuild the crate, which cargo does
//! not know on its own.

fn main() {
    println!("cargo:rerun-if-changed=../migrations/hub");
}
