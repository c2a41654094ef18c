//! Travel times from an OSRM-compatible service over real HTTP on loopback,
//! against a fake whose behaviour the tests switch: answers are used,
//! failures open the breaker and the open breaker makes no request, the probe
//! closes or reopens it, a hanging or cancelled call leaves no connection and
//! no task behind, and the decoders are total.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/osrm_fake.rs"]
mod osrm_fake;

use std::sync::Arc;

use edge_core::matching::travel_time;
use edge_node::clock::ManualClock;
use edge_node::routing::osrm::{MAX_BODY_BYTES, decode_route, decode_table};
use edge_node::routing::{
    BreakerState, DecodeError, OsrmClient, RoutingConfig, RoutingError, Source, TravelEstimate,
    TravelTimes,
};
use osrm_fake::{FakeOsrm, Mode, served_secs};
use proptest::prelude::*;
use sync_protocol::{Duration, GeoPoint, Timestamp};

const SPEED_KMH: f64 = 20.0;

fn p(lat: f64, lon: f64) -> GeoPoint {
    GeoPoint::new(lat, lon).expect("valid")
}

/// Monas, Jakarta; every coordinate here has at most six decimals, so what
/// the fake reads back from the URL is the very same point.
fn from() -> GeoPoint {
    p(-6.175_392, 106.827_153)
}

fn destinations(n: usize) -> Vec<GeoPoint> {
    (0..n)
        .map(|i| p(-6.2 - 0.01 * i as f64, 106.8 + 0.005 * i as f64))
        .collect()
}

fn served(from: GeoPoint, to: GeoPoint) -> Duration {
    Duration::from_ms((served_secs(from, to) * 1_000.0).ceil() as i64)
}

fn haversine(from: GeoPoint, to: &[GeoPoint]) -> Vec<Duration> {
    to.iter()
        .map(|q| travel_time(from.haversine_km(q), SPEED_KMH))
        .collect()
}

struct Setup {
    server: FakeOsrm,
    clock: Arc<ManualClock>,
    tt: TravelTimes,
}

impl Setup {
    fn osrm(&self) -> &OsrmClient {
        self.tt.osrm().expect("configured")
    }

    fn breaker(&self) -> BreakerState {
        self.osrm().breaker_state()
    }

    async fn estimate(&self, to: &[GeoPoint]) -> TravelEstimate {
        self.tt.travel_times(from(), to, SPEED_KMH).await
    }
}

/// A fake in `mode` and travel times pointed at it; `edit` adjusts the config.
fn setup(mode: Mode, edit: impl FnOnce(&mut RoutingConfig)) -> Setup {
    let server = FakeOsrm::start(mode);
    let mut config = RoutingConfig {
        osrm_url: Some(server.url()),
        // Generous for calls that answer; the hanging tests set their own.
        timeout_ms: 5_000,
        ..RoutingConfig::default()
    };
    edit(&mut config);
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_800_000_000_000)));
    let tt = TravelTimes::new(&config, clock.clone()).expect("valid config");
    Setup { server, clock, tt }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn answers_are_parsed_and_used() {
    let s = setup(Mode::Answer, |_| {});
    let to = destinations(3);
    let e = s.estimate(&to).await;
    assert_eq!(e.source, Source::Osrm);
    assert_eq!(e.haversine_filled, 0);
    let expected: Vec<Duration> = to.iter().map(|q| served(from(), *q)).collect();
    assert_eq!(e.durations, expected);
    assert_ne!(
        e.durations,
        haversine(from(), &to),
        "the fake's speed is not ours"
    );
    assert_eq!(
        s.server.targets(),
        [
            "/table/v1/driving/106.827153,-6.175392;106.800000,-6.200000;\
          106.805000,-6.210000;106.810000,-6.220000?sources=0&annotations=duration"
        ]
    );
    let snap = s.tt.snapshot();
    assert_eq!(
        (snap.calls_ok, snap.calls_failed, snap.haversine_fallbacks),
        (1, 0, 0)
    );
    // Every call brings its own connection and closes it when done.
    s.server.wait_no_open_connections().await;
    assert_eq!(s.server.accepted(), 1);
}

#[tokio::test]
async fn route_answers_are_parsed() {
    let s = setup(Mode::Answer, |_| {});
    let to = destinations(1)[0];
    let d = s.osrm().route(from(), to).await.expect("a route");
    assert_eq!(d, served(from(), to));
    assert_eq!(
        s.server.targets(),
        ["/route/v1/driving/106.827153,-6.175392;106.800000,-6.200000?overview=false"]
    );
}

