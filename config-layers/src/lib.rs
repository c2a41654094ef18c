//! One way to layer a binary's configuration, shared by the edge and the
//! hub: built-in defaults, then a TOML file (if given, it must exist), then
//! environment variables under a prefix with `__` between nested keys
//! (`PAHLAWAN_HTTP__LISTEN`). The result is a [`Figment`], so a caller can
//! both extract its typed configuration and ask where each value came from
//! (figment keeps each value's metadata: default, file or environment).

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("config file {0} does not exist")]
    NoSuchFile(String),
}

/// `defaults`, then `file`, then the environment under `env_prefix`.
pub fn layered<T: Serialize>(
    defaults: &T,
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<Figment, LayerError> {
    let mut fig = Figment::from(Serialized::defaults(defaults));
    if let Some(f) = file {
        if !f.exists() {
            return Err(LayerError::NoSuchFile(f.display().to_string()));
        }
        fig = fig.merge(Toml::file_exact(f));
    }
    Ok(fig.merge(Env::prefixed(env_prefix).split("__")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Cfg {
        name: String,
        inner: Inner,
    }
    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Inner {
        port: u16,
    }

    fn defaults() -> Cfg {
        Cfg {
            name: "d".into(),
            inner: Inner { port: 1 },
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's type
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "name = \"file\"\n[inner]\nport = 2\n")?;
            let cfg: Cfg = layered(&defaults(), Some(Path::new("c.toml")), "T_")
                .map_err(|e| e.to_string())?
                .extract()?;
            assert_eq!(cfg.name, "file");
            assert_eq!(cfg.inner.port, 2);
            jail.set_env("T_INNER__PORT", "3");
            let cfg: Cfg = layered(&defaults(), Some(Path::new("c.toml")), "T_")
                .map_err(|e| e.to_string())?
                .extract()?;
            assert_eq!((cfg.name.as_str(), cfg.inner.port), ("file", 3));
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_refused_by_name() {
        let e = layered(&defaults(), Some(Path::new("/no/such/pahlawan.toml")), "T_")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("config file /no/such/pahlawan.toml does not exist")
        );
    }
}
