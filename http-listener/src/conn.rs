//! One connection's life: what it is ([`ConnInfo`], handed to every
//! request), its phase (waiting for a header, a request in flight, idle)
//! and the deadline that phase has, the body deadline, HSTS.
//!
//! The header and idle timeouts are kept here rather than by hyper's
//! `header_read_timeout`: hyper starts that timer whenever it waits for a
//! request head, kept-alive idle time included, so it cannot tell a slow
//! header (10 s) from an idle connection (60 s).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a request reached the server; in every request's extensions (beside
/// axum's `ConnectInfo<SocketAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The connection is HTTPS.
    pub tls: bool,
}

impl ConnInfo {
    /// Credentials (a session or device cookie) may be set or accepted on
    /// this connection: it is HTTPS, or it never left the machine.
    pub fn may_carry_credentials(&self) -> bool {
        // `to_canonical`: a dual-stack socket reports 127.0.0.1 as
        // ::ffff:127.0.0.1, which is loopback too.
        self.tls || self.peer.ip().to_canonical().is_loopback()
    }
}

/// Whether a request may carry credentials: its [`ConnInfo`] says so. A
/// request with none (built in a test, not from a socket) may not.
pub fn may_carry_credentials<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<ConnInfo>()
        .is_some_and(ConnInfo::may_carry_credentials)
}

/// The body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Whether `err`, or an error it was caused by, is a [`BodyTimeout`]: an
/// extractor's rejection tells a body that came too late (408) from one
/// that was malformed.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Why the listener closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Header,
    Idle,
}

impl Expiry {
    pub fn label(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
        }
    }
}

#[derive(Debug)]
struct Phase {
    in_flight: u32,
    /// When the current request's first byte (or the connection) arrived,
    /// while no request is in flight.
    head_since: Option<Instant>,
    idle_since: Instant,
}

/// One connection's phase, shared by its I/O, its service and its task.
#[derive(Debug)]
pub struct ConnState {
    phase: Mutex<Phase>,
    /// Rung when the deadline moved earlier: a new request's first byte
    /// (idle → header), the last request done (none → idle).
    moved: Notify,
    header: Duration,
    idle: Duration,
}

impl ConnState {
    /// A new connection: its header is due within `header` from now.
    pub fn new(header: Duration, idle: Duration) -> Arc<ConnState> {
        let now = Instant::now();
        Arc::new(ConnState {
            phase: Mutex::new(Phase {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
            }),
            moved: Notify::new(),
            header,
            idle,
        })
    }

    /// The next deadline and what passes with it; none while a request is
    /// in flight.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        let p = self.phase.lock();
        if p.in_flight > 0 {
            return None;
        }
        Some(match p.head_since {
            Some(t) => (t + self.header, Expiry::Header),
            None => (p.idle_since + self.idle, Expiry::Idle),
        })
    }

    pub async fn moved(&self) {
        self.moved.notified().await;
    }

    fn bytes_arrived(&self) {
        let mut p = self.phase.lock();
        if p.in_flight == 0 && p.head_since.is_none() {
            p.head_since = Some(Instant::now());
            drop(p);
            self.moved.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut p = self.phase.lock();
        p.in_flight += 1;
        p.head_since = None;
        InFlight(self.clone())
    }
}

/// A request in flight until its response body is done (or dropped).
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase.lock();
        p.in_flight -= 1;
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
            p.head_since = None;
            drop(p);
            // From no deadline to the idle one: the connection's task waits
            // on none until told.
            self.0.moved.notify_one();
        }
    }
}

/// The socket (or TLS stream), telling the phase when bytes arrive.
pub struct Tracked<I> {
    io: I,
    state: Arc<ConnState>,
}

impl<I> Tracked<I> {
    pub fn new(io: I, state: Arc<ConnState>) -> Tracked<I> {
        Tracked { io, state }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes
/// (the timer starts at the first poll, so a body nobody reads costs none).
struct DeadlineBody {
    inner: Body,
    limit: Duration,
    due: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let due = self.due;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body holding its request's [`InFlight`] until it is done.
struct DoneBody {
    inner: Body,
    in_flight: Option<InFlight>,
}

impl http_body::Body for DoneBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.in_flight = None;
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What every request of one connection passes through on its way to the
/// application: its phase, the body deadline, the connection's facts,
/// HSTS on HTTPS.
#[derive(Clone)]
pub struct ConnService {
    pub app: axum::Router,
    pub state: Arc<ConnState>,
    pub info: ConnInfo,
    pub body_timeout: Duration,
    /// `Strict-Transport-Security` for HTTPS responses.
    pub hsts: Option<HeaderValue>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.request_started();
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(self.info);
        parts
            .extensions
            .insert(axum::extract::ConnectInfo(self.info.peer));
        let body = Body::new(DeadlineBody {
            inner: Body::new(body),
            limit: self.body_timeout,
            due: Instant::now() + self.body_timeout,
            timer: None,
        });
        let req = Request::from_parts(parts, body);
        let app = self.app.clone();
        let hsts = self.hsts.clone();
        Box::pin(async move {
            let resp = tower::ServiceExt::oneshot(app, req).await?;
            let (mut parts, body) = resp.into_parts();
            if let Some(v) = hsts {
                parts
                    .headers
                    .entry(header::STRICT_TRANSPORT_SECURITY)
                    .or_insert(v);
            }
            let body = Body::new(DoneBody {
                inner: body,
                in_flight: Some(in_flight),
            });
            Ok(Response::from_parts(parts, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ConnInfo;

    fn plain_from(peer: &str) -> ConnInfo {
        ConnInfo {
            peer: peer.parse().expect("a test address"),
            local: "[::]:8080".parse().expect("a test address"),
            tls: false,
        }
    }

    #[test]
    fn credentials_travel_over_plain_http_only_from_loopback_in_either_family() {
        for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            assert!(plain_from(peer).may_carry_credentials(), "{peer}");
        }
        for peer in [
            "192.168.1.10:5000",
            "[::ffff:192.168.1.10]:5000",
            "[fe80::1]:5000",
        ] {
            assert!(!plain_from(peer).may_carry_credentials(), "{peer}");
        }
        let tls = ConnInfo {
            tls: true,
            ..plain_from("192.168.1.10:5000")
        };
        assert!(tls.may_carry_credentials());
    }
}