#[tokio::test]
async fn unroutable_destinations_fall_back_one_by_one() {
    let s = setup(Mode::AnswerWithNulls, |_| {});
    let to = destinations(4);
    let e = s.estimate(&to).await;
    assert_eq!(e.source, Source::Osrm);
    assert_eq!(e.haversine_filled, 2);
    let h = haversine(from(), &to);
    // The fake nulls the 1st and 3rd destination (its row's odd columns).
    let expected = vec![h[0], served(from(), to[1]), h[2], served(from(), to[3])];
    assert_eq!(e.durations, expected);
    assert_eq!(s.breaker(), BreakerState::Closed, "a null is an answer");
}

#[tokio::test]
async fn destinations_beyond_the_maximum_are_haversine() {
    let s = setup(Mode::Answer, |c| c.max_destinations = 3);
    let to = destinations(5);
    let e = s.estimate(&to).await;
    assert_eq!(e.source, Source::Osrm);
    assert_eq!(e.haversine_filled, 2);
    let h = haversine(from(), &to);
    let routed: Vec<Duration> = to[..3].iter().map(|q| served(from(), *q)).collect();
    assert_eq!(e.durations[..3], routed);
    assert_eq!(e.durations[3..], h[3..]);
    let target = &s.server.targets()[0];
    assert_eq!(
        target.matches(';').count(),
        3,
        "one source and three: {target}"
    );
    // The client itself refuses a longer table outright, without a request.
    let err = s.osrm().table(from(), &to).await.expect_err("too many");
    assert!(
        matches!(err, RoutingError::TooManyDestinations { count: 5, max: 3 }),
        "{err:?}"
    );
    assert_eq!(s.server.requests(), 1);
}

#[tokio::test]
async fn three_failures_open_the_breaker_and_the_fourth_call_makes_no_request() {
    let s = setup(Mode::Fail, |_| {});
    let to = destinations(2);
    for n in 1..=3 {
        let e = s.estimate(&to).await;
        assert_eq!(e.source, Source::Haversine, "call {n}");
        assert_eq!(e.durations, haversine(from(), &to));
        assert_eq!(s.server.requests(), n);
    }
    assert_eq!(s.breaker(), BreakerState::Open);
    s.server.set(Mode::Answer);
    let e = s.estimate(&to).await;
    assert_eq!(e.source, Source::Haversine);
    assert_eq!(e.durations, haversine(from(), &to));
    assert_eq!(s.server.requests(), 3, "the open breaker made no request");
    assert_eq!(s.server.accepted(), 3, "nor a connection");
    let snap = s.tt.snapshot();
    assert_eq!(
        (snap.calls_ok, snap.calls_failed, snap.calls_short_circuited),
        (0, 3, 1)
    );
    assert_eq!((snap.haversine_fallbacks, snap.breaker_state), (4, 1.0));
}

/// Opens the breaker of `s` with three failed calls.
async fn open_breaker(s: &Setup) {
    s.server.set(Mode::Fail);
    for _ in 0..3 {
        s.estimate(&destinations(1)).await;
    }
    assert_eq!(s.breaker(), BreakerState::Open);
}

#[tokio::test]
async fn after_open_for_one_probe_goes_through_and_its_success_closes() {
    let s = setup(Mode::Fail, |_| {});
    open_breaker(&s).await;
    s.server.set(Mode::Answer);
    s.clock.advance(Duration::from_ms(9_999));
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Haversine);
    assert_eq!(s.server.requests(), 3, "still open at 9.999 s");
    s.clock.advance(Duration::from_ms(1));
    assert_eq!(s.breaker(), BreakerState::HalfOpen);
    let e = s.estimate(&destinations(1)).await;
    assert_eq!(e.source, Source::Osrm, "the probe is answered and used");
    assert_eq!(s.server.requests(), 4);
    assert_eq!(s.breaker(), BreakerState::Closed);
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Osrm);
    assert_eq!(s.server.requests(), 5);
}

