//! HTTPS for the listener: the server's certificate and key from PEM files,
//! checked (the key matches, the certificate is valid now) and swapped in
//! when the files change, without a restart. One crypto provider for the
//! process: aws-lc-rs, as the QUIC link uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: the key does not match the certificate")]
    KeyMismatch { path: String },
    #[error("{path}: the certificate expired at {not_after} (unix seconds)")]
    Expired { path: String, not_after: i64 },
    #[error("{path}: the certificate is not valid before {not_before} (unix seconds)")]
    NotYetValid { path: String, not_before: i64 },
    #[error("{path}: not an X.509 certificate: {reason}")]
    Parse { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_err(path: &Path) -> impl Fn(String) -> TlsError + '_ {
    move |reason| TlsError::File {
        path: path.display().to_string(),
        reason,
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path)(e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(path)("no certificate in the file".into()));
    }
    Ok(chain)
}

/// Refuses a leaf that is not valid at `now`.
fn check_validity(path: &Path, leaf: &CertificateDer<'_>, now: UnixTime) -> Result<(), TlsError> {
    let path_s = || path.display().to_string();
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| TlsError::Parse {
        path: path_s(),
        reason: e.to_string(),
    })?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let v = cert.validity();
    if now > v.not_after.timestamp() {
        return Err(TlsError::Expired {
            path: path_s(),
            not_after: v.not_after.timestamp(),
        });
    }
    if now < v.not_before.timestamp() {
        return Err(TlsError::NotYetValid {
            path: path_s(),
            not_before: v.not_before.timestamp(),
        });
    }
    Ok(())
}

/// The certificate and key in `files`, checked against each other and the
/// clock.
pub fn load(files: &TlsFiles, now: SystemTime) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err(&files.key)(e.to_string()))?;
    check_validity(
        &files.cert,
        &chain[0],
        UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        ),
    )?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            path: files.key.display().to_string(),
        },
        other => TlsError::Config(other.to_string()),
    })?;
    Ok(Arc::new(certified))
}

/// Hands every handshake the certificate loaded last.
#[derive(Debug)]
pub struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloading {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Reloading> {
        Arc::new(Reloading {
            current: RwLock::new(key),
        })
    }

    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write() = key;
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// The server config: TLS 1.2 and 1.3, HTTP/1.1 by ALPN, no client
/// certificates, the certificate from `certs`.
pub fn server_config(certs: Arc<Reloading>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What tells a changed file: modification time, length and inode (a file
/// replaced by rename has a new inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(Option<SystemTime>, u64, u64)>);

fn stamp(paths: &[&PathBuf]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| match std::fs::metadata(p) {
                Ok(m) => {
                    #[cfg(unix)]
                    let ino = std::os::unix::fs::MetadataExt::ino(&m);
                    #[cfg(not(unix))]
                    let ino = 0;
                    (m.modified().ok(), m.len(), ino)
                }
                Err(_) => (None, 0, 0),
            })
            .collect(),
    )
}

/// Checks the files every `reload_check_ms` and swaps in what they hold
/// when they changed (and then held still for one check) and load cleanly; a file that does not load (half
/// written, key and certificate out of step, expired) is logged and the
/// certificate in use kept, and tried again at its next change. Ends when
/// `stop` turns true.
pub async fn watch(
    files: TlsFiles,
    certs: Arc<Reloading>,
    metrics: crate::ConnMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let paths = [&files.cert, &files.key];
    let mut seen = stamp(&paths);
    let mut pending: Option<Stamp> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(files.reload_check_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = stamp(&paths);
        if now == seen {
            pending = None;
            continue;
        }
        // Loaded once the files stopped changing for a check: a certificate
        // and key written one after the other are taken together.
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        pending = None;
        seen = now;
        match load(&files, SystemTime::now()) {
            Ok(key) => {
                certs.swap(key);
                metrics.reloaded("loaded");
                tracing::info!(cert = %files.cert.display(), "HTTPS certificate reloaded");
            }
            Err(e) => {
                metrics.reloaded("refused");
                tracing::warn!(error = %e, "HTTPS certificate not reloaded; the one in use stays");
            }
        }
    }
}
