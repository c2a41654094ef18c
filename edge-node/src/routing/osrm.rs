//! The shell around an OSRM-compatible routing service: `GET /table` and
//! `GET /route` over HTTP/1.1, each call admitted by the [`Breaker`], bounded
//! by a deadline and a body cap, and decoded by total functions.
//!
//! Each call opens its own connection and drives it inside the caller's
//! future (hyper's connection future is polled next to the request instead of
//! being spawned). When the call ends — answered, failed, timed out, or
//! dropped because whoever needed it went away — the socket is dropped with
//! it: no task and no connection outlives a call. The price is one TCP
//! handshake per call, which is small beside a routing query on a service
//! that runs next to the edge (OSRM has no TLS of its own; it is deployed
//! beside its callers, so only `http://` is accepted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
use sync_protocol::{Duration, GeoPoint};
use tokio::net::TcpStream;

use crate::clock::Clock;
use edge_core::breaker::{Breaker, BreakerConfig, BreakerState, Permit};

/// Largest response body read from the service; a larger one is a failure.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest duration believed from the service (a week); anything longer is
/// a broken answer, not a trip food survives.
pub const MAX_DURATION_SECS: f64 = 7.0 * 24.0 * 3_600.0;
/// Longest `code` kept in an error (the rest is the service's to keep).
const MAX_CODE_CHARS: usize = 64;

/// Why a routing call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("the routing breaker is open: call refused without I/O")]
    BreakerOpen,
    #[error("{count} destinations in one call (at most {max})")]
    TooManyDestinations { count: usize, max: usize },
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot connect to the routing service: {0}")]
    Connect(#[source] std::io::Error),
    #[error("HTTP exchange with the routing service failed: {0}")]
    Http(#[source] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[source] hyper::http::Error),
    #[error("the routing service closed the connection before answering")]
    Closed,
    #[error("the routing service answered HTTP {0}")]
    Status(u16),
    /// The service is up and refused this query (HTTP 4xx with an OSRM
    /// `code`, e.g. `NoSegment` for a point outside its map).
    #[error("the routing service refused the query: HTTP {status}, code {code:?}")]
    Refused { status: u16, code: String },
    #[error("the routing service's answer is over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the routing service's answer is unusable: {0}")]
    Decode(#[from] DecodeError),
}

impl RoutingError {
    /// The service answered coherently, only not with a route (no segment
    /// near a point, no route between them): the call failed, the service
    /// did not — the breaker counts it as a success, so one recipient
    /// outside the map does not turn routing off for the whole edge.
    pub fn is_service_answer(&self) -> bool {
        matches!(
            self,
            RoutingError::Refused { .. }
                | RoutingError::Decode(DecodeError::NotOk { .. } | DecodeError::NoRoute)
        )
    }
}

/// Why a response body could not be used. Decoding is total: any bytes give
/// a value or one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not the expected JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no `code` in the answer")]
    NoCode,
    #[error("the service answered code {code:?}")]
    NotOk { code: String },
    #[error("expected exactly one row of durations, got {rows}")]
    Rows { rows: usize },
    #[error("expected {expected} durations in the row, got {got}")]
    Columns { expected: usize, got: usize },
    #[error("duration {0} s is negative, not finite or over a week")]
    Duration(f64),
    #[error("the answer holds no route")]
    NoRoute,
}

/// How one client calls the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsrmSettings {
    /// Deadline for one whole call: connect, request, response, body.
    pub timeout: std::time::Duration,
    pub breaker: BreakerConfig,
    /// Most destinations in one `table` call.
    pub max_destinations: usize,
}

impl Default for OsrmSettings {
    fn default() -> OsrmSettings {
        OsrmSettings {
            timeout: std::time::Duration::from_millis(300),
            breaker: BreakerConfig::default(),
            max_destinations: 100,
        }
    }
}

/// What is wrong with a routing service URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    #[error("not a URL: {0}")]
    Parse(String),
    #[error("scheme {0:?} is not supported: use http:// (OSRM runs beside the edge, without TLS)")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry credentials")]
    UserInfo,
    #[error("the URL must not carry a query or fragment")]
    Query,
}

