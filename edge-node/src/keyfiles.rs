//! Where key material lives on disk, under `<data_dir>/keys/`, and how it is
//! written (atomically, secrets 0600). Shared by the token keys
//! ([`crate::auth::keys`]) and the contact-sealing keys ([`crate::pii`]),
//! so neither needs the other for a path.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const KEYS_DIR: &str = "keys";
pub const SIGNING_KEY: &str = "jwt-signing.pem";
pub const JWKS: &str = "jwks.json";
pub const PII_KEYS: &str = "pii-keys.json";

pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR)
}

/// Writes a file atomically (temp + rename); secrets get mode 0600.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
