//! The session cores without sockets. A seeded random schedule interleaves
//! deliveries, connection drops (losing whatever was in flight), hub crashes
//! before or after a commit, new commits on the edge and clock jumps, and a
//! dropped connection whose hub session lives on beside the edge's new one
//! (two sessions of one edge racing to apply); at the end the hub's log must
//! equal the edge's outbox, each event applied once.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::edge::{EdgeSession, EdgeSessionConfig, SessionError};
use super::hub::{Action, HubSession};
use super::msg::{
    BatchEvent, EdgeMsg, HubMsg, RefusalReason, decode_body, encode_frame, frame_len,
};
use crate::event::{Envelope, Event};
use crate::ids::{EdgeId, SurplusId};
use crate::time::{Duration, Timestamp};
use crate::wire::encode_envelope;

fn edge_id() -> EdgeId {
    EdgeId::new("jkt-1").expect("valid")
}

fn envelope(edge: &EdgeId, seq: u64) -> Vec<u8> {
    encode_envelope(&Envelope {
        edge_id: edge.clone(),
        seq,
        lease_epoch: 1,
        at: Timestamp::from_unix_ms(seq as i64),
        trace_context: None,
        event: Event::Expired {
            surplus_id: SurplusId::from_bytes([(seq % 251) as u8; 16]),
            version: seq,
        },
    })
}

/// The world: an outbox, a hub database, and at most one live connection.
struct World {
    outbox: Vec<Vec<u8>>,
    hub_log: Vec<u64>,
    applies: Vec<u32>,
    edge: Option<EdgeSession>,
    hub: Option<HubSession>,
    to_hub: VecDeque<EdgeMsg>,
    to_edge: VecDeque<HubMsg>,
    /// A batch the hub is applying (committed only when the step says so).
    pending_apply: Option<super::hub::Apply>,
    published: u64,
    now: Timestamp,
    /// Every batch ever put on the wire, for duplicate deliveries.
    sent_batches: Vec<EdgeMsg>,
    /// The hub side of a dropped connection that has not noticed yet: it may
    /// still apply what it received, racing the edge's new session.
    zombie: Option<Zombie>,
    /// A zombie committed since the live hub session read the high-water
    /// mark: only then may the live session's batch fail the database check.
    zombie_applied: bool,
}

struct Zombie {
    hub: HubSession,
    inbox: VecDeque<EdgeMsg>,
    pending: Option<super::hub::Apply>,
}

/// The database's own check (`SELECT … FOR UPDATE` on the high-water mark):
/// a batch must continue the log, or it is refused and its session ends.
fn db_apply(log: &mut Vec<u64>, applies: &mut [u32], apply: &super::hub::Apply) -> bool {
    if apply.first_seq != log.len() as u64 + 1 {
        return false;
    }
    for (_, env) in &apply.events {
        log.push(env.seq);
        applies[env.seq as usize] += 1;
    }
    true
}

impl World {
    fn new(n: u64) -> World {
        let id = edge_id();
        World {
            outbox: (1..=n).map(|s| envelope(&id, s)).collect(),
            hub_log: Vec::new(),
            applies: vec![0; n as usize + 1],
            edge: None,
            hub: None,
            to_hub: VecDeque::new(),
            to_edge: VecDeque::new(),
            pending_apply: None,
            published: 0,
            now: Timestamp::from_unix_ms(1_000),
            sent_batches: Vec::new(),
            zombie: None,
            zombie_applied: false,
        }
    }

    fn committed(&self) -> u64 {
        self.outbox.len() as u64
    }

    fn connect(&mut self) {
        let mut cfg = EdgeSessionConfig::new(edge_id(), alloc::vec![1, 2]);
        cfg.max_batch_events = 7;
        cfg.max_in_flight = 3;
        self.edge = Some(EdgeSession::new(cfg, self.now, self.committed(), 1));
        self.hub = Some(HubSession::new(
            edge_id(),
            self.hub_log.len() as u64,
            self.now,
        ));
        self.to_hub.clear();
        self.to_edge.clear();
        self.pending_apply = None;
        self.zombie_applied = false;
    }

