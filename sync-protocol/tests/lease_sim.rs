//! A deterministic simulation of the hub and three edges under majority
//! leases (issue 11): leases, warm replication through the hub, claims and
//! reconciliation, on a simulated clock and network, each seed a schedule of
//! message loss, duplication, delay, asymmetric partitions, process pauses,
//! crashes, restarts and clock-rate drift inside the bound the timing
//! covers. Invariants are checked after every step; a failing seed is
//! printed and replays exactly:
//!
//! ```sh
//! PAHLAWAN_LEASE_SEED=1234 cargo test -p sync-protocol --test lease_sim   # one seed
//! PAHLAWAN_LEASE_SEEDS=1000000 cargo test --release -p sync-protocol --test lease_sim   # a soak
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use sync_protocol::quorum_lease::reconcile::{self, Admission, Claim, Outcome};
use sync_protocol::quorum_lease::{
    Acceptor, AcceptorIdx, Action, Durable, HUB, Known, Member, Mono, Proposer, Release, Reply,
    Request, Timing,
};

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Milliseconds in `lo..hi`, as simulated microseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> u64 {
        (lo + self.below(hi - lo)) * 1_000
    }
}

const HUB_NODE: usize = 0;
const NODES: usize = 4; // the hub and edges 1..=3
const FAULTY_US: u64 = 20_000_000;
const HEALED_US: u64 = 8_000_000;
const DRAIN_US: u64 = 3_000_000;
const TICK_US: u64 = 50_000;
const SURPLUS_PER_CELL: u64 = 25;

/// The cells and their groups (owner first): one with two standbys (four
/// acceptors), one with one (three).
const CELLS: [(u64, &[usize]); 2] = [(11, &[1, 2, 3]), (12, &[2, 1])];

fn member_of(cell: usize, node: usize) -> Option<Member> {
    CELLS[cell]
        .1
        .iter()
        .position(|&n| n == node)
        .map(|m| Member(m as u8))
}

fn node_of_acceptor(cell: usize, a: AcceptorIdx) -> usize {
    if a == HUB {
        HUB_NODE
    } else {
        CELLS[cell].1[usize::from(a.0) - 1]
    }
}

fn acceptors(cell: usize) -> impl Iterator<Item = AcceptorIdx> {
    (0..=CELLS[cell].1.len() as u8).map(AcceptorIdx)
}

#[derive(Clone, Copy, Debug)]
struct Written {
    cell: usize,
    claim: Claim,
}

#[derive(Clone, Debug)]
enum Msg {
    Ask(usize, Request),
    Answer(usize, AcceptorIdx, Reply),
    Release(usize, Release),
    Ship(Vec<(u64, Written)>),
    Ack(Vec<u64>),
    Fenced(usize, u64),
    Replicate(Written),
}

#[derive(Debug)]
enum Ev {
    Tick(usize),
    Deliver { from: usize, to: usize, msg: Msg },
    Client,
    Fault,
    Heal(Heal),
}

#[derive(Debug)]
enum Heal {
    Link(usize, usize),
    Resume(usize),
    Restart(usize),
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // a min-heap
    }
}

/// What each node keeps across a crash (SQLite at an edge, PostgreSQL at
/// the hub) and what it loses.
#[derive(Default)]
struct Node {
    up: bool,
    paused_until: u64,
    rate: f64,
    offset: i64,
    // Durable.
    acceptor_disk: [Durable; 2],
    known_max: [u64; 2],
    incarnation: u32,
    // Volatile.
    acceptors: [Option<Acceptor>; 2],
    proposers: [Option<Proposer>; 2],
    // An edge's durable claims: its own and those replicated to it.
    local: BTreeMap<(usize, u64), Claim>,
    outbox: BTreeMap<u64, Written>,
    next_seq: u64,
}

/// The hub's durable view.
#[derive(Default)]
struct HubView {
    cell_epoch: [u64; 2],
    seen: BTreeSet<(usize, u64)>,
    winners: BTreeMap<(usize, u64), Claim>,
    revoked: BTreeSet<(usize, Member, u64)>,
}

struct Faults {
    loss: f64,
    dup: f64,
    max_delay_ms: u64,
    spike: f64,
}

struct Sim {
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<Node>,
    hub: HubView,
    blocked: BTreeSet<(usize, usize)>,
    faults: Faults,
    timing: Timing,
    // The record the invariants read.
    acked: Vec<(usize, u64, Written)>,
    last_write_epoch: [u64; 2],
    epoch_writer: BTreeMap<(usize, u64), usize>,
    violation: Option<String>,
    steps: u64,
}

