use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use sync_protocol::event::{ClaimVia, DeadLetterReason, Event};
use sync_protocol::{Duration, RecipientId, SurplusId, Timestamp};

use super::*;

fn sid(n: u8) -> SurplusId {
    SurplusId::from_bytes([n; 16])
}

fn rid(n: u8) -> RecipientId {
    RecipientId::from_bytes([n; 16])
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_800_000_000_000 + ms)
}

fn cfg() -> DispatchConfig {
    DispatchConfig {
        max_queue: 100,
        max_in_flight: 4,
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(30),
        },
    }
}

fn to(channel: u64, deadline: Timestamp) -> Planned {
    Planned {
        channel: ChannelKey(channel),
        deadline,
    }
}

fn offer(fallback: bool) -> Event {
    Event::OfferMade {
        surplus_id: sid(1),
        recipient_id: rid(2),
        ack_deadline: at(300_000),
        attempt: 3,
        fallback,
        version: 4,
    }
}

#[test]
fn an_offer_tells_its_recipient_and_only_a_last_resort_tells_the_on_call() {
    let told = Notice::Offer {
        surplus_id: sid(1),
        recipient_id: rid(2),
        ack_deadline: at(300_000),
        attempt: 3,
        fallback: false,
    };
    assert_eq!(notices(&offer(false)), [told]);
    let fallback = notices(&offer(true));
    assert_eq!(fallback.len(), 2);
    assert!(matches!(fallback[0], Notice::Offer { fallback: true, .. }));
    assert_eq!(
        fallback[1],
        Notice::Alert(AlertNotice {
            kind: AlertKind::FallbackOffered,
            surplus_id: sid(1)
        })
    );
    let gave_up = Event::DeadLettered {
        surplus_id: sid(9),
        reason: DeadLetterReason::FallbackFailed,
        dlq_attempts: 3,
        retry_at: None,
        version: 7,
    };
    assert_eq!(
        notices(&gave_up),
        [Notice::Alert(AlertNotice {
            kind: AlertKind::NoFallback,
            surplus_id: sid(9)
        })]
    );
    // The DLQ still retrying is not an alert; nor is anything else.
    let retrying = Event::DeadLettered {
        surplus_id: sid(9),
        reason: DeadLetterReason::NoCandidate,
        dlq_attempts: 0,
        retry_at: Some(at(60_000)),
        version: 2,
    };
    let claimed = Event::Claimed {
        surplus_id: sid(1),
        recipient_id: rid(2),
        via: ClaimVia::OfferAccepted,
        version: 5,
    };
    for quiet in [
        retrying,
        claimed,
        Event::Expired {
            surplus_id: sid(1),
            version: 3,
        },
    ] {
        assert!(notices(&quiet).is_empty(), "{quiet:?}");
    }
    assert_eq!(
        AlertKind::NoFallback.alertname(),
        "PahlawanSurplusNeedsAHuman"
    );
    assert_eq!(AlertKind::NoFallback.severity(), "page");
}

#[test]
fn a_delivery_goes_out_at_once_and_its_ack_moves_the_cursor() {
    let mut d = Dispatcher::new(cfg(), 10);
    d.admit(at(0), 11, &[]);
    assert_eq!(
        d.cursor(),
        11,
        "an event nobody hears of is finished at once"
    );
    d.admit(at(0), 12, &[to(1, at(60_000)), to(2, at(60_000))]);
    assert_eq!(d.cursor(), 11);
    let sent = d.poll(at(0));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|a| a.number == 1 && a.id.seq == 12));
    assert!(d.poll(at(0)).is_empty(), "nothing is sent twice at once");
    let mut sent = sent.into_iter();
    let first = sent.next().unwrap();
    d.on_outcome(at(5), first, Outcome::Delivered, 0);
    assert_eq!(d.cursor(), 11, "one channel of seq 12 still owes");
    d.on_outcome(at(6), sent.next().unwrap(), Outcome::Refused, 0);
    assert_eq!(d.cursor(), 12);
    assert_eq!(d.queued(), 0);
    let finished = d.drain_finished();
    assert!(matches!(
        finished[0],
        Finished::Delivered { attempts: 1, .. }
    ));
    assert!(matches!(finished[1], Finished::Refused { attempts: 1, .. }));
}

