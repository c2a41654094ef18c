//! One trace id covers kiosk → edge → hub: a request's `traceparent` is
//! continued by the edge's spans, stored in the event envelope, carried over
//! QUIC and continued by the hub's apply — checked with an in-memory
//! OpenTelemetry exporter over a real edge, hub, QUIC link and PostgreSQL.
//! And `OTEL_EXPORTER_OTLP_ENDPOINT` makes `pahlawan edge run` export spans
//! over OTLP/HTTP to a local collector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{post, sync_status};
use edge_node::{Edge, EdgeConfig, StartOptions};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use testkit::{pg, until};
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_id_covers_kiosk_edge_and_hub() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // Global: the edge's writer is a plain thread.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let db = pg::fresh_database().await;
    let dir = common::certs_for_edges(&["jkt-1"]);
    let hub = common::hub_in_process(&db.url, dir.path(), |_| {}).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = EdgeConfig {
        edge_id: "jkt-1".into(),
        data_dir: data.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hub: Some(common::hub_link(&hub, dir.path(), "jkt-1")),
        ..EdgeConfig::default()
    };
    cfg.rate_limits.admin_per_minute = 1_000_000;
    let edge = Edge::start(cfg, StartOptions::default()).await.unwrap();
    let base = format!("http://{}", edge.local_addr().unwrap());
    // A first scrape of the hub: its saturation is measured between scrapes.
    reqwest::get(format!("http://{}/metrics", hub.http_addr()))
        .await
        .unwrap();
    let c = common::admin_client(data.path());
    let provider_id = common::seed(&c, &base, 1).await;

    // The kiosk's request, with its trace context.
    let resp = c
        .post(format!("{base}/api/v1/surplus"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .json(&common::surplus_body(&provider_id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // And one without: the edge starts a trace of its own for it.
    let (s, _) = post(
        &c,
        format!("{base}/api/v1/surplus"),
        common::surplus_body(&provider_id, 2),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    until("the hub acknowledged everything", async || {
        sync_status(&c, &base)
            .await
            .is_some_and(|s| s["backlog"] == 0 && s["acked_seq"].as_u64() > Some(0))
    })
    .await;

    let spans = exporter.get_finished_spans().unwrap();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|s| format!("{:032x}", s.span_context.trace_id()) == TRACE_ID)
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
    for want in [
        "http.request",
        "matching",
        "store.commit",
        "hub.apply_event",
    ] {
        assert!(
            names.contains(&want),
            "{want} missing from the trace: {names:?}"
        );
    }
    // The edge's request span is the child of the kiosk's span.
    let request = in_trace.iter().find(|s| s.name == "http.request").unwrap();
    assert_eq!(format!("{:016x}", request.parent_span_id), PARENT_SPAN);
    // The hub's spans continue the edge's (not the kiosk's) span: the
    // envelope carried the edge's context.
    let edge_span_ids: Vec<String> = in_trace
        .iter()
        .filter(|s| s.name != "hub.apply_event")
        .map(|s| format!("{:016x}", s.span_context.span_id()))
        .collect();
    for hub_span in in_trace.iter().filter(|s| s.name == "hub.apply_event") {
        assert!(
            edge_span_ids.contains(&format!("{:016x}", hub_span.parent_span_id)),
            "a hub span's parent is an edge span"
        );
    }
    // The batch-level spans exist too, each a root of its own.
    for root in ["outbox.publish", "hub.apply"] {
        assert!(
            spans.iter().any(
                |s| s.name == root && s.parent_span_id == opentelemetry::trace::SpanId::INVALID
            ),
            "{root} recorded as a root span"
        );
    }
    // Posts without a traceparent still get a trace of their own that
    // reaches the hub (not the kiosk's id).
    let other: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "hub.apply_event")
        .filter(|s| format!("{:032x}", s.span_context.trace_id()) != TRACE_ID)
        .collect();
    assert!(
        !other.is_empty(),
        "the post without a traceparent got an edge-started trace that reaches the hub"
    );
    // The metrics agree with what happened: the hub applied every event the
    // edge committed, one edge is connected, and nothing waits on the edge.
    let scrape =
        |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    let hub_text = scrape(format!("http://{}/metrics", hub.http_addr())).await;
    let edge_text = scrape(format!("{base}/metrics")).await;
    let committed = edge.committed_seq() as f64;
    assert_eq!(value(&hub_text, "hub_events_applied_total"), committed);
    assert_eq!(value(&hub_text, "hub_sessions_open"), 1.0);
    assert_eq!(
        value(&hub_text, "hub_replication_lag_seconds_count"),
        committed,
        "one lag observation per event applied"
    );
    let saturation = value(&hub_text, "matching_engine_saturation_ratio");
    assert!(
        saturation > 0.0 && saturation <= 1.0,
        "batches were applied since the first scrape: {saturation}"
    );
    assert_eq!(value(&edge_text, "outbox_backlog_events"), 0.0);
    edge.shutdown().await;
    hub.shutdown().await;
}

/// What the collector received: (content type, body) per export.
type Exports = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A local OTLP/HTTP collector: records every `POST /v1/traces`.
async fn collector() -> (SocketAddr, Exports) {
    let got: Exports = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push((ct, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_run_exports_spans_over_otlp_when_asked() {
    let (addr, got) = collector().await;
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(["edge", "run", "--data-dir", d, "--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut banner).unwrap();
    let base = banner
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let c = common::admin_client(data.path());
    let (s, _) = post(
        &c,
        format!("{base}/api/v1/providers"),
        json!({"name": "Warung", "lat": -6.2, "lon": 106.816,
               "contact_phone": "+62 21 1", "contact_email": "w@example.org"}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201);
    let resp = c
        .get(format!("{base}/api/v1/sync"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = got.lock().unwrap().iter().any(|(ct, body)| {
            ct.starts_with("application/x-protobuf")
                && body.windows(16).any(|w| w == trace_bytes.as_slice())
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no OTLP export carried the request's trace id"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
