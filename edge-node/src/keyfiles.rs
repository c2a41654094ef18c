//! Where key material lives on disk, under `<data_dir>/keys/`, and how it is
//! written (atomically, secrets 0600). Shared by the token keys
//! ([`crate::auth::keys`]) and the contact-sealing keys ([`crate::pii`]),
//! so neither needs the other for a path.

use std::path::{Path, PathBuf};

pub const KEYS_DIR: &str = "keys";
pub use jwt_auth::keys::{JWKS, SIGNING_KEY};
pub const PII_KEYS: &str = "pii-keys.json";
/// The edge's Web Push (VAPID) signing key, PEM.
pub const VAPID_KEY: &str = "web-push-vapid.pem";

pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR)
}

/// Writes a file atomically (temp + rename); secrets get mode 0600.
pub use jwt_auth::keys::write_atomic as write_file;
