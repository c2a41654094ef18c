//! `bench-fleet`'s load generator: `GET`s of one path from `connections`
//! keep-alive HTTP/1.1 clients, each on its own TCP connection, closed loop
//! (a client's next request goes when its last is answered), on a runtime
//! of its own (two threads) so that the clients and the hub share the
//! machine as separate processes would. Every answer is counted by its
//! status: a 2xx or a 304 is an answer, anything else — and a broken
//! connection — an error, counted and reported, never dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The longest latency the histograms hold (2 minutes, in µs).
const MAX_LATENCY_US: u64 = 120_000_000;
/// A client whose connection broke waits this long before connecting again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What one scenario asks for.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub path: String,
    /// Sent as `If-None-Match` (the conditional poll).
    pub if_none_match: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Concurrent clients (one keep-alive connection each).
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One scenario's result (requests sent after the warm-up and before the end).
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    pub path: String,
    /// Answered with a 2xx or a 304.
    pub answered: u64,
    pub not_modified: u64,
    /// Anything else, and broken connections.
    pub errors: u64,
    /// Every outcome: the status, or `connection` for a broken one.
    pub outcomes: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Microseconds from send to the whole body, of every request
    /// (errors included).
    pub latency_us: Histogram<u64>,
    /// The size of the last answered body.
    pub body_bytes: usize,
}

impl Measured {
    pub fn per_sec(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1_000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1_000.0
    }

    /// `0`, or the count and what the errors were (`12: 503×12`).
    pub fn errors_text(&self) -> String {
        if self.errors == 0 {
            return "0".into();
        }
        let kinds: Vec<String> = self
            .outcomes
            .iter()
            .filter(|(k, _)| !is_answer(k))
            .map(|(k, n)| format!("{k}×{n}"))
            .collect();
        format!("{}: {}", self.errors, kinds.join(", "))
    }
}

fn is_answer(outcome: &str) -> bool {
    outcome == "304" || outcome.starts_with('2')
}

/// What the clients share.
struct Shared {
    addr: SocketAddr,
    target: Target,
    authorization: Option<String>,
    measure_from: Instant,
    stop_at: Instant,
}

/// One client's tally.
struct Tally {
    latency_us: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    body_bytes: usize,
}

/// Runs `target` against `addr` on its own runtime and thread.
pub async fn drive(
    addr: SocketAddr,
    authorization: Option<String>,
    target: Target,
    schedule: Schedule,
) -> anyhow::Result<Measured> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fleet-loadgen".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(run(addr, authorization, target, schedule)),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(result);
        })?;
    rx.await?
}

async fn run(
    addr: SocketAddr,
    authorization: Option<String>,
    target: Target,
    schedule: Schedule,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        target,
        authorization,
        measure_from: started + schedule.warmup,
        stop_at: started + schedule.warmup + schedule.duration,
    });
    let clients: Vec<_> = (0..schedule.connections.max(1))
        .map(|_| tokio::spawn(client(shared.clone())))
        .collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut body_bytes = 0;
    for c in clients {
        let t = c.await??;
        latency_us.add(&t.latency_us)?;
        for (k, n) in t.outcomes {
            *outcomes.entry(k).or_default() += n;
        }
        body_bytes = body_bytes.max(t.body_bytes);
    }
    let count = |f: &dyn Fn(&str) -> bool| -> u64 {
        outcomes.iter().filter(|(k, _)| f(k)).map(|(_, n)| *n).sum()
    };
    Ok(Measured {
        name: shared.target.name.clone(),
        path: shared.target.path.clone(),
        answered: count(&is_answer),
        not_modified: count(&|k| k == "304"),
        errors: count(&|k| !is_answer(k)),
        outcomes,
        elapsed: schedule.duration,
        latency_us,
        body_bytes,
    })
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One client: requests until the stop, reconnecting when its connection
/// breaks (each break counted).
async fn client(shared: Arc<Shared>) -> anyhow::Result<Tally> {
    let mut tally = Tally {
        latency_us: Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        outcomes: BTreeMap::new(),
        body_bytes: 0,
    };
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        let sent = Instant::now();
        if sent >= shared.stop_at {
            return Ok(tally);
        }
        let outcome = match sender.as_mut() {
            Some(s) => request(s, &shared).await,
            None => match connect(shared.addr).await {
                Ok(mut s) => {
                    let o = request(&mut s, &shared).await;
                    sender = Some(s);
                    o
                }
                Err(_) => Err(()),
            },
        };
        let took = sent.elapsed();
        let key = match outcome {
            Ok((status, bytes)) => {
                if status < 300 {
                    tally.body_bytes = bytes;
                }
                status.to_string()
            }
            Err(()) => {
                sender = None;
                tokio::time::sleep(RECONNECT_PAUSE).await;
                "connection".to_string()
            }
        };
        if sent >= shared.measure_from {
            let _ = tally
                .latency_us
                .record((took.as_micros() as u64).clamp(1, MAX_LATENCY_US));
            *tally.outcomes.entry(key).or_default() += 1;
        }
    }
}

/// One `GET`: the status and the body's size, or `Err` when the connection
/// broke.
async fn request(
    sender: &mut SendRequest<Empty<Bytes>>,
    shared: &Shared,
) -> Result<(u16, usize), ()> {
    let mut req = Request::get(shared.target.path.as_str()).header("host", "localhost");
    if let Some(a) = &shared.authorization {
        req = req.header("authorization", a.as_str());
    }
    if let Some(tag) = &shared.target.if_none_match {
        req = req.header("if-none-match", tag.as_str());
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|_| ())?;
    Ok((status, body.to_bytes().len()))
}

/// One `GET` on a fresh connection: the status, the `ETag` and the body
/// (the conditional scenario's tag, a sanity check before a scenario).
pub async fn probe(
    addr: SocketAddr,
    authorization: Option<&str>,
    path: &str,
) -> anyhow::Result<(u16, Option<String>, Bytes)> {
    let mut sender = connect(addr).await?;
    let mut req = Request::get(path).header("host", "localhost");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, etag, body))
}