fn main_timing() -> Timing {
    Timing::DEFAULT
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let timing = main_timing();
        // Every clock's rate within 1 ± ρ, ρ just inside what the margin covers.
        let rho = timing.max_drift() * 0.95;
        let faults = Faults {
            loss: rng.unit() * 0.2,
            dup: rng.unit() * 0.1,
            max_delay_ms: 2 + rng.below(80),
            spike: rng.unit() * 0.02,
        };
        let mut nodes: Vec<Node> = (0..NODES).map(|_| Node::default()).collect();
        for n in &mut nodes {
            n.rate = 1.0 + rho * (2.0 * rng.unit() - 1.0);
            n.offset = rng.below(1 << 40) as i64;
        }
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            hub: HubView::default(),
            blocked: BTreeSet::new(),
            faults,
            timing,
            acked: Vec::new(),
            last_write_epoch: [0; 2],
            epoch_writer: BTreeMap::new(),
            violation: None,
            steps: 0,
        };
        for n in 0..NODES {
            sim.restart(n);
            let first = sim.rng.below(TICK_US);
            sim.at(first, Ev::Tick(n));
        }
        sim.at(100_000, Ev::Client);
        sim.at(500_000, Ev::Fault);
        sim
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn local(&self, n: usize) -> Mono {
        let node = &self.nodes[n];
        Mono::from_ms(node.offset + (self.now as f64 * node.rate / 1_000.0) as i64)
    }

    fn running(&self, n: usize) -> bool {
        self.nodes[n].up && self.nodes[n].paused_until <= self.now
    }

    fn restart(&mut self, n: usize) {
        let now = self.local(n);
        let timing = self.timing;
        let node = &mut self.nodes[n];
        node.up = true;
        node.paused_until = 0;
        node.incarnation += 1;
        for (c, (_, group)) in CELLS.iter().enumerate() {
            let len = group.len() as u8;
            if n == HUB_NODE || member_of(c, n).is_some() {
                node.acceptors[c] = Some(Acceptor::start(
                    CELLS[c].0,
                    len,
                    timing,
                    node.acceptor_disk[c],
                    now,
                ));
            }
            if let Some(m) = member_of(c, n) {
                node.proposers[c] = Some(Proposer::start(
                    CELLS[c].0,
                    m,
                    len + 1,
                    timing,
                    Known {
                        max_epoch: node.known_max[c],
                        incarnation: node.incarnation,
                    },
                    now,
                ));
            }
        }
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.up = false;
        node.acceptors = [None, None];
        node.proposers = [None, None];
    }

    /// Sends through the simulated network: lost, duplicated, delayed.
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from == to {
            self.at(self.now, Ev::Deliver { from, to, msg });
            return;
        }
        if self.rng.chance(self.faults.loss) {
            return;
        }
        let copies = if self.rng.chance(self.faults.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.rng.ms(1, self.faults.max_delay_ms + 1);
            if self.rng.chance(self.faults.spike) {
                delay += self.rng.ms(100, 1_500);
            }
            self.at(
                self.now + delay,
                Ev::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn run(&mut self, seed: u64) {
        while let Some(q) = self.queue.pop() {
            if q.at > FAULTY_US + HEALED_US {
                break;
            }
            self.now = q.at;
            self.step(q.ev);
            self.steps += 1;
            if let Err(e) = self.check_single_writer() {
                panic!(
                    "seed {seed}: {e} at {} µs (replay: PAHLAWAN_LEASE_SEED={seed})",
                    self.now
                );
            }
        }
        if let Err(e) = self.check_end() {
            panic!("seed {seed}: {e} (replay: PAHLAWAN_LEASE_SEED={seed})");
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Tick(n) => self.tick(n),
            Ev::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Ev::Client => self.client(),
            Ev::Fault => self.fault(),
            Ev::Heal(Heal::Link(a, b)) => {
                self.blocked.remove(&(a, b));
            }
            Ev::Heal(Heal::Resume(n)) => self.nodes[n].paused_until = 0,
            Ev::Heal(Heal::Restart(n)) => {
                if !self.nodes[n].up {
                    self.restart(n);
                }
            }
        }
    }

    fn tick(&mut self, n: usize) {
        let next = self.now + (TICK_US as f64 / self.nodes[n].rate) as u64;
        self.at(next, Ev::Tick(n));
        if !self.running(n) || n == HUB_NODE {
            return;
        }
        let now = self.local(n);
        for c in 0..CELLS.len() {
            let node = &mut self.nodes[n];
            let (Some(p), Some(own)) = (node.proposers[c].as_mut(), node.acceptors[c].as_ref())
            else {
                continue;
            };
            let action = p.tick(now, own);
            node.known_max[c] = p.known_max();
            match action {
                Some(Action::Ask(req)) => self.broadcast(n, c, |_| Msg::Ask(c, req)),
                Some(Action::Release(rel)) => self.broadcast(n, c, |_| Msg::Release(c, rel)),
                None => {}
            }
        }
        // Ship the outbox every fourth tick or so.
        if self.rng.below(4) == 0 {
            let batch: Vec<_> = self.nodes[n]
                .outbox
                .iter()
                .take(32)
                .map(|(s, w)| (*s, *w))
                .collect();
            if !batch.is_empty() {
                self.send(n, HUB_NODE, Msg::Ship(batch));
            }
        }
    }

    fn broadcast(&mut self, from: usize, cell: usize, msg: impl Fn(AcceptorIdx) -> Msg) {
        for a in acceptors(cell) {
            let to = node_of_acceptor(cell, a);
            self.send(from, to, msg(a));
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if self.blocked.contains(&(from, to)) || !self.nodes[to].up {
            return;
        }
        if self.nodes[to].paused_until > self.now {
            // The kernel holds it until the process runs again.
            let at = self.nodes[to].paused_until;
            self.at(at, Ev::Deliver { from, to, msg });
            return;
        }
        let now = self.local(to);
        match msg {
            Msg::Ask(c, req) => self.on_ask(from, to, c, req, now),
            Msg::Answer(c, a, reply) => self.on_answer(to, c, a, reply, now),
            Msg::Release(c, rel) => {
                if let Some(acc) = self.nodes[to].acceptors[c].as_mut() {
                    acc.on_release(&rel);
                }
            }
            Msg::Ship(batch) => self.on_ship(from, batch),
            Msg::Ack(seqs) => seqs.iter().for_each(|s| {
                self.nodes[to].outbox.remove(s);
            }),
            Msg::Fenced(c, current) => {
                let node = &mut self.nodes[to];
                node.known_max[c] = node.known_max[c].max(current);
                if let Some(p) = node.proposers[c].as_mut() {
                    p.fenced(current);
                }
            }
            Msg::Replicate(w) => self.on_replicate(to, w),
        }
    }

    fn on_ask(&mut self, from: usize, to: usize, c: usize, req: Request, now: Mono) {
        // The shell names the sender from its authenticated link, not from
        // what the request says: a request claiming another member is refused.
        if member_of(c, from) != Some(req.from) {
            return;
        }
        let Some(acc) = self.nodes[to].acceptors[c].as_mut() else {
            return;
        };
        let (reply, _changed) = acc.on_request(now, &req);
        // Persisted before the answer leaves.
        self.nodes[to].acceptor_disk[c] = acc.durable();
        let idx = if to == HUB_NODE {
            HUB
        } else {
            member_of(c, to).map_or(HUB, Member::acceptor)
        };
        self.send(to, from, Msg::Answer(c, idx, reply));
    }

    fn on_answer(&mut self, to: usize, c: usize, a: AcceptorIdx, reply: Reply, now: Mono) {
        let node = &mut self.nodes[to];
        let Some(p) = node.proposers[c].as_mut() else {
            return;
        };
        let action = p.on_reply(now, a, &reply);
        node.known_max[c] = p.known_max();
        if let Some(Action::Release(rel)) = action {
            self.broadcast(to, c, |_| Msg::Release(c, rel));
        }
    }

    fn on_ship(&mut self, from: usize, batch: Vec<(u64, Written)>) {
        let mut acks = Vec::new();
        for (seq, w) in batch {
            acks.push(seq);
            if !self.hub.seen.insert((from, seq)) {
                continue;
            }
            match reconcile::admit(w.claim.epoch, self.hub.cell_epoch[w.cell]) {
                Admission::Current => {}
                Admission::Newer => self.hub.cell_epoch[w.cell] = w.claim.epoch,
                Admission::Stale { current } => {
                    self.send(HUB_NODE, from, Msg::Fenced(w.cell, current))
                }
            }
            let key = (w.cell, w.claim.surplus);
            match reconcile::reconcile(self.hub.winners.get(&key), &w.claim) {
                Outcome::Wins => self.win(w),
                Outcome::Replaces { loser } => {
                    self.hub.revoked.insert((w.cell, loser.edge, loser.seq));
                    self.win(w);
                }
                Outcome::Loses { .. } => {
                    self.hub.revoked.insert((w.cell, w.claim.edge, w.claim.seq));
                }
                Outcome::Duplicate => {}
            }
        }
        self.send(HUB_NODE, from, Msg::Ack(acks));
    }

    /// The surplus's claim is `w`'s: every member of the cell replicates it.
    fn win(&mut self, w: Written) {
        self.hub.winners.insert((w.cell, w.claim.surplus), w.claim);
        for &n in CELLS[w.cell].1 {
            if member_of(w.cell, n) != Some(w.claim.edge) {
                self.send(HUB_NODE, n, Msg::Replicate(w));
            }
        }
    }

    fn on_replicate(&mut self, to: usize, w: Written) {
        let key = (w.cell, w.claim.surplus);
        let node = &mut self.nodes[to];
        match reconcile::reconcile(node.local.get(&key), &w.claim) {
            Outcome::Wins | Outcome::Replaces { .. } => {
                node.local.insert(key, w.claim);
            }
            Outcome::Loses { .. } | Outcome::Duplicate => {}
        }
    }

    /// A recipient at a kiosk claims a surplus at one of the cell's edges.
    fn client(&mut self) {
        let next = self.now + self.rng.ms(20, 180);
        // The last seconds write nothing, so every outbox drains.
        if next < FAULTY_US + HEALED_US - DRAIN_US {
            self.at(next, Ev::Client);
        }
        let c = self.rng.below(CELLS.len() as u64) as usize;
        let group = CELLS[c].1;
        let n = group[self.rng.below(group.len() as u64) as usize];
        let surplus = self.rng.below(SURPLUS_PER_CELL);
        if !self.running(n) {
            return;
        }
        let now = self.local(n);
        let node = &self.nodes[n];
        let Some(epoch) = node.proposers[c].as_ref().and_then(|p| p.serving(now)) else {
            return; // refused: not this edge's cell now
        };
        if node.local.contains_key(&(c, surplus)) {
            return; // already claimed, as far as this edge knows
        }
        let Some(edge) = member_of(c, n) else { return };
        let node = &mut self.nodes[n];
        node.next_seq += 1;
        let seq = node.next_seq;
        let w = Written {
            cell: c,
            claim: Claim {
                surplus,
                edge,
                epoch,
                seq,
            },
        };
        node.local.insert((c, surplus), w.claim);
        node.outbox.insert(seq, w);
        self.record_write(n, seq, w);
    }

    fn record_write(&mut self, n: usize, seq: u64, w: Written) {
        let (c, epoch) = (w.cell, w.claim.epoch);
        if epoch < self.last_write_epoch[c] {
            let last = self.last_write_epoch[c];
            self.violation = Some(format!(
                "edge {n} wrote cell {c} with epoch {epoch} after epoch {last}"
            ));
        }
        self.last_write_epoch[c] = self.last_write_epoch[c].max(epoch);
        let writer = *self.epoch_writer.entry((c, epoch)).or_insert(n);
        if writer != n {
            self.violation = Some(format!(
                "epoch {epoch} of cell {c} has writers {writer} and {n}"
            ));
        }
        self.acked.push((n, seq, w));
    }

    fn fault(&mut self) {
        let next = self.now + self.rng.ms(200, 1_500);
        if next < FAULTY_US {
            self.at(next, Ev::Fault);
        } else {
            self.heal_all_at_end();
        }
        let n = self.rng.below(NODES as u64) as usize;
        let lasting = self.rng.ms(100, 4_000);
        match self.rng.below(10) {
            0..=4 => {
                let m = (n + 1 + self.rng.below(NODES as u64 - 1) as usize) % NODES;
                self.blocked.insert((n, m));
                self.at(self.now + lasting, Ev::Heal(Heal::Link(n, m)));
                if self.rng.chance(0.5) {
                    self.blocked.insert((m, n));
                    self.at(self.now + lasting, Ev::Heal(Heal::Link(m, n)));
                }
            }
            5..=7 if n != HUB_NODE => {
                self.nodes[n].paused_until = self.now + lasting;
            }
            _ => {
                if self.nodes[n].up {
                    self.crash(n);
                    self.at(self.now + lasting, Ev::Heal(Heal::Restart(n)));
                }
            }
        }
    }

    /// From FAULTY_US on, no new faults: links mend, loss stops, everyone runs.
    fn heal_all_at_end(&mut self) {
        self.faults.loss = 0.0;
        self.faults.spike = 0.0;
        for n in 0..NODES {
            self.at(FAULTY_US, Ev::Heal(Heal::Resume(n)));
            self.at(FAULTY_US, Ev::Heal(Heal::Restart(n)));
            for m in 0..NODES {
                self.at(FAULTY_US, Ev::Heal(Heal::Link(n, m)));
            }
        }
    }

    /// At most one edge may write a leased cell at this instant.
    fn check_single_writer(&self) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        for (c, (_, group)) in CELLS.iter().enumerate() {
            let serving: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&n| self.nodes[n].up)
                .filter(|&n| {
                    let now = self.local(n);
                    self.nodes[n].proposers[c]
                        .as_ref()
                        .and_then(|p| p.serving(now))
                        .is_some()
                })
                .collect();
            if serving.len() > 1 {
                return Err(format!("cell {c} is served by edges {serving:?} at once"));
            }
        }
        Ok(())
    }

    /// After the faults heal: nothing acknowledged is lost, every surplus has
    /// one claim at the hub — the highest epoch's — and each other claim on
    /// it was revoked; each cell is served again.
    fn check_end(&self) -> Result<(), String> {
        let mut best: BTreeMap<(usize, u64), Claim> = BTreeMap::new();
        for &(n, seq, w) in &self.acked {
            if !self.hub.seen.contains(&(n, seq)) {
                return Err(format!(
                    "edge {n}'s acknowledged event {seq} never reached the hub"
                ));
            }
            let key = (w.cell, w.claim.surplus);
            let better = best.get(&key).is_none_or(|b| {
                (std::cmp::Reverse(w.claim.epoch), w.claim.seq)
                    < (std::cmp::Reverse(b.epoch), b.seq)
            });
            if better {
                best.insert(key, w.claim);
            }
        }
        for &(_, _, w) in &self.acked {
            let key = (w.cell, w.claim.surplus);
            let winner = self
                .hub
                .winners
                .get(&key)
                .ok_or("a claimed surplus has no claim at the hub")?;
            if Some(winner) != best.get(&key) {
                return Err(format!(
                    "{key:?}: the hub kept {winner:?}, not the highest epoch's {:?}",
                    best.get(&key)
                ));
            }
            let revoked = self
                .hub
                .revoked
                .contains(&(w.cell, w.claim.edge, w.claim.seq));
            if (*winner == w.claim) == revoked {
                return Err(format!(
                    "{key:?}: claim {:?} is {} the winner and {} revoked",
                    w.claim,
                    if *winner == w.claim { "" } else { "not" },
                    if revoked { "" } else { "not" }
                ));
            }
        }
        for (c, (_, group)) in CELLS.iter().enumerate() {
            let served = group.iter().any(|&n| {
                self.nodes[n].proposers[c]
                    .as_ref()
                    .and_then(|p| p.serving(self.local(n)))
                    .is_some()
            });
            if !served {
                return Err(format!(
                    "cell {c} is not served {} s after the faults healed",
                    HEALED_US / 1_000_000
                ));
            }
        }
        Ok(())
    }
}

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("PAHLAWAN_LEASE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("PAHLAWAN_LEASE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000u64);
    (0..n).collect()
}

#[test]
fn at_most_one_writer_per_cell_nothing_acknowledged_lost_and_the_higher_epoch_wins() {
    let seeds = seeds();
    let (mut steps, mut writes, mut revoked) = (0u64, 0usize, 0usize);
    for &seed in &seeds {
        let mut sim = Sim::new(seed);
        sim.run(seed);
        steps += sim.steps;
        writes += sim.acked.len();
        revoked += sim.hub.revoked.len();
    }
    eprintln!(
        "{} seeds, {steps} steps, {writes} claims written, {revoked} revoked by reconciliation",
        seeds.len()
    );
    // The schedules must exercise the rules, not only idle.
    assert!(
        writes as u64 > 20 * seeds.len() as u64,
        "{writes} claims over {} seeds",
        seeds.len()
    );
    if seeds.len() >= 1_000 {
        assert!(revoked > 0, "no schedule reached a reconciliation");
    }
}