#[test]
fn events_gone_from_the_outbox_are_skipped_and_a_repeat_is_ignored() {
    // The dispatcher was off while retention deleted seqs 11..=19.
    let mut d = Dispatcher::new(cfg(), 10);
    d.admit(at(0), 20, &[to(1, at(60_000))]);
    assert_eq!(d.admitted(), 20);
    assert_eq!(d.cursor(), 19, "up to the gap's end nothing is owed");
    // A seq admitted before (a read that overlapped) changes nothing.
    d.admit(at(0), 20, &[to(2, at(60_000))]);
    d.admit(at(0), 15, &[to(3, at(60_000))]);
    assert_eq!(d.queued(), 1);
    let mut sent = d.poll(at(0)).into_iter();
    let attempt = sent.next().expect("one attempt");
    assert!(sent.next().is_none());
    assert_eq!(attempt.id.channel, ChannelKey(1));
    d.on_outcome(at(1), attempt, Outcome::Delivered, 0);
    assert_eq!(d.cursor(), 20);
}

#[test]
fn a_failed_attempt_waits_a_jittered_doubling_backoff_then_goes_again() {
    let mut d = Dispatcher::new(cfg(), 0);
    d.admit(at(0), 1, &[to(1, at(3_600_000))]);
    let a = d.poll(at(0)).pop().unwrap();
    d.on_outcome(at(0), a, Outcome::Failed, 0);
    // Jitter 0 takes the lower end: half of 1 s.
    assert!(d.poll(at(499)).is_empty());
    let a = d.poll(at(500)).pop().unwrap();
    assert_eq!(a.number, 2);
    d.on_outcome(at(500), a, Outcome::Failed, u64::MAX);
    assert_eq!(
        d.next_wake(),
        Some(at(500 + d.backoff(2, u64::MAX).as_ms()))
    );
    for n in 1..40u32 {
        let full = (1_000i64 << (n - 1).min(30)).min(60_000);
        for j in [0, 1, 7, 999, 1_000_003, u64::MAX] {
            let w = d.backoff(n, j).as_ms();
            assert!(
                w >= full / 2 && w <= full,
                "attempt {n}, jitter {j}: {w} ms"
            );
        }
    }
}

#[test]
fn an_attempt_that_would_miss_the_deadline_is_not_made() {
    let mut d = Dispatcher::new(cfg(), 0);
    d.admit(at(0), 1, &[to(1, at(1_200))]);
    let a = d.poll(at(0)).pop().unwrap();
    d.on_outcome(at(1_000), a, Outcome::Failed, 0);
    assert_eq!(
        d.queued(),
        0,
        "a retry at 1.5 s would come after the 1.2 s deadline"
    );
    assert_eq!(
        d.drain_finished(),
        [Finished::Expired {
            id: DeliveryId {
                seq: 1,
                channel: ChannelKey(1)
            },
            attempts: 1
        }]
    );
    assert_eq!(d.cursor(), 1);
    // An offer already past its deadline when read is never sent.
    d.admit(at(5_000), 2, &[to(1, at(4_000))]);
    assert!(d.poll(at(5_000)).is_empty());
    assert_eq!(d.cursor(), 2);
}