#[tokio::test]
async fn a_failed_probe_opens_again_with_the_timer_restarted() {
    let s = setup(Mode::Fail, |_| {});
    open_breaker(&s).await;
    s.clock.advance(Duration::from_secs(10));
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Haversine);
    assert_eq!(s.server.requests(), 4, "the probe went out");
    assert_eq!(s.breaker(), BreakerState::Open);
    s.server.set(Mode::Answer);
    s.clock.advance(Duration::from_ms(9_999));
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Haversine);
    assert_eq!(
        s.server.requests(),
        4,
        "open for another open_for after the probe"
    );
    s.clock.advance(Duration::from_ms(1));
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Osrm);
    assert_eq!(s.breaker(), BreakerState::Closed);
}

/// One row per bad answer: the mode and whether the error is the expected one.
type ErrorCheck = fn(&RoutingError) -> bool;

#[tokio::test]
async fn every_kind_of_bad_answer_is_a_typed_failure() {
    let table: [(Mode, ErrorCheck); 6] = [
        (Mode::Fail, |e| matches!(e, RoutingError::Status(500))),
        (Mode::Garbage, |e| {
            matches!(e, RoutingError::Decode(DecodeError::Json(_)))
        }),
        (
            Mode::NoRoute,
            |e| matches!(e, RoutingError::Decode(DecodeError::NotOk { code }) if code == "NoRoute"),
        ),
        (Mode::HugeDeclared, |e| {
            matches!(
                e,
                RoutingError::BodyTooLarge {
                    limit: MAX_BODY_BYTES
                }
            )
        }),
        (Mode::HugeChunked, |e| {
            matches!(
                e,
                RoutingError::BodyTooLarge {
                    limit: MAX_BODY_BYTES
                }
            )
        }),
        (Mode::Hang, |e| matches!(e, RoutingError::Timeout(_))),
    ];
    for (mode, is_expected) in table {
        // A threshold the table never reaches: each row meets a closed breaker.
        let s = setup(mode, |c| {
            // Short only where the deadline is the point: a loaded machine
            // must not turn a 2 MiB body into a timeout.
            c.timeout_ms = if mode == Mode::Hang { 200 } else { 5_000 };
            c.failure_threshold = 100;
        });
        let err = s
            .osrm()
            .table(from(), &destinations(2))
            .await
            .expect_err("a failure");
        assert!(is_expected(&err), "{mode:?}: {err:?}");
        let e = s.estimate(&destinations(2)).await;
        assert_eq!(e.source, Source::Haversine, "{mode:?}");
        let snap = s.tt.snapshot();
        // A coherent refusal (NoRoute) is the service working: the breaker
        // counts it as a success.
        let want = if mode == Mode::NoRoute {
            (2, 0)
        } else {
            (0, 2)
        };
        assert_eq!((snap.calls_ok, snap.calls_failed), want, "{mode:?}");
        assert_eq!(s.osrm().breaker_state(), BreakerState::Closed);
        s.server.wait_no_open_connections().await;
    }
}

#[tokio::test]
async fn a_hanging_service_costs_the_deadline_and_its_connection_is_closed() {
    let s = setup(Mode::Hang, |c| c.timeout_ms = 100);
    let to = destinations(2);
    let e = s.estimate(&to).await;
    assert_eq!(e.source, Source::Haversine);
    assert_eq!(e.durations, haversine(from(), &to));
    assert_eq!(s.server.requests(), 1, "the request reached the server");
    assert_eq!(s.tt.snapshot().calls_failed, 1, "a timeout is a failure");
    s.server.wait_no_open_connections().await;
}

