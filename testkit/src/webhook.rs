//! A fake webhook receiver on loopback: real HTTP, every request's
//! signature checked with the Standard Webhooks reference library
//! (`standardwebhooks`, not our code), and a mode that makes it answer,
//! fail, hang, or stop listening altogether. Every answer closes its
//! connection, so a stopped receiver refuses the next attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 204.
    Ok,
    /// 503.
    Fail,
    /// Never answers.
    Hang,
}

/// One request that came with a valid signature (or none was asked for).
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    attempts: u64,
    bad_signatures: u64,
    hanging: u64,
}

struct Inner {
    mode: Mutex<Mode>,
    /// `whsec_…`: every request must carry a valid signature by it.
    secret: Mutex<Option<String>>,
    log: Mutex<Log>,
}

pub struct FakeReceiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeReceiver {
    pub async fn start(mode: Mode) -> FakeReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let inner = Arc::new(Inner {
            mode: Mutex::new(mode),
            secret: Mutex::new(None),
            log: Mutex::new(Log::default()),
        });
        let mut r = FakeReceiver {
            addr,
            inner,
            server: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.inner.clone());
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock() = mode;
    }

    pub fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock() = Some(secret.to_string());
    }

    /// Stops listening: attempts are refused until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.log.lock().received.clone()
    }

    pub fn attempts(&self) -> u64 {
        self.inner.log.lock().attempts
    }

    pub fn bad_signatures(&self) -> u64 {
        self.inner.log.lock().bad_signatures
    }

    /// Requests held without an answer right now.
    pub fn hanging(&self) -> u64 {
        self.inner.log.lock().hanging
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    inner.log.lock().attempts += 1;
    let secret = inner.secret.lock().clone();
    if let Some(secret) = secret {
        let verified = standardwebhooks::Webhook::new(&secret)
            .and_then(|w| w.verify(&body, &headers))
            .is_ok();
        if !verified {
            inner.log.lock().bad_signatures += 1;
            return close(StatusCode::UNAUTHORIZED);
        }
    }
    let mode = *inner.mode.lock();
    match mode {
        Mode::Ok => {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            inner.log.lock().received.push(Received {
                id,
                body,
                at: Instant::now(),
            });
            close(StatusCode::NO_CONTENT)
        }
        Mode::Fail => close(StatusCode::SERVICE_UNAVAILABLE),
        Mode::Hang => {
            inner.log.lock().hanging += 1;
            let _guard = Hanging(inner.clone());
            std::future::pending::<()>().await;
            close(StatusCode::NO_CONTENT)
        }
    }
}

/// Counts a hanging request down when its connection goes.
struct Hanging(Arc<Inner>);

impl Drop for Hanging {
    fn drop(&mut self) {
        self.0.log.lock().hanging -= 1;
    }
}

fn close(status: StatusCode) -> axum::response::Response {
    (status, [(header::CONNECTION, "close")]).into_response()
}
