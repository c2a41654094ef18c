//! The simulated edge and the link between it and a kiosk. The edge keeps
//! its surplus and its action dedupe across connections, like the real one
//! keeps them in SQLite; frames in flight are lost when the link drops.

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use sync_protocol::kiosk::{
    Action, ActionId, Card, Down, EdgeEvent, EdgeLink, Frame, LinkKey, MAX_CARDS, Outcome, Stage,
    TimeSync, Up, Withdrawal, msg::name,
};
use sync_protocol::{DeviceId, FoodType, Mass, SurplusId, Timestamp};

use crate::{Button, Config, Kiosk, Language, LinkStatus, Screen, Uptime};

pub const DEVICE: DeviceId = DeviceId::from_bytes([0xd1; 16]);
pub const KEY: LinkKey = LinkKey([0x42; 32]);
/// The edge's clock at uptime 0.
pub const EDGE_EPOCH_MS: i64 = 1_795_539_600_000;

pub fn config(boot: u32) -> Config {
    Config {
        device: DEVICE,
        key: KEY,
        boot,
        firmware: 1,
        language: Language::English,
    }
}

/// One surplus as the edge holds it for this recipient.
#[derive(Debug, Clone)]
pub struct Held {
    pub card: Card,
    pub gone: Option<Withdrawal>,
}

/// The edge's end of one connection.
struct EdgeConn {
    link: EdgeLink,
    live: bool,
}

/// Everything the simulated edge received and answered, for invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub conn: u32,
    pub id: ActionId,
    pub action: Action,
    pub outcome: Outcome,
    /// How many messages the kiosk had been handed by then.
    pub kiosk_had: usize,
}

pub struct Sim {
    pub kiosk: Kiosk,
    pub now: Uptime,
    pub held: BTreeMap<SurplusId, Held>,
    dedupe: BTreeMap<ActionId, (Action, Outcome)>,
    /// Actions the edge applied (outcome `Done`), in order.
    pub applied: Vec<(SurplusId, sync_protocol::kiosk::ActionKind)>,
    pub received: Vec<Received>,
    /// Answer this many next new actions `Busy`.
    pub busy: u32,
    /// Answer this many next new actions `Invalid`, changing nothing (as
    /// an edge whose rules refuse something the kiosk thought allowed).
    pub reject: u32,
    /// Refuse the next Hello with this.
    pub refuse: Option<sync_protocol::kiosk::Refusal>,
    /// Refuse with this, sealed, once the kiosk has authenticated.
    pub refuse_sealed: Option<sync_protocol::kiosk::Refusal>,
    conn: Option<EdgeConn>,
    conns: u32,
    up: VecDeque<Frame>,
    /// Frames to the kiosk, with the message each seals (`None`: the
    /// challenge, in the clear).
    pub down: VecDeque<(Frame, Option<Down>)>,
    /// Every message the kiosk was handed, in order.
    pub delivered: Vec<Down>,
    next_surplus: u8,
    nonces: u8,
}

impl Sim {
    pub fn new() -> Sim {
        Sim {
            kiosk: Kiosk::new(config(7)),
            now: Uptime(1_000),
            held: BTreeMap::new(),
            dedupe: BTreeMap::new(),
            applied: Vec::new(),
            received: Vec::new(),
            busy: 0,
            reject: 0,
            refuse: None,
            refuse_sealed: None,
            conn: None,
            conns: 0,
            up: VecDeque::new(),
            down: VecDeque::new(),
            delivered: Vec::new(),
            next_surplus: 0,
            nonces: 0,
        }
    }

    pub fn edge_now(&self) -> Timestamp {
        Timestamp::from_unix_ms(EDGE_EPOCH_MS + self.now.ms() as i64)
    }

    pub fn screen(&self) -> Screen {
        self.kiosk.screen(self.now)
    }

    pub fn lines(&self) -> [std::string::String; 4] {
        let s = self.screen();
        core::array::from_fn(|i| s.line(i).trim_end().into())
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The kiosk's socket connects (the edge accepts it).
    pub fn connect(&mut self) {
        self.nonces = self.nonces.wrapping_add(1);
        self.conns += 1;
        self.conn = Some(EdgeConn {
            link: EdgeLink::new(),
            live: false,
        });
        self.kiosk.connected(self.now, [self.nonces; 32]);
        self.collect();
    }

    /// The link drops: whatever is in flight is lost.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.up.clear();
        self.down.clear();
        self.kiosk.disconnected(self.now);
    }

    /// The board restarts: everything in its RAM is gone.
    pub fn reboot(&mut self, boot: u32) {
        self.disconnect();
        self.kiosk = Kiosk::new(config(boot));
    }

    pub fn press(&mut self, b: Button) {
        self.kiosk.button(self.now, b);
        self.collect();
    }

