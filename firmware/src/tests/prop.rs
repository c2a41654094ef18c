//! The property test: random schedules of button presses, new offers,
//! withdrawals, "busy" and refusing answers, deliveries, disconnects, reboots and clock
//! steps, with the invariants checked after every step:
//!
//! - nothing the screen offers to act on is stale or expired: an offer is
//!   actionable only if the last word the kiosk got about it was that card,
//!   and by the edge's true clock its deadline is more than the margin
//!   (less the clock estimate's worst error) away; a pick-up only for a
//!   claim not expired; a delivery only for a pick-up, at most its quantity;
//! - no action is sent twice without the edge's dedupe: an id always
//!   carries the same action; it reaches the edge at most once per
//!   connection (again only after a "busy" answer reached the kiosk), never
//!   after its answer reached the kiosk; at most one action per card is
//!   pending; the edge applies each step of each surplus at most once;
//! - the kiosk never asks to be woken in the past;
//! - and at the end, once the link heals, every action this boot made has
//!   been answered (none dropped on the way).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sync_protocol::kiosk::{Action, ActionId, Card, Down, MAX_CARDS, Outcome, Stage, Withdrawal};
use sync_protocol::{SurplusId, Timestamp};

use super::sim::Sim;
use crate::{ACTION_MARGIN_MS, Button, Intent, MAX_PENDING, MAX_SYNC_ROUND_TRIP_MS};

#[derive(Debug, Clone)]
enum Step {
    Press(Button),
    Wait(u64),
    /// To this many ms before the deadline of a live offer.
    ToDeadline(usize, u64),
    /// Deliver up to this many frames to the edge, and to the kiosk.
    Deliver(usize, usize),
    Connect,
    Disconnect,
    Offer(u64, u64),
    Withdraw(usize, Withdrawal),
    Busy(u32),
    Reject(u32),
    Reboot,
}

fn step() -> impl Strategy<Value = Step> {
    let button = prop_oneof![
        4 => Just(Button::Ok),
        3 => Just(Button::Back),
        1 => Just(Button::Up),
        1 => Just(Button::Down),
        1 => Just(Button::Language),
    ];
    let wait = prop_oneof![4 => 0u64..3_000, 2 => 0u64..40_000, 1 => 0u64..600_000];
    let reason = prop_oneof![
        Just(Withdrawal::TimedOut),
        Just(Withdrawal::Expired),
        Just(Withdrawal::ClaimedByAnother),
        Just(Withdrawal::Cancelled),
    ];
    prop_oneof![
        8 => button.prop_map(Step::Press),
        5 => wait.prop_map(Step::Wait),
        2 => (any::<usize>(), 0u64..8_000).prop_map(|(i, ms)| Step::ToDeadline(i, ms)),
        8 => (0usize..4, 0usize..6).prop_map(|(u, d)| Step::Deliver(u, d)),
        3 => Just(Step::Connect),
        2 => Just(Step::Disconnect),
        3 => (6_000u64..900_000, 0u64..60_000).prop_map(|(ms, g)| Step::Offer(ms, g)),
        3 => (any::<usize>(), reason).prop_map(|(i, r)| Step::Withdraw(i, r)),
        1 => (1u32..3).prop_map(Step::Busy),
        1 => (1u32..2).prop_map(Step::Reject),
        1 => Just(Step::Reboot),
    ]
}

/// The last word the kiosk got about each surplus: its card, or gone.
#[derive(Default)]
struct Knowledge {
    word: BTreeMap<SurplusId, Card>,
    /// Inside a Welcome's snapshot: cards still to come, and those seen.
    snapshot: Option<(u8, BTreeSet<SurplusId>)>,
    seen: usize,
}