/// Where the service is, split once at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host to connect to (an IPv6 literal without brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// Path prefix before `/table/...`, without a trailing slash.
    base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, InvalidUrl> {
        if url.contains('#') {
            return Err(InvalidUrl::Query);
        }
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| InvalidUrl::Parse(e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(InvalidUrl::Scheme(other.to_owned())),
            None => return Err(InvalidUrl::Scheme(String::new())),
        }
        let authority = uri.authority().ok_or(InvalidUrl::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(InvalidUrl::UserInfo);
        }
        if uri.query().is_some() {
            return Err(InvalidUrl::Query);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(InvalidUrl::NoHost);
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for `GET /table` from `from` to each of `to`.
    pub fn table_target(&self, from: GeoPoint, to: &[GeoPoint]) -> String {
        format!(
            "{}/table/v1/driving/{}?sources=0&annotations=duration",
            self.base_path,
            coordinates(from, to)
        )
    }

    /// The request target for `GET /route` from `from` to `to`.
    pub fn route_target(&self, from: GeoPoint, to: GeoPoint) -> String {
        format!(
            "{}/route/v1/driving/{}?overview=false",
            self.base_path,
            coordinates(from, &[to])
        )
    }
}

/// `lon,lat;lon,lat;...` with six decimals (about 0.1 m), OSRM's order.
fn coordinates(from: GeoPoint, to: &[GeoPoint]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(24 * (to.len() + 1));
    for (i, p) in std::iter::once(&from).chain(to).enumerate() {
        let sep = if i == 0 { "" } else { ";" };
        // Writing to a String cannot fail.
        let _ = write!(s, "{sep}{:.6},{:.6}", p.lon(), p.lat());
    }
    s
}

/// Call counters for metrics.
#[derive(Debug, Default)]
pub struct CallCounters {
    /// Calls answered and decoded.
    pub ok: AtomicU64,
    /// Calls that went out and failed (timeout, connection, status, body).
    pub failed: AtomicU64,
    /// Calls refused by the open breaker, without I/O.
    pub short_circuited: AtomicU64,
    /// Calls dropped by their caller before an outcome.
    pub cancelled: AtomicU64,
}

/// A client for one OSRM-compatible service.
pub struct OsrmClient {
    endpoint: Endpoint,
    settings: OsrmSettings,
    breaker: Mutex<Breaker>,
    clock: Arc<dyn Clock>,
    counters: CallCounters,
}

impl std::fmt::Debug for OsrmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsrmClient")
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .field("breaker", &*self.breaker.lock())
            .finish_non_exhaustive()
    }
}

