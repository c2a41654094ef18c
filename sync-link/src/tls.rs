//! Mutual TLS for the QUIC link, both ends: TLS 1.3 only, the session ALPN,
//! each side trusting only the fleet's CA; the hub requires a client
//! certificate and reads the edge's identity from its common name. One
//! crypto provider (aws-lc-rs) for the whole process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sync_protocol::EdgeId;
use sync_protocol::session::ALPN;
use x509_parser::prelude::{FromDer, X509Certificate};

/// QUIC closes a connection silent for this long (the sessions' own idle
/// timeout, 15 s, ends them well before).
const QUIC_IDLE_TIMEOUT_MS: u32 = 60_000;
/// The edge pings this often, so a quiet link is not taken for dead.
const KEEP_ALIVE: StdDuration = StdDuration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("the peer certificate does not name a valid edge: {0}")]
    BadIdentity(String),
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Installs aws-lc-rs as the process's one crypto provider (two providers in
/// one binary make rustls panic at first use). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The certificates in a PEM file; none is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no certificate in the file".into()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(config_err)?;
    }
    Ok(roots)
}

fn transport(keep_alive: Option<StdDuration>) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        QUIC_IDLE_TIMEOUT_MS,
    ))))
    .keep_alive_interval(keep_alive);
    t
}

/// The edge's side: trust only `ca`, present `cert`/`key` (whose common
/// name is the edge's id).
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<quinn::ClientConfig, TlsError> {
    install_crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
        .map_err(config_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_err)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(Some(KEEP_ALIVE))));
    Ok(cfg)
}

/// The hub's side: present `cert`/`key`, require a client certificate
/// chained to `ca`; one bidirectional stream per connection.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<quinn::ServerConfig, TlsError> {
    install_crypto_provider();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots(ca)?))
        .build()
        .map_err(config_err)?;
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(config_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut t = transport(None);
    t.max_concurrent_bidi_streams(1u8.into())
        .max_concurrent_uni_streams(0u8.into());
    server.transport_config(Arc::new(t));
    Ok(server)
}

/// The edge id in a DER certificate's common name.
pub fn edge_id_of(der: &[u8]) -> Result<EdgeId, TlsError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::BadIdentity("no common name".into()))?;
    EdgeId::new(cn).map_err(|e| TlsError::BadIdentity(e.to_string()))
}

/// The edge id of a connection's verified client certificate.
pub fn peer_edge_id(conn: &quinn::Connection) -> Result<EdgeId, TlsError> {
    let identity = conn.peer_identity().ok_or(TlsError::NoCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoCertificate)?;
    let leaf = certs.first().ok_or(TlsError::NoCertificate)?;
    edge_id_of(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate naming `cn`, written as `cert.pem` and
    /// `key.pem` in `dir`.
    fn self_signed(dir: &Path, cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
        cert.der().to_vec()
    }

    #[test]
    fn bad_files_are_named_and_good_ones_make_both_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let der = self_signed(d, "jkt-1");
        std::fs::write(d.join("empty.pem"), "").expect("write");
        std::fs::write(
            d.join("junk.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64!\n",
        )
        .expect("write");
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let cases = [
            (
                d.join("missing.pem"),
                cert.clone(),
                key.clone(),
                "missing.pem",
            ),
            (
                d.join("empty.pem"),
                cert.clone(),
                key.clone(),
                "no certificate in the file",
            ),
            (d.join("junk.pem"), cert.clone(), key.clone(), "junk.pem"),
            (
                cert.clone(),
                d.join("missing.pem"),
                key.clone(),
                "missing.pem",
            ),
            (cert.clone(), cert.clone(), d.join("empty.pem"), "empty.pem"),
        ];
        for (ca, c, k, says) in &cases {
            for result in [
                client_config(ca, c, k).map(|_| ()),
                server_config(ca, c, k).map(|_| ()),
            ] {
                let err = result.expect_err("refused");
                assert!(matches!(err, TlsError::File { .. }), "{err:?}");
                assert!(err.to_string().contains(says), "{err} should say {says}");
            }
        }
        client_config(&cert, &cert, &key).expect("a client config");
        server_config(&cert, &cert, &key).expect("a server config");
        assert_eq!(edge_id_of(&der).expect("an edge id").as_str(), "jkt-1");
        assert!(matches!(edge_id_of(b"junk"), Err(TlsError::BadIdentity(_))));
        let spaced = tempfile::tempdir().expect("tempdir");
        let der = self_signed(spaced.path(), "not an edge id");
        assert!(matches!(edge_id_of(&der), Err(TlsError::BadIdentity(_))));
    }
}
