//! The CLI's one HTTP client for an edge: plain HTTP, or HTTPS trusting the
//! project's CA (`--ca-cert certs/ca.crt`) or else the system's roots (one
//! crypto provider, aws-lc-rs, as everywhere in the workspace); and the
//! admin connection the operator's verbs share — where the edge is, the
//! bearer token (given with `--token`/`PAHLAWAN_TOKEN`, or signed here for
//! five minutes with the data directory's key), and one mapping of HTTP
//! outcomes to errors and exit codes (connect failure → 3, 401/403 → 4).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::exit;

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of a token the CLI signs for itself.
const OWN_TOKEN_TTL_SECS: i64 = 300;

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
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// The edge's base URL from its configuration: `http://<listen>`, or
/// `https://<listen>` with `[http.tls]`; an unspecified address is asked on
/// loopback.
pub fn base_url(config: &edge_node::EdgeConfig) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// How to reach one edge's admin API, as the operator's flags say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reach<'a> {
    /// The base URL (default: [`base_url`]).
    pub url: Option<&'a str>,
    /// A bearer token (default: one signed with the data directory's key).
    pub token: Option<&'a str>,
    /// The CA an HTTPS edge's certificate must chain to (default: the system's roots).
    pub ca_cert: Option<&'a Path>,
}

/// A connection to one edge's admin API.
pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn connect(config: &edge_node::EdgeConfig, reach: Reach<'_>) -> anyhow::Result<Admin> {
        let base = match reach.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => base_url(config),
        };
        let token = match reach.token.map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => own_token(config)?,
        };
        let http = http_client(reach.ca_cert)?;
        Ok(Admin { base, token, http })
    }

    /// The edge's base URL this connection calls.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1{path}` (path with its query).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `DELETE /api/v1{path}`; a 204's empty body is `null`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = match req.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                return Err(exit::unreachable(format!(
                    "the edge at {} did not answer: {}",
                    self.base,
                    exit::one_line(&anyhow::Error::new(e))
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("talking to {}", self.base)));
            }
        };
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("");
        let line = format!("the edge answered {}: {code}: {message}", status.as_u16());
        Err(match status.as_u16() {
            401 | 403 => exit::auth(line),
            _ => anyhow::anyhow!(line),
        })
    }
}

/// An admin token signed with the edge's own key, for five minutes.
fn own_token(config: &edge_node::EdgeConfig) -> anyhow::Result<String> {
    let sub = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map_or_else(|| "pahlawan-cli".to_string(), |u| format!("cli:{u}"));
    edge_node::auth::keys::issue(
        &config.data_dir,
        &config.auth.issuer,
        &config.auth.audience,
        edge_node::auth::Role::Admin,
        &sub,
        OWN_TOKEN_TTL_SECS,
        edge_node::clock::Clock::now(&edge_node::clock::SystemClock),
    )
    .map_err(|e| {
        exit::auth(format!(
            "no credentials: {e} (pass --token or PAHLAWAN_TOKEN, or the edge's --data-dir)"
        ))
    })
}