#[test]
fn in_flight_is_bounded_and_the_oldest_event_goes_first() {
    let mut d = Dispatcher::new(cfg(), 0);
    for seq in 1..=10 {
        d.admit(at(0), seq, &[to(seq, at(60_000))]);
    }
    let sent = d.poll(at(0));
    assert_eq!(
        sent.iter().map(|a| a.id.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(d.in_flight(), 4);
    assert!(d.poll(at(1)).is_empty());
    // Seq 2 answers first: the cursor stays before seq 1.
    let mut sent = sent.into_iter();
    let one = sent.next().unwrap();
    let two = sent.next().unwrap();
    d.on_outcome(at(2), two, Outcome::Delivered, 0);
    assert_eq!(d.cursor(), 0);
    assert_eq!(d.poll(at(2)).pop().map(|a| a.id.seq), Some(5));
    d.on_outcome(at(3), one, Outcome::Delivered, 0);
    assert_eq!(d.cursor(), 2);
}

#[test]
fn the_queue_says_when_it_is_full() {
    let mut d = Dispatcher::new(
        DispatchConfig {
            max_queue: 2,
            ..cfg()
        },
        0,
    );
    d.admit(at(0), 1, &[to(1, at(60_000))]);
    assert!(d.has_room());
    d.admit(at(0), 2, &[to(1, at(60_000))]);
    assert!(!d.has_room());
}

#[test]
fn a_failing_channel_goes_behind_its_breaker_and_others_keep_going() {
    let mut d = Dispatcher::new(cfg(), 0);
    let deadline = at(3_600_000);
    for seq in 1..=5 {
        d.admit(at(0), seq, &[to(7, deadline), to(8, deadline)]);
    }
    let mut now = 0;
    // Three failures in a row on channel 7 open its breaker.
    for _ in 0..3 {
        let sent = d.poll(at(now));
        for a in sent {
            let outcome = if a.id.channel == ChannelKey(7) {
                Outcome::Failed
            } else {
                Outcome::Delivered
            };
            d.on_outcome(at(now), a, outcome, 0);
        }
        now += 5_000;
    }
    assert_eq!(d.open_breakers(at(now)), 1);
    let sent = d.poll(at(now));
    assert!(
        sent.iter().all(|a| a.id.channel == ChannelKey(8)),
        "channel 7 is held back: {sent:?}"
    );
    assert!(d.breaker_refusals > 0, "the breaker held attempts back");
    for a in sent {
        d.on_outcome(at(now), a, Outcome::Delivered, 0);
    }
    // After open_for one probe goes; its success closes the breaker.
    now += 30_000;
    let probe: Vec<_> = d.poll(at(now));
    assert_eq!(probe.len(), 1, "one probe: {probe:?}");
    let probe = probe.into_iter().next().unwrap();
    assert_eq!(probe.id.channel, ChannelKey(7));
    d.on_outcome(at(now), probe, Outcome::Delivered, 0);
    assert_eq!(d.open_breakers(at(now)), 0);
}

#[derive(Debug, Clone)]
enum Step {
    /// Admit the next event with deliveries to these channels (deadline in s).
    Admit(Vec<(u64, i64)>),
    /// Answer the in-flight attempt at this index (modulo) with an outcome.
    Answer(usize, u8),
    Advance(i64),
    Poll,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::collection::vec((0..4u64, 1..120i64), 0..3).prop_map(Step::Admit),
        (any::<usize>(), 0..3u8).prop_map(|(i, o)| Step::Answer(i, o)),
        (1..20_000i64).prop_map(Step::Advance),
        Just(Step::Poll),
    ]
}

proptest! {
    /// Whatever the receivers do and whenever: every delivery admitted
    /// finishes exactly once; an attempt is made only while it can still
    /// matter; in flight stays bounded; the cursor never moves back and
    /// never passes an unfinished delivery.
    #[test]
    fn every_delivery_finishes_once_and_the_cursor_never_passes_one_unfinished(
        steps in prop::collection::vec(step(), 1..200),
        jitter in any::<u64>(),
    ) {
        let cfg = cfg();
        let mut d = Dispatcher::new(cfg, 0);
        let mut now = 0i64;
        let mut flying: Vec<Attempt> = Vec::new();
        let mut admitted: HashMap<DeliveryId, Timestamp> = HashMap::new();
        let mut done: HashSet<DeliveryId> = HashSet::new();
        let mut cursor = 0;
        let mut seq = 0;
        for s in steps {
            match s {
                Step::Admit(to_channels) => {
                    seq += 1;
                    let mut planned: Vec<Planned> = Vec::new();
                    for (c, secs) in to_channels {
                        if planned.iter().any(|p| p.channel == ChannelKey(c)) {
                            continue;
                        }
                        let deadline = at(now + secs * 1_000);
                        planned.push(to(c, deadline));
                        admitted.insert(DeliveryId { seq, channel: ChannelKey(c) }, deadline);
                    }
                    d.admit(at(now), seq, &planned);
                }
                Step::Answer(i, o) if !flying.is_empty() => {
                    let a = flying.swap_remove(i % flying.len());
                    let outcome = [Outcome::Delivered, Outcome::Refused, Outcome::Failed][usize::from(o)];
                    d.on_outcome(at(now), a, outcome, jitter);
                }
                Step::Answer(..) => {}
                Step::Advance(ms) => now += ms,
                Step::Poll => {
                    for a in d.poll(at(now)) {
                        prop_assert!(at(now) < a.deadline, "an attempt after its deadline");
                        prop_assert!(!done.contains(&a.id), "an attempt after it finished");
                        prop_assert!(!flying.iter().any(|f| f.id == a.id), "two attempts at once");
                        flying.push(a);
                    }
                }
            }
            prop_assert!(d.in_flight() <= cfg.max_in_flight);
            prop_assert_eq!(d.in_flight(), flying.len());
            for f in d.drain_finished() {
                let id = match f {
                    Finished::Delivered { id, .. } | Finished::Refused { id, .. } | Finished::Expired { id, .. } => id,
                };
                prop_assert!(admitted.contains_key(&id));
                prop_assert!(done.insert(id), "finished twice: {:?}", id);
            }
            let c = d.cursor();
            prop_assert!(c >= cursor, "the cursor moved back");
            prop_assert!(c <= d.admitted());
            for id in admitted.keys() {
                if id.seq <= c {
                    prop_assert!(done.contains(id), "cursor {} passed unfinished {:?}", c, id);
                }
            }
            cursor = c;
        }
    }
}
