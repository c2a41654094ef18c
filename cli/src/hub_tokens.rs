//! `pahlawan token issue --for hub` and `pahlawan hub login-code`: tokens
//! for the hub's HTTP API, signed with the hub's token key (`[auth]
//! keys_dir`, by default `tokens/` beside the hub's TLS key), and one-time
//! codes a person trades for a dashboard session.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cloud_hub::HubConfig;
use cloud_hub::auth::HubRole;

/// The hub's configuration for signing: its file (`--config`), the
/// environment, and `--certs-dir` for where its TLS key (and so, by
/// default, its token keys) live.
pub fn config(file: Option<&Path>, certs_dir: Option<&Path>) -> anyhow::Result<HubConfig> {
    let mut config = HubConfig::load(file)?;
    if let Some(d) = certs_dir {
        config.tls.ca_cert = d.join(cloud_hub::certs::CA_CERT);
        config.tls.cert = d.join(cloud_hub::certs::HUB_CERT);
        config.tls.key = d.join(cloud_hub::certs::HUB_KEY);
    }
    Ok(config)
}

fn role(s: &str) -> anyhow::Result<HubRole> {
    s.parse().map_err(|_| {
        pahlawan_cli::exit::usage(format!(
            "--role {s:?}: a hub token's role is admin or viewer"
        ))
    })
}

fn now() -> sync_protocol::Timestamp {
    edge_node::clock::Clock::now(&edge_node::clock::SystemClock)
}

/// Signs a hub token.
pub fn issue(config: &HubConfig, role_name: &str, sub: &str, ttl: i64) -> anyhow::Result<String> {
    let role = role(role_name)?;
    if sub.trim().is_empty() {
        return Err(pahlawan_cli::exit::usage("--sub must not be empty"));
    }
    if ttl > config.auth.max_token_lifetime_secs {
        return Err(pahlawan_cli::exit::usage(format!(
            "--ttl {ttl}s: the hub refuses tokens living longer than {} s (auth.max_token_lifetime_secs)",
            config.auth.max_token_lifetime_secs
        )));
    }
    let keys = config.token_keys_dir();
    Ok(cloud_hub::auth::issue(
        &config.auth,
        &keys,
        role,
        sub,
        ttl,
        now(),
    )?)
}

/// What `hub login-code` sends.
#[derive(Debug)]
pub struct LoginCodeRequest {
    pub role: String,
    pub sub: String,
    pub ttl_secs: i64,
    pub url: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

/// Asks the running hub for a one-time login code (an admin token for five
/// minutes, signed here) and returns its answer.
pub async fn login_code(
    config: &HubConfig,
    req: &LoginCodeRequest,
) -> anyhow::Result<serde_json::Value> {
    role(&req.role)?;
    let token = issue(config, "admin", "pahlawan-cli", 300)?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = req
        .url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", config.listen_http));
    let base = base.trim_end_matches('/');
    let client = pahlawan_cli::client::http_client(req.ca_cert.as_deref())?;
    let resp = client
        .post(format!("{base}/api/v1/login-codes"))
        .bearer_auth(token)
        .json(&serde_json::json!({"role": req.role, "sub": req.sub, "ttl_secs": req.ttl_secs}))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| pahlawan_cli::exit::unreachable(format!("reaching the hub at {base}: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("the hub at {base} answered {status} with no JSON"))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!("the hub answered {}: {code}: {message}", status.as_u16());
    }
    Ok(body)
}
