//! The hub over real QUIC (loopback UDP) and a real PostgreSQL: who may
//! connect, and what a session does with replays, gaps and impostors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use cloud_hub::config::TlsFiles;
use cloud_hub::{Hub, HubConfig, certs};
use sync_link::tls::client_config;
use sync_link::{read_frame, write_frame};
use sync_protocol::session::{BatchEvent, EdgeMsg, HubMsg, PROTOCOL_VERSION, RefusalReason};
use sync_protocol::wire::encode_envelope;
use sync_protocol::{EdgeId, Envelope, Event, SurplusId, Timestamp};
use testkit::pg;

struct Fixture {
    db: pg::TestDb,
    certs: tempfile::TempDir,
    hub: Hub,
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> Fixture {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let db = pg::fresh_database().await;
    let certs = tempfile::tempdir().unwrap();
    certs::init(certs.path(), &[], false).unwrap();
    let cfg = HubConfig {
        database_url: db.url.clone(),
        listen_quic: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_http: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: TlsFiles {
            ca_cert: certs.path().join(certs::CA_CERT),
            cert: certs.path().join(certs::HUB_CERT),
            key: certs.path().join(certs::HUB_KEY),
        },
        ..HubConfig::default()
    };
    let mut cfg = cfg;
    tweak(&mut cfg);
    let hub = Hub::start(cfg).await.unwrap();
    Fixture { db, certs, hub }
}

fn edge(name: &str) -> EdgeId {
    EdgeId::new(name).unwrap()
}

async fn connect(
    f: &Fixture,
    dir: &Path,
    cert: &Path,
    key: &Path,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    ep.set_default_client_config(client_config(&dir.join(certs::CA_CERT), cert, key).unwrap());
    ep.connect(f.hub.quic_addr(), certs::DEFAULT_HUB_NAME)
        .unwrap()
        .await
}

async fn session_as(
    f: &Fixture,
    cert_for: &EdgeId,
) -> (quinn::SendStream, quinn::RecvStream, quinn::Connection) {
    certs::issue_edge(f.certs.path(), cert_for).unwrap();
    let conn = connect(
        f,
        f.certs.path(),
        &certs::edge_cert_path(f.certs.path(), cert_for),
        &certs::edge_key_path(f.certs.path(), cert_for),
    )
    .await
    .expect("a CA-signed edge connects");
    let (send, recv) = conn.open_bi().await.unwrap();
    (send, recv, conn)
}

fn batch(edge: &EdgeId, first: u64, n: u64) -> EdgeMsg {
    EdgeMsg::Batch {
        first_seq: first,
        events: (first..first + n)
            .map(|seq| BatchEvent {
                cell: 0,
                envelope: encode_envelope(&Envelope {
                    edge_id: edge.clone(),
                    seq,
                    lease_epoch: 0,
                    at: Timestamp::from_unix_ms(1_795_539_600_000 + seq as i64),
                    trace_context: None,
                    event: Event::Expired {
                        surplus_id: SurplusId::from_bytes([seq as u8; 16]),
                        version: 2,
                    },
                }),
            })
            .collect(),
    }
}

async fn hello(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    as_edge: &EdgeId,
    committed: u64,
) -> HubMsg {
    let msg = EdgeMsg::Hello {
        protocol: PROTOCOL_VERSION,
        edge_id: as_edge.clone(),
        cells: vec![],
        committed_seq: committed,
        lease_epoch: 0,
    };
    write_frame(send, &msg).await.unwrap();
    next(recv).await
}

async fn next(recv: &mut quinn::RecvStream) -> HubMsg {
    loop {
        let msg = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            read_frame::<HubMsg, _>(recv),
        )
        .await
        .expect("the hub answers")
        .expect("a frame")
        .expect("not closed");
        if !matches!(msg, HubMsg::Heartbeat { .. } | HubMsg::Registry { .. }) {
            return msg;
        }
    }
}