impl Knowledge {
    fn learn(&mut self, sim: &Sim, actions: &BTreeMap<ActionId, Action>) {
        for msg in &sim.delivered[self.seen..] {
            match msg {
                Down::Welcome { open, .. } => {
                    self.snapshot = Some((*open, BTreeSet::new()));
                    self.end_snapshot_if_done();
                }
                Down::Card(c) => {
                    let newer = self
                        .word
                        .get(&c.surplus)
                        .is_none_or(|k| c.version >= k.version);
                    if newer {
                        self.word.insert(c.surplus, c.clone());
                    }
                    if let Some((left, set)) = &mut self.snapshot {
                        *left -= 1;
                        set.insert(c.surplus);
                    }
                    self.end_snapshot_if_done();
                }
                Down::Withdrawn { surplus, .. } => {
                    self.word.remove(surplus);
                }
                Down::Result { id, outcome } if !matches!(outcome, Outcome::Busy { .. }) => {
                    let action = actions[id];
                    self.answered(action, *outcome);
                }
                _ => {}
            }
        }
        self.seen = sim.delivered.len();
    }

    fn end_snapshot_if_done(&mut self) {
        if let Some((0, set)) = &self.snapshot {
            self.word.retain(|s, _| set.contains(s));
            self.snapshot = None;
        }
    }

    fn answered(&mut self, action: Action, outcome: Outcome) {
        let s = action.surplus();
        let advance = |k: &mut Card, from, to| {
            if k.stage == from {
                k.stage = to;
                k.version += 1;
            }
        };
        match (outcome, action) {
            (Outcome::Done, Action::Accept { .. }) => {
                if let Some(k) = self.word.get_mut(&s) {
                    advance(k, Stage::Offered, Stage::Claimed);
                }
            }
            (Outcome::Done, Action::PickedUp { .. }) => {
                if let Some(k) = self.word.get_mut(&s) {
                    advance(k, Stage::Claimed, Stage::PickedUp);
                }
            }
            _ => {
                self.word.remove(&s);
            }
        }
    }
}

/// What the test saw of the actions so far.
#[derive(Default)]
struct Ledger {
    /// Every id that reached the edge, with its action.
    actions: BTreeMap<ActionId, Action>,
    /// How many messages the kiosk had been handed when (connection, id)
    /// last reached the edge.
    last_receipt: BTreeMap<(u32, ActionId), usize>,
    seen: usize,
}

/// A message the kiosk was handed answering `id`: final, or busy.
fn answers(d: &Down, id: ActionId, busy: bool) -> bool {
    matches!(d, Down::Result { id: i, outcome } if *i == id && matches!(outcome, Outcome::Busy { .. }) == busy)
}

impl Ledger {
    fn check(&mut self, sim: &Sim) -> Result<(), TestCaseError> {
        for r in &sim.received[self.seen..] {
            let first = *self.actions.entry(r.id).or_insert(r.action);
            prop_assert_eq!(first, r.action, "id {:?} carried two actions", r.id);
            let before = &sim.delivered[..r.kiosk_had];
            prop_assert!(
                !before.iter().any(|d| answers(d, r.id, false)),
                "{:?} sent after its answer reached the kiosk",
                r.id
            );
            if let Some(at) = self.last_receipt.get(&(r.conn, r.id)) {
                let busy_between = sim.delivered[*at..r.kiosk_had]
                    .iter()
                    .any(|d| answers(d, r.id, true));
                prop_assert!(
                    busy_between,
                    "{:?} sent twice on connection {} with no busy between",
                    r.id,
                    r.conn
                );
            }
            self.last_receipt.insert((r.conn, r.id), r.kiosk_had);
        }
        self.seen = sim.received.len();
        let applied: BTreeSet<_> = sim.applied.iter().collect();
        prop_assert_eq!(
            applied.len(),
            sim.applied.len(),
            "a step applied twice: {:?}",
            sim.applied
        );
        Ok(())
    }
}