    fn drop_connection(&mut self) {
        self.edge = None;
        self.hub = None;
        self.to_hub.clear();
        self.to_edge.clear();
        self.pending_apply = None; // a crash before commit
    }

    /// The edge loses the connection but the hub's session of it lives on,
    /// with whatever it had received.
    fn orphan_connection(&mut self) {
        if let (Some(hub), None) = (self.hub.take(), &self.zombie) {
            self.zombie = Some(Zombie {
                hub,
                inbox: core::mem::take(&mut self.to_hub),
                pending: self.pending_apply.take(),
            });
        }
        self.drop_connection();
    }

    /// The orphaned hub session runs one step; its replies go nowhere.
    fn zombie_step(&mut self) {
        let Some(z) = self.zombie.as_mut() else {
            return;
        };
        let alive = if let Some(apply) = z.pending.take() {
            let ok = db_apply(&mut self.hub_log, &mut self.applies, &apply);
            if ok {
                z.hub.applied(self.now, apply.last_seq);
                self.zombie_applied = true;
            }
            ok
        } else if let Some(m) = z.inbox.pop_front() {
            match z.hub.handle(self.now, m) {
                Ok(Action::Apply(a)) => {
                    z.pending = Some(a);
                    true
                }
                Ok(_) => true,
                Err(_) => false,
            }
        } else {
            false
        };
        while z.hub.poll_transmit(self.now).is_some() {}
        if !alive {
            self.zombie = None;
        }
    }

    /// The edge shell: feed wanted events, move messages onto the wire.
    fn edge_step(&mut self) -> Result<(), SessionError> {
        let committed = self.committed();
        let Some(edge) = self.edge.as_mut() else {
            return Ok(());
        };
        edge.set_committed(committed);
        if let Some(want) = edge.wants() {
            let events: Vec<BatchEvent> = self.outbox[want.after as usize..]
                .iter()
                .take(want.max_events)
                .map(|e| BatchEvent {
                    cell: 1,
                    envelope: e.clone(),
                })
                .collect();
            edge.send_events(self.now, want.after + 1, events);
        }
        while let Some(m) = edge.poll_transmit(self.now) {
            // Through the real framing, as the shell does.
            let frame = encode_frame(&m);
            let len = frame_len([frame[0], frame[1], frame[2], frame[3]]).expect("bounded");
            assert_eq!(len, frame.len() - 4);
            let m: EdgeMsg = decode_body(&frame[4..]).expect("round trip");
            if matches!(m, EdgeMsg::Batch { .. }) {
                self.sent_batches.push(m.clone());
            }
            self.to_hub.push_back(m);
        }
        if let Some(m) = self.to_edge.pop_front() {
            edge.handle(self.now, m)?;
            self.published = self.published.max(edge.acked());
        }
        Ok(())
    }