    /// Time passes on both clocks; the edge times out what is due.
    pub fn wait(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.sweep();
        self.kiosk.tick(self.now);
        self.collect();
        if self.kiosk.status() == LinkStatus::Failed {
            self.disconnect();
        }
    }

    /// Takes what the kiosk wants to send into the link.
    /// More than the kiosk can have to say at once (a Hello or Ready, each
    /// pending action, a heartbeat); beyond it the kiosk is looping.
    const MAX_BURST: usize = 4 + crate::MAX_PENDING;

    fn collect(&mut self) {
        for _ in 0..=Self::MAX_BURST {
            let Some(f) = self.kiosk.poll_transmit(self.now) else {
                return;
            };
            if self.conn.is_some() {
                self.up.push_back(f);
            }
        }
        panic!(
            "the kiosk sent more than {} frames at once",
            Self::MAX_BURST
        );
    }

    /// Delivers up to `up` frames to the edge and `down` to the kiosk.
    pub fn deliver(&mut self, up: usize, down: usize) {
        for _ in 0..up {
            let Some(f) = self.up.pop_front() else { break };
            self.edge_receive(&f);
        }
        for _ in 0..down {
            let Some((f, msg)) = self.down.pop_front() else {
                break;
            };
            // In two pieces, so the kiosk's reader joins them.
            let (a, b) = f.split_at(f.len() / 2);
            self.kiosk.receive(self.now, a);
            self.kiosk.receive(self.now, b);
            self.delivered.extend(msg);
        }
        self.collect();
        if self.kiosk.status() == LinkStatus::Failed {
            self.disconnect();
        }
    }

    /// Delivers everything, both ways, until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..100 {
            if self.up.is_empty() && self.down.is_empty() {
                return;
            }
            self.deliver(usize::MAX, usize::MAX);
        }
        panic!("the link did not settle");
    }

    fn send(&mut self, msg: Down) {
        let Some(c) = self.conn.as_mut().filter(|c| c.live) else {
            return;
        };
        let f = c.link.seal(&msg).expect("open link");
        self.down.push_back((f, Some(msg)));
    }

    fn edge_receive(&mut self, f: &[u8]) {
        let Some(c) = self.conn.as_mut() else { return };
        let taken = c.link.push(f);
        assert_eq!(taken, f.len(), "one whole frame");
        while let Some(event) = self.conn.as_mut().and_then(|c| c.link.poll_event()) {
            match event.expect("the kiosk sends only good frames") {
                EdgeEvent::Hello { device } => {
                    assert_eq!(device, DEVICE);
                    let c = self.conn.as_mut().expect("connected");
                    let reply = match self.refuse {
                        Some(r) => c.link.refuse(r),
                        None => c.link.challenge(&KEY, [0xe0 ^ self.nonces; 32]),
                    };
                    self.down.push_back((reply.expect("awaits key"), None));
                }
                EdgeEvent::Authenticated { .. } => {}
                EdgeEvent::Up(up) => self.on_up(up),
            }
        }
    }

    fn on_up(&mut self, up: Up) {
        match up {
            Up::Ready { device_ms, .. } => {
                self.conn.as_mut().expect("connected").live = true;
                if let Some(r) = self.refuse_sealed {
                    return self.send(Down::Refused(r));
                }
                let open: Vec<Card> = self
                    .held
                    .values()
                    .filter(|h| h.gone.is_none())
                    .map(|h| h.card.clone())
                    .take(MAX_CARDS)
                    .collect();
                self.send(Down::Welcome {
                    recipient: name("Bank Pangan Bandung"),
                    time: TimeSync {
                        device_ms,
                        edge_now: self.edge_now(),
                    },
                    utc_offset_minutes: 420,
                    open: open.len() as u8,
                });
                for card in open {
                    self.send(Down::Card(card));
                }
            }
            Up::Heartbeat { device_ms } => self.send(Down::Time(TimeSync {
                device_ms,
                edge_now: self.edge_now(),
            })),
            Up::Act { id, action } => {
                let (outcome, card) = self.apply(id, action);
                self.received.push(Received {
                    conn: self.conns,
                    id,
                    action,
                    outcome,
                    kiosk_had: self.delivered.len(),
                });
                self.send(Down::Result { id, outcome });
                if let Some(card) = card {
                    self.send(Down::Card(card));
                }
            }
        }
    }

    /// The edge's rules for an action, deduped by id.
    fn apply(&mut self, id: ActionId, action: Action) -> (Outcome, Option<Card>) {
        if let Some((first, outcome)) = self.dedupe.get(&id) {
            return (
                if *first == action {
                    *outcome
                } else {
                    Outcome::IdReused
                },
                None,
            );
        }
        if self.busy > 0 {
            self.busy -= 1;
            return (
                Outcome::Busy {
                    retry_after_ms: 1_500,
                },
                None,
            );
        }
        let now = self.edge_now();
        let (outcome, card) = match self.held.get_mut(&action.surplus()) {
            _ if self.reject > 0 => {
                self.reject -= 1;
                (Outcome::Invalid, None)
            }
            None => (Outcome::NotYours, None),
            Some(h) => decide(h, action, now),
        };
        self.dedupe.insert(id, (action, outcome));
        if outcome == Outcome::Done {
            self.applied.push((action.surplus(), action.kind()));
        }
        (outcome, card)
    }

    /// A new offer to this recipient; its id.
    pub fn offer(&mut self, respond_in_ms: u64, grams: u64) -> SurplusId {
        self.next_surplus += 1;
        let surplus = SurplusId::from_bytes([self.next_surplus; 16]);
        let now = self.edge_now().unix_ms();
        let card = Card {
            surplus,
            version: 2,
            stage: Stage::Offered,
            provider: name(&std::format!("Warung {}", self.next_surplus)),
            food_type: FoodType::ALL[self.next_surplus as usize % 7],
            quantity: Mass::from_grams(grams),
            distance_m: 2_300,
            respond_by: Timestamp::from_unix_ms(now + respond_in_ms as i64),
            expires_at: Timestamp::from_unix_ms(now + respond_in_ms as i64 + 3_600_000),
        };
        self.held.insert(
            surplus,
            Held {
                card: card.clone(),
                gone: None,
            },
        );
        self.send(Down::Card(card));
        surplus
    }

    /// The edge withdraws a surplus (someone else claimed it, the provider
    /// cancelled).
    pub fn withdraw(&mut self, surplus: SurplusId, reason: Withdrawal) {
        if let Some(h) = self.held.get_mut(&surplus).filter(|h| h.gone.is_none()) {
            h.gone = Some(reason);
            self.send(Down::Withdrawn { surplus, reason });
        }
    }

    /// Waits until `before_ms` ahead of the deadline of the `i`-th live
    /// offer, if there is one and that is still ahead: the edge of the
    /// margin, where a wrong rule would show.
    pub fn wait_to_deadline(&mut self, i: usize, before_ms: u64) {
        let offers: Vec<Timestamp> = self
            .held
            .values()
            .filter(|h| h.gone.is_none() && h.card.stage == Stage::Offered)
            .map(|h| h.card.respond_by)
            .collect();
        if offers.is_empty() {
            return;
        }
        let target = offers[i % offers.len()].unix_ms() - before_ms as i64;
        let now = self.edge_now().unix_ms();
        if target > now {
            self.wait((target - now) as u64);
        }
    }

    /// Live surplus, in id order.
    pub fn live(&self) -> Vec<SurplusId> {
        self.held
            .iter()
            .filter(|(_, h)| h.gone.is_none())
            .map(|(s, _)| *s)
            .collect()
    }

    /// The edge's timers: unanswered offers time out, uncollected claims
    /// expire.
    fn sweep(&mut self) {
        let now = self.edge_now();
        let due: Vec<(SurplusId, Withdrawal)> = self
            .held
            .iter()
            .filter(|(_, h)| h.gone.is_none())
            .filter_map(|(s, h)| match h.card.stage {
                Stage::Offered if now >= h.card.respond_by => Some((*s, Withdrawal::TimedOut)),
                Stage::Claimed if now >= h.card.expires_at => Some((*s, Withdrawal::Expired)),
                _ => None,
            })
            .collect();
        for (s, reason) in due {
            self.withdraw(s, reason);
        }
    }
}