fn check_screen(sim: &Sim, know: &Knowledge) -> Result<(), TestCaseError> {
    let screen = sim.screen();
    let now = sim.edge_now().unix_ms();
    let slack = (ACTION_MARGIN_MS - MAX_SYNC_ROUND_TRIP_MS / 2) as i64;
    let card_of = |s: SurplusId| know.word.get(&s);
    for intent in [screen.ok, screen.back].into_iter().flatten() {
        match intent {
            Intent::Accept(s) | Intent::AskDecline(s) | Intent::Decline(s) => {
                let c = card_of(s);
                prop_assert!(
                    c.is_some_and(|c| c.stage == Stage::Offered),
                    "{:?} not offered: {:?}",
                    intent,
                    c
                );
                let rb = c.map_or(Timestamp::UNIX_EPOCH, |c| c.respond_by).unix_ms();
                prop_assert!(
                    now + slack <= rb,
                    "{:?} actionable {} ms before its deadline",
                    intent,
                    rb - now
                );
            }
            Intent::PickedUp(s) => {
                let c = card_of(s);
                prop_assert!(
                    c.is_some_and(|c| c.stage == Stage::Claimed),
                    "{:?}: {:?}",
                    intent,
                    c
                );
                let exp = c.map_or(Timestamp::UNIX_EPOCH, |c| c.expires_at).unix_ms();
                prop_assert!(
                    now < exp + (MAX_SYNC_ROUND_TRIP_MS / 2) as i64,
                    "pick-up after expiry"
                );
            }
            Intent::EnterAmount(s) | Intent::Deliver(s, _) => {
                let c = card_of(s);
                prop_assert!(
                    c.is_some_and(|c| c.stage == Stage::PickedUp),
                    "{:?}: {:?}",
                    intent,
                    c
                );
                if let (Intent::Deliver(_, g), Some(c)) = (intent, c) {
                    prop_assert!(g <= c.quantity, "delivering more than posted");
                }
            }
            Intent::Cancel => {}
        }
        if let Some(a) = intent.action() {
            prop_assert!(
                sim.kiosk.actions.on(a.surplus()).is_none(),
                "acting on a card with a pending action"
            );
        }
    }
    prop_assert!(
        screen
            .lines
            .iter()
            .flatten()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
    );
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new();
    let mut know = Knowledge::default();
    let mut ledger = Ledger::default();
    let mut boot = 7;
    // Every action this boot made (a reboot loses the RAM that holds them).
    let mut made = BTreeSet::new();
    for step in steps {
        match *step {
            Step::Press(b) => sim.press(b),
            Step::Wait(ms) => sim.wait(ms),
            Step::ToDeadline(i, ms) => sim.wait_to_deadline(i, ms),
            Step::Deliver(up, down) => sim.deliver(up, down),
            Step::Connect if !sim.is_connected() => sim.connect(),
            Step::Connect => {}
            Step::Disconnect => sim.disconnect(),
            Step::Offer(ms, g) if sim.live().len() < MAX_CARDS => {
                sim.offer(ms, g);
            }
            Step::Offer(..) => {}
            Step::Withdraw(i, reason) => {
                let live = sim.live();
                if !live.is_empty() {
                    sim.withdraw(live[i % live.len()], reason);
                }
            }
            Step::Busy(n) => sim.busy = n,
            Step::Reject(n) => sim.reject = n,
            Step::Reboot => {
                boot += 1;
                sim.reboot(boot);
                made.clear();
                know = Knowledge {
                    seen: sim.delivered.len(),
                    ..Knowledge::default()
                };
            }
        }
        ledger.check(&sim)?;
        know.learn(&sim, &ledger.actions);
        check_screen(&sim, &know)?;
        let pending = &sim.kiosk.actions;
        prop_assert!(pending.len() <= MAX_PENDING);
        made.extend(pending.ids());
        if let Some(t) = sim.kiosk.poll_timeout() {
            prop_assert!(t > sim.now, "woken in the past: {:?} at {:?}", t, sim.now);
        }
    }
    // The link heals: everything pressed gets its answer.
    sim.busy = 0;
    sim.reject = 0;
    sim.disconnect();
    sim.connect();
    sim.settle();
    sim.wait(2_000);
    sim.settle();
    ledger.check(&sim)?;
    prop_assert_eq!(sim.kiosk.pending(), 0, "unanswered after healing");
    for id in made {
        prop_assert!(
            sim.delivered.iter().any(|d| answers(d, id, false)),
            "{:?} was never answered",
            id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_schedule_shows_a_stale_offer_or_sends_an_action_twice(
        steps in proptest::collection::vec(step(), 1..160),
    ) {
        run(&steps)?;
    }
}
