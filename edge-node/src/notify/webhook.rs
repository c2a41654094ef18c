//! One HTTP attempt of a notification: the POST with its Standard Webhooks
//! headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`), or a
//! push message's (`TTL`, `Urgency`, `Content-Encoding: aes128gcm`, VAPID
//! `Authorization`) — bounded in time, never redirected, the receiver's
//! body never read — and what its answer means to the dispatcher.

use std::time::Duration;

use edge_core::notify::Outcome;

use crate::standard_webhooks::sign;

/// One request to send.
#[derive(Clone)]
pub struct Request {
    pub url: String,
    /// The idempotency id: every attempt of one delivery carries the same.
    pub id: String,
    pub body: std::sync::Arc<Vec<u8>>,
    pub scheme: Scheme,
    /// `application/json`, or a form for the SMS gateway.
    pub content_type: &'static str,
    /// HTTP Basic credentials (the SMS gateway's account and token).
    pub basic: Option<std::sync::Arc<(String, String)>>,
}

/// How a request presents itself to its receiver.
#[derive(Clone)]
pub enum Scheme {
    /// `webhook-id`, `webhook-timestamp` and, with the HMAC key,
    /// `webhook-signature` (none: unsigned, as an Alertmanager receiver
    /// or the SMS gateway expects).
    StandardWebhooks {
        key: Option<std::sync::Arc<Vec<u8>>>,
    },
    /// A push message (RFC 8030): the body encrypted for the subscription,
    /// how long the push service may hold it, the VAPID header.
    WebPush {
        authorization: std::sync::Arc<str>,
        ttl_secs: u64,
    },
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The HTTP client every attempt uses: rustls, no redirects (a signature
/// is for the URL registered, and a redirect could point anywhere), no
/// proxy from the environment, `timeout` per attempt from connect to the
/// status line.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(4)
        .user_agent(concat!("pahlawan-edge/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends one attempt; the answer as the dispatcher counts it, and the
/// status (or the failure) for logs and metrics.
pub async fn send(client: &reqwest::Client, req: &Request, timestamp: i64) -> (Outcome, String) {
    let mut r = client
        .post(&req.url)
        .header("content-type", req.content_type);
    if let Some(basic) = &req.basic {
        r = r.basic_auth(&basic.0, Some(&basic.1));
    }
    match &req.scheme {
        Scheme::StandardWebhooks { key } => {
            r = r
                .header("webhook-id", &req.id)
                .header("webhook-timestamp", timestamp.to_string());
            if let Some(key) = key {
                r = r.header(
                    "webhook-signature",
                    sign(key, &req.id, timestamp, &req.body),
                );
            }
        }
        Scheme::WebPush {
            authorization,
            ttl_secs,
        } => {
            r = r
                .header("authorization", authorization.as_ref())
                .header("ttl", ttl_secs.to_string())
                .header("urgency", "high")
                .header("content-encoding", "aes128gcm");
        }
    }
    match r.body(req.body.as_ref().clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (outcome_of(status), status.to_string())
        }
        Err(e) if e.is_timeout() => (Outcome::Failed, "timeout".into()),
        Err(e) if e.is_connect() => (Outcome::Failed, "connect".into()),
        Err(_) => (Outcome::Failed, "error".into()),
    }
}

/// 2xx is the delivery ACK; 408, 429 and 5xx are worth another try; any
/// other answer (4xx, and 3xx — redirects are not followed) is the
/// receiver's final word.
pub fn outcome_of(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_status_means() {
        for (status, want) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (301, Outcome::Refused),
            (400, Outcome::Refused),
            (404, Outcome::Refused),
            (410, Outcome::Refused),
            (408, Outcome::Failed),
            (429, Outcome::Failed),
            (500, Outcome::Failed),
            (503, Outcome::Failed),
        ] {
            assert_eq!(outcome_of(status), want, "{status}");
        }
    }
}