#[tokio::test]
async fn a_call_dropped_mid_flight_leaves_no_connection_and_no_task() {
    let s = setup(Mode::Hang, |c| c.timeout_ms = 10_000);
    let baseline = alive_tasks();
    let to = destinations(2);
    {
        let call = s.estimate(&to);
        tokio::pin!(call);
        tokio::select! {
            e = &mut call => panic!("a hanging service answered: {e:?}"),
            () = s.server.wait_requests(1) => {}
        }
        assert_eq!(s.server.open_connections(), 1, "the call is in flight");
        assert_eq!(alive_tasks(), baseline, "no task spawned for the call");
    } // The call is dropped here, as when the request that needed it is cancelled.
    assert_eq!(alive_tasks(), baseline);
    s.server.wait_no_open_connections().await;
    let snap = s.tt.snapshot();
    assert_eq!(
        (snap.calls_ok, snap.calls_failed, snap.calls_cancelled),
        (0, 0, 1),
        "a cancelled call says nothing about the service"
    );
    assert_eq!(s.osrm().breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_call_dropped_by_a_caller_timeout_closes_its_connection() {
    let s = setup(Mode::Hang, |c| c.timeout_ms = 10_000);
    let baseline = alive_tasks();
    let caller = std::time::Duration::from_millis(20);
    let outcome = tokio::time::timeout(caller, s.estimate(&destinations(1))).await;
    assert!(outcome.is_err(), "the caller gave up first");
    assert_eq!(alive_tasks(), baseline);
    s.server.wait_no_open_connections().await;
    assert_eq!(s.tt.snapshot().calls_cancelled, 1);
}

#[tokio::test]
async fn a_dropped_probe_lets_the_next_call_probe() {
    let s = setup(Mode::Fail, |c| c.timeout_ms = 10_000);
    open_breaker(&s).await;
    s.clock.advance(Duration::from_secs(10));
    s.server.set(Mode::Hang);
    let to = destinations(1);
    {
        let probe = s.estimate(&to);
        tokio::pin!(probe);
        tokio::select! {
            e = &mut probe => panic!("a hanging service answered: {e:?}"),
            () = s.server.wait_requests(4) => {}
        }
        assert_eq!(s.breaker(), BreakerState::HalfOpen);
        assert_eq!(
            s.estimate(&destinations(1)).await.source,
            Source::Haversine,
            "one probe at a time"
        );
        assert_eq!(s.server.requests(), 4);
    }
    s.server.wait_no_open_connections().await;
    s.server.set(Mode::Answer);
    assert_eq!(s.estimate(&destinations(1)).await.source, Source::Osrm);
    assert_eq!(s.server.requests(), 5);
    assert_eq!(s.breaker(), BreakerState::Closed);
}

#[tokio::test]
async fn an_empty_destination_list_makes_no_request() {
    let s = setup(Mode::Answer, |_| {});
    let e = s.estimate(&[]).await;
    assert!(e.durations.is_empty());
    assert_eq!(s.osrm().table(from(), &[]).await.expect("empty"), vec![]);
    assert_eq!(s.server.requests(), 0);
}

/// One row per malformed body: the body, how many destinations were asked
/// for, and whether the error is the expected one.
type DecodeCheck = fn(&DecodeError) -> bool;

#[test]
fn the_table_decoder_turns_bad_input_into_typed_errors() {
    let huge = format!(
        r#"{{"code":"Ok","durations":[[0{}]]}}"#,
        ",1".repeat(200_000)
    );
    let table: Vec<(&[u8], usize, DecodeCheck)> = vec![
        (b"", 1, |e| matches!(e, DecodeError::Json(_))),
        (br#"{"code":"Ok","durations":[[0,1"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (b"\xff\xfe\x00", 1, |e| matches!(e, DecodeError::Json(_))),
        (b"[]", 1, |e| matches!(e, DecodeError::Json(_))),
        (b"null", 1, |e| matches!(e, DecodeError::Json(_))),
        (br#"{"durations":[[0,1]]}"#, 1, |e| {
            matches!(e, DecodeError::NoCode)
        }),
        (
            br#"{"code":"NoTable","durations":[[0,1]]}"#,
            1,
            |e| matches!(e, DecodeError::NotOk { code } if code == "NoTable"),
        ),
        (br#"{"code":"Ok"}"#, 1, |e| {
            matches!(e, DecodeError::Rows { rows: 0 })
        }),
        (br#"{"code":"Ok","durations":[]}"#, 1, |e| {
            matches!(e, DecodeError::Rows { rows: 0 })
        }),
        (br#"{"code":"Ok","durations":[[0,1],[1,0]]}"#, 1, |e| {
            matches!(e, DecodeError::Rows { rows: 2 })
        }),
        (br#"{"code":"Ok","durations":[[0]]}"#, 1, |e| {
            matches!(
                e,
                DecodeError::Columns {
                    expected: 2,
                    got: 1
                }
            )
        }),
        (br#"{"code":"Ok","durations":[[0,1,2,3]]}"#, 2, |e| {
            matches!(
                e,
                DecodeError::Columns {
                    expected: 3,
                    got: 4
                }
            )
        }),
        (br#"{"code":"Ok","durations":[["0","1"]]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":"Ok","durations":[[0,{"s":1}]]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":"Ok","durations":[0,1]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":1,"durations":[[0,1]]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (
            br#"{"code":"Ok","durations":[[0,-1.5]]}"#,
            1,
            |e| matches!(e, DecodeError::Duration(d) if *d == -1.5),
        ),
        (br#"{"code":"Ok","durations":[[0,NaN]]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":"Ok","durations":[[0,1e400]]}"#, 1, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":"Ok","durations":[[0,1e300]]}"#, 1, |e| {
            matches!(e, DecodeError::Duration(_))
        }),
        (huge.as_bytes(), 1, |e| {
            matches!(
                e,
                DecodeError::Columns {
                    expected: 2,
                    got: 200_001
                }
            )
        }),
    ];
    for (i, (body, n, is_expected)) in table.into_iter().enumerate() {
        let err = decode_table(body, n).expect_err(&format!("row {i}"));
        assert!(is_expected(&err), "row {i}: {err:?}");
    }
    // And the good shape, with an unreachable destination.
    let ok = decode_table(br#"{"code":"Ok","durations":[[0,1.5,null]],"x":1}"#, 2);
    assert_eq!(
        ok.expect("valid"),
        vec![Some(Duration::from_ms(1_500)), None]
    );
}