    /// The hub shell: handle one message, apply (maybe), move replies.
    fn hub_step(&mut self, commit: bool) -> Result<(), RefusalReason> {
        let Some(hub) = self.hub.as_mut() else {
            return Ok(());
        };
        if let Some(apply) = self.pending_apply.take() {
            if !commit {
                self.pending_apply = Some(apply);
                return Ok(());
            }
            if !db_apply(&mut self.hub_log, &mut self.applies, &apply) {
                // Only a racing session may have moved the mark under us.
                assert!(self.zombie_applied, "the core handed out a gap");
                return Err(RefusalReason::NotDense);
            }
            hub.applied(self.now, apply.last_seq);
        } else if let Some(m) = self.to_hub.pop_front() {
            match hub.handle(self.now, m)? {
                Action::None => {}
                Action::Greet(_) => hub.greet(self.now, 1, Vec::new()),
                Action::Apply(a) => self.pending_apply = Some(a),
            }
        }
        while let Some(m) = hub.poll_transmit(self.now) {
            self.to_edge.push_back(m);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    Edge,
    Hub {
        commit: bool,
    },
    Drop,
    /// The edge drops the connection; the hub's session of it lives on.
    Orphan,
    /// The orphaned hub session takes a step.
    Zombie,
    /// The network delivers an old batch again (from any connection).
    Duplicate(usize),
    Commit(u8),
    Tick(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => Just(Step::Edge),
        8 => any::<bool>().prop_map(|commit| Step::Hub { commit }),
        1 => Just(Step::Drop),
        1 => Just(Step::Orphan),
        3 => Just(Step::Zombie),
        2 => any::<usize>().prop_map(Step::Duplicate),
        2 => (1u8..10).prop_map(Step::Commit),
        1 => (0u16..40_000).prop_map(Step::Tick),
    ]
}

fn run(initial: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::new(initial);
    w.connect();
    for s in steps {
        match s {
            Step::Edge => {
                if w.edge_step().is_err() {
                    w.drop_connection();
                }
            }
            Step::Hub { commit } => {
                if w.hub_step(*commit).is_err() {
                    w.drop_connection();
                }
            }
            Step::Drop => w.drop_connection(),
            Step::Orphan => w.orphan_connection(),
            Step::Zombie => w.zombie_step(),
            Step::Duplicate(i) => {
                if !w.sent_batches.is_empty() {
                    let b = w.sent_batches[i % w.sent_batches.len()].clone();
                    w.to_hub.push_back(b);
                }
            }
            Step::Commit(n) => {
                let id = edge_id();
                for _ in 0..*n {
                    let seq = w.committed() + 1;
                    w.outbox.push(envelope(&id, seq));
                    w.applies.push(0);
                }
            }
            Step::Tick(ms) => {
                w.now = w.now + Duration::from_ms(i64::from(*ms));
                let now = w.now;
                let dead = w
                    .edge
                    .as_mut()
                    .is_some_and(|e| e.handle_timeout(now).is_err())
                    | w.hub
                        .as_mut()
                        .is_some_and(|h| h.handle_timeout(now).is_err());
                if dead {
                    w.drop_connection();
                }
            }
        }
        if w.edge.is_none() {
            w.connect();
        }
        // Invariants after every step.
        prop_assert!(
            w.hub_log.iter().copied().eq(1..=w.hub_log.len() as u64),
            "the hub log is dense"
        );
        prop_assert!(w.applies.iter().all(|n| *n <= 1), "nothing applied twice");
        prop_assert!(
            w.published <= w.hub_log.len() as u64,
            "only applied events are published"
        );
    }
    // Quiesce: the orphan finishes what it holds, then a reliable
    // connection with no more faults drains everything.
    while w.zombie.is_some() {
        w.zombie_step();
    }
    w.connect();
    for _ in 0..100_000 {
        if w.hub_log.len() as u64 == w.committed() && w.published == w.committed() {
            break;
        }
        w.edge_step()
            .map_err(|e| TestCaseError::fail(alloc::format!("{e}")))?;
        w.hub_step(true)
            .map_err(|e| TestCaseError::fail(alloc::format!("{e:?}")))?;
    }
    prop_assert_eq!(&w.hub_log, &(1..=w.committed()).collect::<Vec<_>>());
    prop_assert!(
        w.applies[1..].iter().all(|n| *n == 1),
        "every event applied exactly once"
    );
    prop_assert_eq!(w.published, w.committed());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_interleaving_ends_with_the_hub_log_equal_to_the_outbox(
        initial in 0u64..60,
        steps in proptest::collection::vec(step(), 0..300),
    ) {
        run(initial, &steps)?;
    }
}

fn hub_streaming(high_water: u64) -> HubSession {
    let t = Timestamp::from_unix_ms(0);
    let mut hub = HubSession::new(edge_id(), high_water, t);
    let hello = EdgeMsg::Hello {
        protocol: super::PROTOCOL_VERSION,
        edge_id: edge_id(),
        cells: alloc::vec![],
        committed_seq: 100,
        lease_epoch: 1,
    };
    assert!(matches!(hub.handle(t, hello), Ok(Action::Greet(_))));
    hub.greet(t, 1, alloc::vec![]);
    assert!(
        matches!(hub.poll_transmit(t), Some(HubMsg::Welcome { high_water: h, .. }) if h == high_water)
    );
    hub
}

fn batch(edge: &EdgeId, first: u64, n: u64) -> EdgeMsg {
    EdgeMsg::Batch {
        first_seq: first,
        events: (first..first + n)
            .map(|s| BatchEvent {
                cell: 0,
                envelope: envelope(edge, s),
            })
            .collect(),
    }
}

#[test]
fn a_replayed_batch_is_acked_and_not_applied() {
    let t = Timestamp::from_unix_ms(0);
    let mut hub = hub_streaming(10);
    assert_eq!(hub.handle(t, batch(&edge_id(), 3, 5)), Ok(Action::None));
    assert_eq!(hub.poll_transmit(t), Some(HubMsg::Ack { high_water: 10 }));
    // An overlapping batch applies only the new part.
    let Ok(Action::Apply(a)) = hub.handle(t, batch(&edge_id(), 8, 6)) else {
        panic!("apply")
    };
    assert_eq!((a.first_seq, a.last_seq, a.events.len()), (11, 13, 3));
}

#[test]
fn gaps_foreign_events_and_impostors_are_refused() {
    let t = Timestamp::from_unix_ms(0);
    let mut hub = hub_streaming(10);
    assert_eq!(
        hub.handle(t, batch(&edge_id(), 12, 2)),
        Err(RefusalReason::Gap {
            expected: 11,
            got: 12
        })
    );
    assert_eq!(
        hub.poll_transmit(t),
        Some(HubMsg::Refused {
            reason: RefusalReason::Gap {
                expected: 11,
                got: 12
            }
        })
    );
    assert!(hub.is_closed());

    let mut hub = hub_streaming(0);
    let other = EdgeId::new("bdg-1").expect("valid");
    assert_eq!(
        hub.handle(t, batch(&other, 1, 2)),
        Err(RefusalReason::ForeignEvent)
    );

    let mut hub = HubSession::new(edge_id(), 0, t);
    let hello = EdgeMsg::Hello {
        protocol: super::PROTOCOL_VERSION,
        edge_id: other,
        cells: alloc::vec![],
        committed_seq: 0,
        lease_epoch: 0,
    };
    assert_eq!(hub.handle(t, hello), Err(RefusalReason::IdentityMismatch));

    let mut hub = HubSession::new(edge_id(), 0, t);
    assert_eq!(
        hub.handle(t, batch(&edge_id(), 1, 1)),
        Err(RefusalReason::Protocol),
        "no batch before Hello"
    );

    let mut hub = hub_streaming(0);
    let mut dense_lie = batch(&edge_id(), 1, 3);
    if let EdgeMsg::Batch { first_seq, .. } = &mut dense_lie {
        *first_seq = 2; // claims 2..4 but carries 1..3
    }
    assert!(matches!(
        hub.handle(t, dense_lie),
        Err(RefusalReason::Gap { .. } | RefusalReason::NotDense)
    ));
}

#[test]
fn an_edge_behind_the_hub_is_stopped_on_both_sides() {
    let t = Timestamp::from_unix_ms(0);
    let mut edge = EdgeSession::new(EdgeSessionConfig::new(edge_id(), alloc::vec![]), t, 5, 1);
    let err = edge.handle(
        t,
        HubMsg::Welcome {
            high_water: 9,
            lease_epoch: 1,
            conflicts: alloc::vec![],
        },
    );
    assert_eq!(err, Err(SessionError::EdgeBehindHub { hub: 9, edge: 5 }));
    let mut hub = HubSession::new(edge_id(), 9, t);
    let hello = EdgeMsg::Hello {
        protocol: super::PROTOCOL_VERSION,
        edge_id: edge_id(),
        cells: alloc::vec![],
        committed_seq: 5,
        lease_epoch: 1,
    };
    assert_eq!(hub.handle(t, hello), Err(RefusalReason::EdgeBehindHub));
}

#[test]
fn silence_closes_the_session_and_heartbeats_keep_it_alive() {
    let t = Timestamp::from_unix_ms(0);
    let mut edge = EdgeSession::new(EdgeSessionConfig::new(edge_id(), alloc::vec![]), t, 0, 1);
    edge.poll_transmit(t);
    let hb = t + Duration::from_secs(5);
    assert_eq!(edge.poll_timeout(), Some(hb));
    edge.handle_timeout(hb).expect("alive");
    assert!(matches!(
        edge.poll_transmit(hb),
        Some(EdgeMsg::Heartbeat { .. })
    ));
    assert_eq!(
        edge.handle_timeout(t + Duration::from_secs(30)),
        Err(SessionError::IdleTimeout)
    );
}

#[test]
fn random_session_frames_never_panic() {
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..256), |bytes| {
            let _ = decode_body::<EdgeMsg>(&bytes);
            let _ = decode_body::<HubMsg>(&bytes);
            Ok(())
        })
        .expect("no panics");
}