/// The edge's lifecycle for one action on one held surplus.
fn decide(h: &mut Held, action: Action, now: Timestamp) -> (Outcome, Option<Card>) {
    if let Some(reason) = h.gone {
        let outcome = match reason {
            Withdrawal::ClaimedByAnother => Outcome::LostRace,
            Withdrawal::TimedOut | Withdrawal::Expired => Outcome::Expired,
            Withdrawal::Cancelled => Outcome::NotYours,
        };
        return (outcome, None);
    }
    let card = &mut h.card;
    let next = match (action, card.stage) {
        (Action::Accept { .. }, Stage::Offered) if now < card.respond_by => Some(Stage::Claimed),
        (Action::Decline { .. }, Stage::Offered) if now < card.respond_by => None,
        (Action::PickedUp { .. }, Stage::Claimed) if now < card.expires_at => Some(Stage::PickedUp),
        (Action::Delivered { delivered, .. }, Stage::PickedUp) if delivered <= card.quantity => {
            None
        }
        (Action::Accept { .. } | Action::Decline { .. }, Stage::Offered) => {
            return (Outcome::Expired, None);
        }
        (Action::PickedUp { .. }, Stage::Claimed) => return (Outcome::Expired, None),
        _ => return (Outcome::Invalid, None),
    };
    match next {
        Some(stage) => {
            card.stage = stage;
            card.version += 1;
            (Outcome::Done, Some(card.clone()))
        }
        None => {
            h.gone = Some(Withdrawal::Cancelled);
            (Outcome::Done, None)
        }
    }
}
