//! Test support shared by the workspace's tests (feature `testing`): a fresh
//! PostgreSQL database per test (plain or on a Citus cluster), and a
//! fault-injecting UDP proxy.

pub mod citus;
pub mod pg;
pub mod udp_proxy;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A QUIC client config that trusts `ca` and presents `cert`/`key` — what an
/// edge (or an impostor) would use.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> quinn::ClientConfig {
    crate::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::read_certs(ca).expect("CA") {
        roots.add(c).expect("CA cert");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client TLS");
    tls.alpn_protocols = vec![sync_protocol::session::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS"),
    ))
}