async fn log_of(f: &Fixture, e: &EdgeId) -> (i64, i64) {
    let c = cloud_hub::db::connect(&f.db.url).await.unwrap();
    let r = c
        .query_one(
            "SELECT count(*), COALESCE(max(seq), 0) FROM event_log WHERE edge_id = $1",
            &[&e.as_str()],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn batches_apply_once_replays_change_nothing_and_gaps_are_refused() {
    let f = start().await;
    let me = edge("jkt-1");
    let (mut send, mut recv, _conn) = session_as(&f, &me).await;
    assert!(matches!(
        hello(&mut send, &mut recv, &me, 10).await,
        HubMsg::Welcome { high_water: 0, .. }
    ));
    write_frame(&mut send, &batch(&me, 1, 6)).await.unwrap();
    assert_eq!(next(&mut recv).await, HubMsg::Ack { high_water: 6 });
    assert_eq!(log_of(&f, &me).await, (6, 6));

    // A replay of old events: acknowledged, nothing written.
    write_frame(&mut send, &batch(&me, 2, 3)).await.unwrap();
    assert_eq!(next(&mut recv).await, HubMsg::Ack { high_water: 6 });
    assert_eq!(log_of(&f, &me).await, (6, 6));
    // An overlap: only the new tail is written.
    write_frame(&mut send, &batch(&me, 5, 4)).await.unwrap();
    assert_eq!(next(&mut recv).await, HubMsg::Ack { high_water: 8 });
    assert_eq!(log_of(&f, &me).await, (8, 8));
    // A gap: refused, nothing written, session over.
    write_frame(&mut send, &batch(&me, 10, 1)).await.unwrap();
    assert_eq!(
        next(&mut recv).await,
        HubMsg::Refused {
            reason: RefusalReason::Gap {
                expected: 9,
                got: 10
            }
        }
    );
    assert_eq!(log_of(&f, &me).await, (8, 8));

    // A new session resumes from the stored high-water mark.
    let (mut send, mut recv, _conn) = session_as(&f, &me).await;
    assert!(matches!(
        hello(&mut send, &mut recv, &me, 10).await,
        HubMsg::Welcome { high_water: 8, .. }
    ));
}

#[tokio::test]
async fn an_edge_cannot_speak_for_another() {
    let f = start().await;
    let me = edge("jkt-1");
    let other = edge("bdg-1");
    // Hello in another edge's name.
    let (mut send, mut recv, _c) = session_as(&f, &me).await;
    assert_eq!(
        hello(&mut send, &mut recv, &other, 0).await,
        HubMsg::Refused {
            reason: RefusalReason::IdentityMismatch
        }
    );
    // Events stamped with another edge's id.
    let (mut send, mut recv, _c) = session_as(&f, &me).await;
    assert!(matches!(
        hello(&mut send, &mut recv, &me, 5).await,
        HubMsg::Welcome { .. }
    ));
    write_frame(&mut send, &batch(&other, 1, 2)).await.unwrap();
    assert_eq!(
        next(&mut recv).await,
        HubMsg::Refused {
            reason: RefusalReason::ForeignEvent
        }
    );
    assert_eq!(log_of(&f, &me).await, (0, 0));
    assert_eq!(log_of(&f, &other).await, (0, 0));
}

/// Connects as `e` and says Hello: `Ok` with the live connection and its
/// stream once the hub welcomed it (dropping either half would end the
/// session), `Err` when the hub refused the connection.
async fn try_session(
    f: &Fixture,
    e: &EdgeId,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    let dir = f.certs.path();
    let conn = connect(
        f,
        dir,
        &certs::edge_cert_path(dir, e),
        &certs::edge_key_path(dir, e),
    )
    .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let welcome = hello(&mut send, &mut recv, e, 0).await;
    assert!(matches!(welcome, HubMsg::Welcome { .. }), "{welcome:?}");
    Ok((conn, send, recv))
}

/// The session cap is taken before the handshake and held for the
/// session's life: a burst of CAP + EXTRA concurrent connection attempts
/// gets exactly CAP sessions, the rest are refused; a session that ends
/// frees its slot for the next edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_handshakes_cannot_pass_the_session_cap() {
    const CAP: usize = 3;
    const EXTRA: usize = 5;
    let f = start_with(|c| c.max_sessions = CAP).await;
    let edges: Vec<EdgeId> = (0..CAP + EXTRA)
        .map(|i| edge(&format!("cap-{i}")))
        .collect();
    for e in &edges {
        certs::issue_edge(f.certs.path(), e).unwrap();
    }
    let attempts = futures::future::join_all(edges.iter().map(|e| try_session(&f, e))).await;
    let (sessions, refused): (Vec<_>, Vec<_>) = attempts.into_iter().partition(Result::is_ok);
    assert_eq!((sessions.len(), refused.len()), (CAP, EXTRA), "{refused:?}");
    for r in &refused {
        assert!(
            matches!(r, Err(quinn::ConnectionError::ConnectionClosed(c)) if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
            "refused before the handshake: {r:?}"
        );
    }
    let stats = f.hub.stats();
    assert_eq!(
        cloud_hub::stats::HubStats::get(&stats.sessions_open),
        CAP as u64
    );
    assert_eq!(
        cloud_hub::stats::HubStats::get(&stats.sessions_refused),
        EXTRA as u64
    );

    // One session ends: its slot lets another edge in.
    let mut sessions: Vec<_> = sessions.into_iter().map(Result::unwrap).collect();
    let (ended, _, _) = sessions.pop().unwrap();
    ended.close(0u32.into(), b"done");
    let late = edge("cap-late");
    certs::issue_edge(f.certs.path(), &late).unwrap();
    let admitted = testkit::eventually("a freed slot", || async {
        try_session(&f, &late).await.ok()
    })
    .await;
    assert_eq!(
        cloud_hub::stats::HubStats::get(&stats.sessions_open),
        CAP as u64
    );
    drop((admitted, sessions));
}

#[tokio::test]
async fn unknown_and_self_signed_certificates_cannot_connect() {
    let f = start().await;
    // A CA the hub has never seen, and an edge certificate it signed.
    let rogue = tempfile::tempdir().unwrap();
    certs::init(rogue.path(), &[], false).unwrap();
    let me = edge("jkt-1");
    certs::issue_edge(rogue.path(), &me).unwrap();
    // Trust the real hub (so the failure is the hub refusing us, not us it).
    std::fs::copy(
        f.certs.path().join(certs::CA_CERT),
        rogue.path().join("real-ca.crt"),
    )
    .unwrap();
    let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    ep.set_default_client_config(
        client_config(
            &rogue.path().join("real-ca.crt"),
            &certs::edge_cert_path(rogue.path(), &me),
            &certs::edge_key_path(rogue.path(), &me),
        )
        .unwrap(),
    );
    let refused = async {
        let conn = ep
            .connect(f.hub.quic_addr(), certs::DEFAULT_HUB_NAME)
            .unwrap()
            .await?;
        // TLS 1.3: the client may finish before the server rejects its cert;
        // the first stream use then fails.
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(
            &mut send,
            &EdgeMsg::Heartbeat {
                at: Timestamp::from_unix_ms(0),
                backlog: 0,
            },
        )
        .await
        .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
        read_frame::<HubMsg, _>(&mut recv)
            .await
            .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
        Ok::<_, quinn::ConnectionError>(())
    };
    assert!(
        refused.await.is_err(),
        "a certificate from another CA is refused"
    );

    // A self-signed certificate: its own CA.
    let selfsigned = tempfile::tempdir().unwrap();
    certs::init(selfsigned.path(), &[], false).unwrap();
    let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    ep.set_default_client_config(
        client_config(
            &f.certs.path().join(certs::CA_CERT),
            &selfsigned.path().join(certs::CA_CERT),
            &selfsigned.path().join(certs::CA_KEY),
        )
        .unwrap(),
    );
    let refused = async {
        let conn = ep
            .connect(f.hub.quic_addr(), certs::DEFAULT_HUB_NAME)
            .unwrap()
            .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(
            &mut send,
            &EdgeMsg::Heartbeat {
                at: Timestamp::from_unix_ms(0),
                backlog: 0,
            },
        )
        .await
        .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
        read_frame::<HubMsg, _>(&mut recv)
            .await
            .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
        Ok::<_, quinn::ConnectionError>(())
    };
    assert!(
        refused.await.is_err(),
        "a self-signed certificate is refused"
    );
    assert!(cloud_hub::stats::HubStats::get(&f.hub.stats().sessions_refused) >= 1);
}

/// The next registry message, skipping heartbeats and acks.
async fn next_registry(recv: &mut quinn::RecvStream) -> Vec<sync_protocol::session::RegistryEntry> {
    loop {
        let msg = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read_frame::<HubMsg, _>(recv),
        )
        .await
        .expect("a registry message in time")
        .expect("a frame")
        .expect("not closed");
        if let HubMsg::Registry { recipients } = msg {
            return recipients;
        }
    }
}

/// Another edge's recipient, registered (per its own clock) a year ago:
/// `at` stands for an edge that was offline and synced late.
async fn register_late_recipient(
    f: &Fixture,
    owner: &EdgeId,
    cell: u64,
    n: u8,
) -> sync_protocol::RecipientId {
    use cloud_hub::db::{self, apply::apply_batch, queries};
    use sync_protocol::session::hub::Apply;
    let mut c = db::connect(&f.db.url).await.unwrap();
    let home = queries::register(&c, owner, &[cell]).await.unwrap();
    let centre = s2::latlng::LatLng::from(s2::cellid::CellID(cell));
    let id = sync_protocol::RecipientId::from_bytes([n; 16]);
    let seq = home.high_water + 1;
    let env = Envelope {
        edge_id: owner.clone(),
        seq,
        lease_epoch: 0,
        at: Timestamp::from_unix_ms(1_700_000_000_000),
        trace_context: None,
        event: Event::RecipientRegistered(sync_protocol::Recipient {
            id,
            name: format!("Panti {n}"),
            location: sync_protocol::GeoPoint::new(centre.lat.deg(), centre.lng.deg()).unwrap(),
            capacity_per_day: sync_protocol::Mass::from_grams(100_000),
            accepted_food_types: sync_protocol::FoodTypeSet::all(),
            is_fallback: false,
            contact: sync_protocol::SealedContact(vec![1, 0, 0, 0, 1, n]),
        }),
    };
    let batch = Apply {
        events: vec![(cell, env)],
        first_seq: seq,
        last_seq: seq,
    };
    let applied = apply_batch(&mut c, owner, home.home_region, &batch)
        .await
        .unwrap();
    assert_eq!(applied.fenced, 0);
    id
}

/// The registry follows what the hub received, not the owners' clocks, and
/// places recipients by their own location: a neighbour at a finer S2
/// level that synced late still reaches a connected edge, once.
#[tokio::test]
async fn late_neighbours_at_another_level_reach_a_live_session_once() {
    let f = start_with(|c| c.registry_refresh_secs = 1).await;
    let me = edge("jkt-1");
    let other = edge("bdg-1");
    let mine = s2::cellid::CellID::from(s2::latlng::LatLng::from_degrees(-6.2, 106.82)).parent(9);
    // The neighbour edge owns a level-11 cell inside one of our neighbours.
    let theirs = mine.all_neighbors(9)[0].child_begin_at_level(11).0;
    let (mut send, mut recv, _conn) = session_as(&f, &me).await;
    let msg = EdgeMsg::Hello {
        protocol: PROTOCOL_VERSION,
        edge_id: me.clone(),
        cells: vec![mine.0],
        committed_seq: 0,
        lease_epoch: 0,
    };
    write_frame(&mut send, &msg).await.unwrap();
    assert!(matches!(next(&mut recv).await, HubMsg::Welcome { .. }));

    let first = register_late_recipient(&f, &other, theirs, 1).await;
    let got = next_registry(&mut recv).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![first]);
    assert_eq!(got[0].owner, other);

    let second = register_late_recipient(&f, &other, theirs, 2).await;
    let got = next_registry(&mut recv).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![second],
        "only what is new: the first is not sent again"
    );
}
