//! A fake Web Push service on loopback, standing in for the browser
//! vendors' (which cannot be reached here). It speaks the real protocol:
//! a subscription is an endpoint URL and a P-256 key pair with an auth
//! secret; a message is `POST <endpoint>` that must carry `TTL` (RFC 8030
//! §5.2, else 400), `Content-Encoding: aes128gcm` and a VAPID
//! `Authorization: vapid t=…, k=…` (RFC 8292) whose key is the one the
//! subscription was made for (else 403) and whose ES256 token is for this
//! service's origin, unexpired and at most 24 hours long, with a contact
//! (else 403, checked with `jsonwebtoken`); its body is decrypted with the
//! subscription's private key by Mozilla's `ece` (RFC 8291, not our code;
//! else 400). A delivered message is 201 Created. A subscription can be
//! withdrawn (410 Gone), or the whole service made to fail (503).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::Value;

/// A subscription as `PushSubscription.toJSON()` gives it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub endpoint: String,
    /// base64url, uncompressed P-256 point.
    pub p256dh: String,
    /// base64url, 16 bytes.
    pub auth: String,
}

impl Subscription {
    /// The JSON a page would register (`{"endpoint", "keys": {…}}`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// A message the service took: decrypted, its headers as sent.
#[derive(Debug, Clone)]
pub struct Received {
    /// The subscription's token (the endpoint's last segment).
    pub token: String,
    pub payload: Value,
    pub ttl: u64,
    pub urgency: String,
    pub at: Instant,
}

struct Sub {
    components: ece::EcKeyComponents,
    auth: [u8; 16],
    /// The `applicationServerKey` it was made with (base64url).
    server_key: String,
    gone: bool,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    attempts: u64,
    refused: Vec<String>,
}

struct Inner {
    origin: String,
    subs: Mutex<HashMap<String, Sub>>,
    failing: Mutex<bool>,
    log: Mutex<Log>,
}

pub struct FakePushService {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl FakePushService {
    pub async fn start() -> FakePushService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let inner = Arc::new(Inner {
            origin: format!("http://{addr}"),
            subs: Mutex::new(HashMap::new()),
            failing: Mutex::new(false),
            log: Mutex::new(Log::default()),
        });
        let app = axum::Router::new()
            .route("/push/{token}", axum::routing::post(receive))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePushService {
            addr,
            inner,
            server,
        }
    }

    /// A new subscription for pages of the server whose VAPID public key
    /// is `application_server_key` (base64url), as a browser makes one.
    pub fn subscribe(&self, application_server_key: &str) -> Subscription {
        let (pair, auth) = ece::generate_keypair_and_auth_secret().expect("a key pair");
        let components = pair.raw_components().expect("its components");
        let token = uuid::Uuid::new_v4().simple().to_string();
        let sub = Subscription {
            endpoint: format!("{}/push/{token}", self.inner.origin),
            p256dh: URL_SAFE_NO_PAD.encode(components.public_key()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        self.inner.subs.lock().insert(
            token,
            Sub {
                components,
                auth,
                server_key: application_server_key.to_string(),
                gone: false,
            },
        );
        sub
    }

    /// The subscription is withdrawn: messages to it are 410 Gone.
    pub fn withdraw(&self, sub: &Subscription) {
        let token = sub.endpoint.rsplit('/').next().unwrap_or_default();
        if let Some(s) = self.inner.subs.lock().get_mut(token) {
            s.gone = true;
        }
    }

    /// Every message answered 503 while `failing`.
    pub fn set_failing(&self, failing: bool) {
        *self.inner.failing.lock() = failing;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.log.lock().received.clone()
    }

    pub fn attempts(&self) -> u64 {
        self.inner.log.lock().attempts
    }

    /// Why each refused message was refused.
    pub fn refused(&self) -> Vec<String> {
        self.inner.log.lock().refused.clone()
    }
}

impl Drop for FakePushService {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    inner.log.lock().attempts += 1;
    let refuse = |status: StatusCode, why: String| {
        inner.log.lock().refused.push(why);
        (status, [(header::CONNECTION, "close")]).into_response()
    };
    if *inner.failing.lock() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "failing".into());
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (components, auth, server_key) = {
        let subs = inner.subs.lock();
        match subs.get(&token) {
            None => return refuse(StatusCode::NOT_FOUND, "no such subscription".into()),
            Some(s) if s.gone => return refuse(StatusCode::GONE, "withdrawn".into()),
            Some(s) => (s.components.clone(), s.auth, s.server_key.clone()),
        }
    };
    let Ok(ttl) = text("ttl").parse::<u64>() else {
        return refuse(StatusCode::BAD_REQUEST, "no TTL".into());
    };
    if text("content-encoding") != "aes128gcm" {
        return refuse(StatusCode::BAD_REQUEST, "not aes128gcm".into());
    }
    if let Err(why) = check_vapid(&text("authorization"), &server_key, &inner.origin) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let plain = match ece::decrypt(&components, &auth, &body) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("decrypt: {e}")),
    };
    let payload = serde_json::from_slice(&plain).unwrap_or(Value::Null);
    inner.log.lock().received.push(Received {
        token: token.clone(),
        payload,
        ttl,
        urgency: text("urgency"),
        at: Instant::now(),
    });
    (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                format!("{}/message/{token}", inner.origin),
            ),
            (header::CONNECTION, "close".to_string()),
        ],
    )
        .into_response()
}

/// `vapid t=<jwt>, k=<key>`: the key the subscription was made for, and
/// a valid ES256 token by it for `origin`.
fn check_vapid(header: &str, server_key: &str, origin: &str) -> Result<(), String> {
    let rest = header
        .strip_prefix("vapid ")
        .ok_or("not the vapid scheme")?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("k", v)) => k = Some(v),
            _ => {}
        }
    }
    let (t, k) = (t.ok_or("no t")?, k.ok_or("no k")?);
    if k != server_key {
        return Err("k is not the subscription's application server key".into());
    }
    let point = URL_SAFE_NO_PAD
        .decode(k)
        .map_err(|_| "k is not base64url".to_string())?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k is not an uncompressed P-256 point".into());
    }
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..]),
    )
    .map_err(|e| format!("k: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[origin]);
    v.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(t, &key, &v)
        .map_err(|e| format!("token: {e}"))?
        .claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp > now + 24 * 3_600 {
        return Err("exp is more than 24 hours away".into());
    }
    let sub = claims["sub"].as_str().unwrap_or_default();
    if !(sub.starts_with("mailto:") || sub.starts_with("https://")) {
        return Err("sub is not a mailto: or https: contact".into());
    }
    Ok(())
}