#[test]
fn the_route_decoder_turns_bad_input_into_typed_errors() {
    let table: [(&[u8], DecodeCheck); 7] = [
        (b"", |e| matches!(e, DecodeError::Json(_))),
        (br#"{"code":"Ok","routes":[{"duration":"#, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (
            br#"{"code":"NoRoute","routes":[]}"#,
            |e| matches!(e, DecodeError::NotOk { code } if code == "NoRoute"),
        ),
        (br#"{"code":"Ok","routes":[]}"#, |e| {
            matches!(e, DecodeError::NoRoute)
        }),
        (br#"{"code":"Ok"}"#, |e| matches!(e, DecodeError::NoRoute)),
        (br#"{"code":"Ok","routes":[{"distance":1}]}"#, |e| {
            matches!(e, DecodeError::Json(_))
        }),
        (br#"{"code":"Ok","routes":[{"duration":-3}]}"#, |e| {
            matches!(e, DecodeError::Duration(_))
        }),
    ];
    for (i, (body, is_expected)) in table.into_iter().enumerate() {
        let err = decode_route(body).expect_err(&format!("row {i}"));
        assert!(is_expected(&err), "row {i}: {err:?}");
    }
    let ok = decode_route(br#"{"code":"Ok","routes":[{"duration":61.0001},{"duration":1}]}"#);
    assert_eq!(ok.expect("valid"), Duration::from_ms(61_001));
}

#[test]
fn a_long_code_is_cut_in_the_error() {
    let body = format!(r#"{{"code":"{}"}}"#, "X".repeat(10_000));
    match decode_table(body.as_bytes(), 1) {
        Err(DecodeError::NotOk { code }) => assert_eq!(code.len(), 64),
        other => panic!("{other:?}"),
    }
}

/// Valid answers to mutate.
const SEEDS: [&str; 2] = [
    r#"{"code":"Ok","durations":[[0,12.5,null,3]],"sources":[{"location":[106.8,-6.2]}]}"#,
    r#"{"code":"Ok","routes":[{"duration":61.2,"distance":612,"legs":[]}],"waypoints":[]}"#,
];

proptest! {
    #[test]
    fn decoders_never_panic_on_random_bytes(
        body in prop::collection::vec(any::<u8>(), 0..512),
        n in 0usize..8,
    ) {
        let _ = decode_table(&body, n);
        let _ = decode_route(&body);
    }

    #[test]
    fn decoders_never_panic_on_mutated_answers(
        seed in 0usize..SEEDS.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        n in 0usize..5,
    ) {
        let mut body = SEEDS[seed].as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        let _ = decode_table(&body, n);
        let _ = decode_route(&body);
    }
}

#[tokio::test]
async fn a_point_outside_the_map_never_opens_the_breaker() {
    let s = setup(Mode::NoSegment, |c| c.failure_threshold = 3);
    for _ in 0..5 {
        let err = s
            .osrm()
            .table(from(), &destinations(2))
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, RoutingError::Refused { status: 400, code } if code == "NoSegment"),
            "{err:?}"
        );
        let e = s.estimate(&destinations(2)).await;
        assert_eq!(e.source, Source::Haversine, "that query falls back");
    }
    assert_eq!(
        s.osrm().breaker_state(),
        BreakerState::Closed,
        "ten refusals in a row: the service is up, routing stays on"
    );
    assert_eq!(s.tt.snapshot().calls_failed, 0);
    s.server.wait_no_open_connections().await;
}
