//! TLS for the QUIC endpoint: the hub's certificate, client certificates
//! required and verified against the hub's CA, and the edge's identity read
//! from its verified certificate (its common name).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sync_protocol::EdgeId;
use sync_protocol::session::ALPN;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::TlsFiles;

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

/// Installs aws-lc-rs as the process's one crypto provider (two providers in
/// one binary make rustls panic at first use). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

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

/// QUIC server configuration: TLS 1.3, our ALPN, client certificates
/// required and chained to the CA.
pub fn server_config(files: &TlsFiles) -> Result<quinn::ServerConfig, TlsError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(&files.ca_cert)? {
        roots.add(ca).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&files.cert)?, read_key(&files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            60_000,
        ))));
    server.transport_config(Arc::new(transport));
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

/// The verified client certificate's edge id.
pub fn edge_identity(conn: &quinn::Connection) -> Result<EdgeId, TlsError> {
    let identity = conn.peer_identity().ok_or(TlsError::NoCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoCertificate)?;
    let leaf = certs.first().ok_or(TlsError::NoCertificate)?;
    edge_id_of(leaf)
}