impl OsrmClient {
    pub fn new(
        base_url: &str,
        settings: OsrmSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<OsrmClient, InvalidUrl> {
        Ok(OsrmClient {
            endpoint: Endpoint::parse(base_url)?,
            settings,
            breaker: Mutex::new(Breaker::new(settings.breaker)),
            clock,
            counters: CallCounters::default(),
        })
    }

    pub fn settings(&self) -> OsrmSettings {
        self.settings
    }

    pub fn counters(&self) -> &CallCounters {
        &self.counters
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().state(self.clock.now())
    }

    /// Travel time from `from` to each of `to`; `None` where the service
    /// found no route. An empty `to` answers at once without a call.
    pub async fn table(
        &self,
        from: GeoPoint,
        to: &[GeoPoint],
    ) -> Result<Vec<Option<Duration>>, RoutingError> {
        let max = self.settings.max_destinations;
        if to.len() > max {
            return Err(RoutingError::TooManyDestinations {
                count: to.len(),
                max,
            });
        }
        if to.is_empty() {
            return Ok(Vec::new());
        }
        let target = self.endpoint.table_target(from, to);
        self.call(target, |body| decode_table(body, to.len())).await
    }

    /// Travel time from `from` to `to` along the service's best route.
    pub async fn route(&self, from: GeoPoint, to: GeoPoint) -> Result<Duration, RoutingError> {
        let target = self.endpoint.route_target(from, to);
        self.call(target, decode_route).await
    }

    /// One call: admitted by the breaker, bounded by the deadline, its
    /// outcome reported back (a dropped future reports itself abandoned).
    async fn call<T>(
        &self,
        target: String,
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, RoutingError> {
        let permit = self.breaker.lock().try_acquire(self.clock.now());
        let Some(permit) = permit else {
            self.counters
                .short_circuited
                .fetch_add(1, Ordering::Relaxed);
            return Err(RoutingError::BreakerOpen);
        };
        let in_flight = InFlight {
            client: self,
            permit: Some(permit),
        };
        let timeout = self.settings.timeout;
        let outcome = match tokio::time::timeout(timeout, self.get(&target)).await {
            Err(_elapsed) => Err(RoutingError::Timeout(timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(body)) => decode(&body).map_err(RoutingError::from),
        };
        in_flight.finish(
            outcome
                .as_ref()
                .map_or_else(RoutingError::is_service_answer, |_| true),
        );
        outcome
    }

    /// `GET target` on a fresh connection driven inside this future.
    async fn get(&self, target: &str) -> Result<Bytes, RoutingError> {
        let ep = &self.endpoint;
        let stream = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(RoutingError::Connect)?;
        // Latency matters more than packet count for one small request.
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(RoutingError::Http)?;
        let request = Request::get(target)
            .header(hyper::header::HOST, ep.authority.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(RoutingError::Request)?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(RoutingError::Http)?;
            read_body(response).await
        };
        let mut exchange = std::pin::pin!(exchange);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = &mut exchange => result,
            ended = &mut conn => match ended {
                Err(e) => Err(RoutingError::Http(e)),
                // The connection ended cleanly (the server closed after the
                // response): the exchange finishes from what was read.
                Ok(()) => exchange.await,
            },
        }
    }
}

/// A refusal's body is read up to this many bytes.
const MAX_CODE_BODY_BYTES: usize = 4_096;

/// A 2xx body of at most [`MAX_BODY_BYTES`].
async fn read_body(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Bytes, RoutingError> {
    let status = response.status();
    if status.is_client_error() {
        // OSRM explains a refused query in a small JSON body.
        let body = Limited::new(response.into_body(), MAX_CODE_BODY_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        #[derive(Deserialize)]
        struct Refusal {
            code: Option<String>,
        }
        return Err(
            match serde_json::from_slice::<Refusal>(&body)
                .ok()
                .and_then(|r| r.code)
            {
                Some(code) if code != "Ok" => RoutingError::Refused {
                    status: status.as_u16(),
                    code: code.chars().take(MAX_CODE_CHARS).collect(),
                },
                _ => RoutingError::Status(status.as_u16()),
            },
        );
    }
    if !status.is_success() {
        return Err(RoutingError::Status(status.as_u16()));
    }
    let too_large = RoutingError::BodyTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    match Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Err(e) => match e.downcast::<hyper::Error>() {
            Ok(e) => Err(RoutingError::Http(*e)),
            Err(_) => Err(RoutingError::Closed),
        },
    }
}

/// The permit of a call in flight. Finished with the call's outcome; if the
/// call's future is dropped first, it tells the breaker the call was abandoned.
struct InFlight<'a> {
    client: &'a OsrmClient,
    permit: Option<Permit>,
}

impl InFlight<'_> {
    fn finish(mut self, ok: bool) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let client = self.client;
        let now = client.clock.now();
        let (before, after) = {
            let mut breaker = client.breaker.lock();
            let before = breaker.state(now);
            if ok {
                breaker.on_success(now, permit);
            } else {
                breaker.on_failure(now, permit);
            }
            (before, breaker.state(now))
        };
        let counter = if ok {
            &client.counters.ok
        } else {
            &client.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match (before, after) {
            (BreakerState::Closed, BreakerState::Open) => tracing::warn!(
                url = %client.endpoint.authority,
                "routing service failing: breaker open, travel times fall back to haversine"
            ),
            (BreakerState::HalfOpen, BreakerState::Open) => tracing::debug!(
                url = %client.endpoint.authority,
                "routing service probe failed: breaker open again"
            ),
            (BreakerState::HalfOpen, BreakerState::Closed) => tracing::info!(
                url = %client.endpoint.authority,
                "routing service answering again: breaker closed"
            ),
            _ => {}
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.client.breaker.lock().on_abandoned(permit);
            self.client
                .counters
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Deserialize)]
struct TableBody {
    code: Option<String>,
    durations: Option<Vec<Vec<Option<f64>>>>,
}

#[derive(Deserialize)]
struct RouteBody {
    code: Option<String>,
    routes: Option<Vec<RouteEntry>>,
}

#[derive(Deserialize)]
struct RouteEntry {
    duration: f64,
}

/// Decodes a `/table` answer for `sources=0` and `destinations` points after
/// the source: `durations[0][1..]`, `None` where the service has no route.
pub fn decode_table(
    body: &[u8],
    destinations: usize,
) -> Result<Vec<Option<Duration>>, DecodeError> {
    let table: TableBody = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    check_code(table.code)?;
    let rows = table.durations.ok_or(DecodeError::Rows { rows: 0 })?;
    let [row] = rows.as_slice() else {
        return Err(DecodeError::Rows { rows: rows.len() });
    };
    let expected = destinations.saturating_add(1);
    if row.len() != expected {
        return Err(DecodeError::Columns {
            expected,
            got: row.len(),
        });
    }
    row[1..]
        .iter()
        .map(|d| d.map(seconds).transpose())
        .collect()
}

/// Decodes a `/route` answer: the first route's duration.
pub fn decode_route(body: &[u8]) -> Result<Duration, DecodeError> {
    let route: RouteBody = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    check_code(route.code)?;
    let first = route
        .routes
        .as_deref()
        .and_then(<[RouteEntry]>::first)
        .ok_or(DecodeError::NoRoute)?;
    seconds(first.duration)
}

fn check_code(code: Option<String>) -> Result<(), DecodeError> {
    match code {
        None => Err(DecodeError::NoCode),
        Some(code) if code == "Ok" => Ok(()),
        Some(code) => Err(DecodeError::NotOk {
            code: code.chars().take(MAX_CODE_CHARS).collect(),
        }),
    }
}

/// OSRM's seconds as a [`Duration`], rounded up to the millisecond.
fn seconds(s: f64) -> Result<Duration, DecodeError> {
    if !(s.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&s)) {
        return Err(DecodeError::Duration(s));
    }
    // In range by the check above: at most 604_800_000 ms.
    Ok(Duration::from_ms((s * 1_000.0).ceil() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint::new(lat, lon).expect("valid")
    }

    #[test]
    fn endpoints_parse_or_say_why_not() {
        let ok = Endpoint::parse("http://127.0.0.1:5000").expect("valid");
        assert_eq!((ok.host.as_str(), ok.port), ("127.0.0.1", 5000));
        assert_eq!(
            (ok.authority.as_str(), ok.base_path.as_str()),
            ("127.0.0.1:5000", "")
        );
        let v6 = Endpoint::parse("http://[::1]:5000/osrm/").expect("valid");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5000));
        assert_eq!(v6.base_path, "/osrm");
        let default_port = Endpoint::parse("http://osrm.internal").expect("valid");
        assert_eq!(default_port.port, 80);

        type Check = fn(&InvalidUrl) -> bool;
        let bad: [(&str, Check); 7] = [
            ("", |e| matches!(e, InvalidUrl::Parse(_))),
            ("not a url", |e| matches!(e, InvalidUrl::Parse(_))),
            ("127.0.0.1:5000", |e| matches!(e, InvalidUrl::Scheme(_))),
            (
                "https://osrm.example",
                |e| matches!(e, InvalidUrl::Scheme(s) if s == "https"),
            ),
            ("ftp://osrm.example", |e| matches!(e, InvalidUrl::Scheme(_))),
            ("http://u:p@osrm.example", |e| *e == InvalidUrl::UserInfo),
            ("http://osrm.example/?x=1", |e| *e == InvalidUrl::Query),
        ];
        for (url, is_expected) in bad {
            let err = Endpoint::parse(url).expect_err(url);
            assert!(is_expected(&err), "{url}: {err:?}");
        }
    }

