//! The CLI's HTTP client for an edge: plain HTTP, or HTTPS trusting the
//! project's CA (`--ca-cert certs/ca.crt`) or else the system's roots. One
//! crypto provider, aws-lc-rs, as everywhere in the workspace.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The roots an HTTPS edge is checked against.
pub fn roots(ca_cert: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "{}: no certificate in the file",
                path.display()
            );
            for c in certs {
                roots
                    .add(c)
                    .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

/// A rustls client config over `roots`: TLS 1.2 and 1.3, HTTP/1.1.
pub fn tls_config(roots: rustls::RootCertStore) -> anyhow::Result<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client for an edge at an `http://` or `https://` URL.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(roots(ca_cert)?)?)
        .build()
        .context("building the HTTP client")
}