#[test]
fn a_batch_at_the_end_of_the_sequence_space_is_refused_not_wrapped() {
    let t = Timestamp::from_unix_ms(0);
    let mut hub = hub_streaming(0);
    let msg = EdgeMsg::Batch {
        first_seq: u64::MAX,
        events: (0..2)
            .map(|s| BatchEvent {
                cell: 0,
                envelope: envelope(&edge_id(), s),
            })
            .collect(),
    };
    assert_eq!(hub.handle(t, msg), Err(RefusalReason::NotDense));
    assert!(hub.is_closed());
}

#[test]
fn a_hello_with_too_many_cells_is_refused() {
    let t = Timestamp::from_unix_ms(0);
    let mut hub = HubSession::new(edge_id(), 0, t);
    let hello = EdgeMsg::Hello {
        protocol: super::PROTOCOL_VERSION,
        edge_id: edge_id(),
        cells: (0..super::msg::MAX_HELLO_CELLS as u64 + 1).collect(),
        committed_seq: 0,
        lease_epoch: 0,
    };
    assert_eq!(hub.handle(t, hello), Err(RefusalReason::TooLarge));
}

/// 10,000 neighbours with the longest names allowed do not fit one frame:
/// the hub splits them, every frame is under the limit, and the edge gets
/// them all.
#[test]
fn a_large_registry_is_split_into_frames_the_edge_accepts() {
    use super::msg::{MAX_REGISTRY_BYTES, MAX_SESSION_FRAME_BYTES, RegistryEntry};
    use crate::domain::{FoodTypeSet, Mass};
    use crate::geo::GeoPoint;
    use crate::ids::RecipientId;

    let t = Timestamp::from_unix_ms(0);
    let owner = EdgeId::new("bdg-1").expect("valid");
    let entries: Vec<RegistryEntry> = (0..10_000u32)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            RegistryEntry {
                id: RecipientId::from_bytes(id),
                owner: owner.clone(),
                cell: 0x1234_5678,
                name: alloc::format!("{i:0>200}"),
                location: GeoPoint::new(-6.2, 106.8).expect("valid"),
                capacity_per_day: Mass::from_grams(1_000),
                accepted_food_types: FoodTypeSet::all(),
                is_fallback: false,
                erased: false,
            }
        })
        .collect();
    assert!(
        crate::wire::encode(&HubMsg::Registry {
            recipients: entries.clone()
        })
        .len()
            > MAX_SESSION_FRAME_BYTES,
        "the test needs a registry too large for one frame"
    );
    let mut hub = hub_streaming(0);
    hub.push_registry(entries.clone());
    let mut edge = EdgeSession::new(EdgeSessionConfig::new(edge_id(), alloc::vec![]), t, 0, 1);
    edge.handle(
        t,
        HubMsg::Welcome {
            high_water: 0,
            lease_epoch: 1,
            conflicts: alloc::vec![],
        },
    )
    .expect("welcome");
    let mut frames = 0;
    while let Some(m) = hub.poll_transmit(t) {
        let frame = encode_frame(&m);
        assert!(
            frame.len() - 4 <= MAX_REGISTRY_BYTES + 64,
            "{}",
            frame.len()
        );
        frame_len([frame[0], frame[1], frame[2], frame[3]]).expect("within the frame limit");
        edge.handle(t, decode_body(&frame[4..]).expect("decodes"))
            .expect("accepted");
        frames += 1;
    }
    assert!(frames > 1, "split into several frames");
    assert_eq!(edge.take_registry(), Some(entries), "every entry, in order");
    assert_eq!(edge.take_registry(), None);
}
