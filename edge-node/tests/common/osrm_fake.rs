//! A fake OSRM-compatible routing service on loopback for the routing tests.
//! Its behaviour is switched at runtime; it counts requests and tracks open
//! connections, and runs on its own runtime (its own thread), so its tasks
//! never show in the task count of the runtime under test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sync_protocol::GeoPoint;
use tokio::sync::watch;

/// Speed the fake routes at, so tests can compute what it serves.
pub const FAKE_SPEED_M_PER_S: f64 = 10.0;
/// How long a test waits for the server to observe something.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Valid OSRM JSON, every duration distance / 10 m/s.
    Answer,
    /// Like `Answer`, but every second destination (the 1st, 3rd, ...) is null.
    AnswerWithNulls,
    /// HTTP 500.
    Fail,
    /// Never answers.
    Hang,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with `{"code": "NoRoute"}`.
    NoRoute,
    /// 400 with `{"code": "NoSegment"}` (a point outside the map).
    NoSegment,
    /// 200 with a 2 MiB body, length declared.
    HugeDeclared,
    /// 200 with a 2 MiB body, chunked (no length).
    HugeChunked,
}

/// Seconds the fake serves from `from` to `to`.
pub fn served_secs(from: GeoPoint, to: GeoPoint) -> f64 {
    from.haversine_km(&to) * 1_000.0 / FAKE_SPEED_M_PER_S
}

struct State {
    mode: Mutex<Mode>,
    requests: watch::Sender<u64>,
    open: watch::Sender<u64>,
    accepted: watch::Sender<u64>,
    targets: Mutex<Vec<String>>,
}

pub struct FakeOsrm {
    pub addr: SocketAddr,
    state: Arc<State>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeOsrm {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Decrements the open-connection count when the connection's task ends.
struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

impl FakeOsrm {
    pub fn start(mode: Mode) -> FakeOsrm {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake");
        let state = Arc::new(State {
            mode: Mutex::new(mode),
            requests: watch::Sender::new(0),
            open: watch::Sender::new(0),
            accepted: watch::Sender::new(0),
            targets: Mutex::new(Vec::new()),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let accept_state = state.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accept_state.accepted.send_modify(|n| *n += 1);
                accept_state.open.send_modify(|n| *n += 1);
                let open = Open(accept_state.clone());
                let conn_state = accept_state.clone();
                tokio::spawn(async move {
                    let _open = open;
                    let service = service_fn(move |req| handle(conn_state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeOsrm {
            addr,
            state,
            rt: Some(rt),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    pub fn requests(&self) -> u64 {
        *self.state.requests.borrow()
    }

    pub fn accepted(&self) -> u64 {
        *self.state.accepted.borrow()
    }

    pub fn open_connections(&self) -> u64 {
        *self.state.open.borrow()
    }

    /// Every request target seen, in order.
    pub fn targets(&self) -> Vec<String> {
        self.state.targets.lock().clone()
    }

    /// Waits (at most [`WAIT`]) until the server has seen `n` requests.
    pub async fn wait_requests(&self, n: u64) {
        let mut rx = self.state.requests.subscribe();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|&seen| seen >= n)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "expected {n} requests within {WAIT:?}, saw {}",
            self.requests()
        );
    }

    /// Waits (at most [`WAIT`]) until no connection is open on the server.
    pub async fn wait_no_open_connections(&self) {
        let mut rx = self.state.open.subscribe();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|&open| open == 0)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "expected every connection closed within {WAIT:?}, {} still open",
            self.open_connections()
        );
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |pq| pq.as_str().to_owned());
    state.targets.lock().push(target);
    state.requests.send_modify(|n| *n += 1);
    let mode = *state.mode.lock();
    let response = match mode {
        Mode::Answer | Mode::AnswerWithNulls => answer(req.uri().path(), mode),
        Mode::Fail => full(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        Mode::Hang => std::future::pending().await,
        Mode::Garbage => full(StatusCode::OK, "<html>surely not JSON</html>"),
        Mode::NoRoute => full(
            StatusCode::OK,
            r#"{"code":"NoRoute","message":"Impossible route between points"}"#,
        ),
        Mode::NoSegment => full(
            StatusCode::BAD_REQUEST,
            r#"{"code":"NoSegment","message":"Could not find a matching segment for coordinate 1"}"#,
        ),
        Mode::HugeDeclared => full(StatusCode::OK, huge()),
        Mode::HugeChunked => {
            let chunks = huge()
                .into_bytes()
                .chunks(64 * 1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect::<Vec<_>>();
            let body = StreamBody::new(stream::iter(chunks)).boxed();
            Response::new(body)
        }
    };
    Ok(response)
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

/// A valid answer whose first row never ends within 2 MiB.
fn huge() -> String {
    let mut s = String::from(r#"{"code":"Ok","durations":[[0"#);
    while s.len() < 2 << 20 {
        s.push_str(",1.5");
    }
    s.push_str("]]}");
    s
}

fn answer(path: &str, mode: Mode) -> Response<Body> {
    let (service, coords) = match path.strip_prefix("/table/v1/driving/") {
        Some(c) => ("table", c),
        None => match path.strip_prefix("/route/v1/driving/") {
            Some(c) => ("route", c),
            None => return full(StatusCode::NOT_FOUND, r#"{"code":"InvalidUrl"}"#),
        },
    };
    let Some(points) = parse_coordinates(coords) else {
        return full(StatusCode::BAD_REQUEST, r#"{"code":"InvalidQuery"}"#);
    };
    let from = points[0];
    let body: Value = if service == "table" {
        let row: Vec<Value> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if mode == Mode::AnswerWithNulls && i % 2 == 1 {
                    Value::Null
                } else {
                    json!(served_secs(from, *p))
                }
            })
            .collect();
        let source = json!({"location": [from.lon(), from.lat()]});
        json!({"code": "Ok", "durations": [row], "sources": [source]})
    } else {
        let secs = served_secs(from, points[points.len() - 1]);
        let route = json!({"duration": secs, "distance": secs * FAKE_SPEED_M_PER_S, "legs": []});
        json!({"code": "Ok", "routes": [route], "waypoints": []})
    };
    full(StatusCode::OK, body.to_string())
}

/// `lon,lat;lon,lat;...` into points (at least two).
fn parse_coordinates(s: &str) -> Option<Vec<GeoPoint>> {
    let points = s
        .split(';')
        .map(|pair| {
            let (lon, lat) = pair.split_once(',')?;
            GeoPoint::new(lat.parse().ok()?, lon.parse().ok()?).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    (points.len() >= 2).then_some(points)
}