    #[test]
    fn targets_are_lon_lat_with_six_decimals() {
        let ep = Endpoint::parse("http://127.0.0.1:5000/osrm").expect("valid");
        let from = p(-6.175_392_1, 106.827_153);
        let to = [p(-6.2, 106.8), p(0.0, -0.000_000_4)];
        assert_eq!(
            ep.table_target(from, &to),
            "/osrm/table/v1/driving/106.827153,-6.175392;106.800000,-6.200000;-0.000000,0.000000\
             ?sources=0&annotations=duration"
        );
        assert_eq!(
            ep.route_target(from, to[0]),
            "/osrm/route/v1/driving/106.827153,-6.175392;106.800000,-6.200000?overview=false"
        );
    }

    #[test]
    fn seconds_round_up_and_refuse_nonsense() {
        assert_eq!(seconds(0.0).ok(), Some(Duration::ZERO));
        assert_eq!(seconds(12.3401).ok(), Some(Duration::from_ms(12_341)));
        assert_eq!(
            seconds(MAX_DURATION_SECS).ok(),
            Some(Duration::from_secs(604_800))
        );
        for bad in [-0.001, f64::NAN, f64::INFINITY, MAX_DURATION_SECS + 1.0] {
            assert!(
                matches!(seconds(bad), Err(DecodeError::Duration(_))),
                "{bad}"
            );
        }
    }
}
