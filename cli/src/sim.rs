//! `pahlawan simulate`: the thundering herd. An in-process edge on a
//! temporary SQLite file and a manual clock; N restaurants around Jakarta
//! post surplus within one simulated minute; recipients accept, decline or
//! ignore offers by a seeded policy; simulated time then runs on so ACK
//! timeouts, the DLQ, pick-ups, deliveries and expiry really happen.
//!
//! Deterministic: commands are submitted in a seeded order, the engine
//! processes them in queue order, ids come from a seeded generator, and each
//! recipient's answer is a hash of (seed, surplus, recipient). Same seed, same
//! counts; only the wall-clock figures vary.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sync_protocol::{
    Contact, Duration, Event, FoodType, FoodTypeSet, GeoPoint, Mass, ProviderId, RecipientId,
    SurplusId, Timestamp,
};

use edge_node::clock::ManualClock;
use edge_node::commands::{NewProvider, NewRecipient, NewSurplus, SurplusAction};
use edge_node::config::EdgeConfig;
use edge_node::ports::{Reads, Writes};
use edge_node::store::stats::WriterStats;
use edge_node::{Edge, EdgeError, StartError, StartOptions};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub providers: usize,
    pub recipients: usize,
    pub seed: u64,
    /// Posts arrive within this many simulated seconds.
    pub burst_secs: u32,
    /// Simulated time steps after the burst.
    pub step_secs: u32,
    /// Stop after this much simulated time even if surplus remain open.
    pub horizon_hours: u32,
    pub show_progress: bool,
    /// Where the SQLite file goes; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            providers: 10_000,
            recipients: 500,
            seed: 42,
            burst_secs: 60,
            step_secs: 30,
            horizon_hours: 12,
            show_progress: true,
            data_dir: None,
        }
    }
}

fn refused(r: edge_node::commands::Rejection) -> SimError {
    SimError::Setup(format!("registration refused: {:?}", r.reason))
}

/// 2026-11-24 22:00 in Jakarta (15:00 UTC): closing time.
pub const SIM_START: Timestamp = Timestamp::from_unix_ms(1_795_532_400_000);
const CITY_CENTRE: (f64, f64) = (-6.2, 106.85);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("starting the edge: {0}")]
    Start(#[from] StartError),
    #[error("the edge failed: {0}")]
    Edge(#[from] EdgeError),
    #[error("creating a temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Outcome counts (deterministic per seed) and wall-clock figures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimCounts {
    pub providers: usize,
    pub recipients: usize,
    pub fallback_recipients: usize,
    pub posted: u64,
    pub offers_made: u64,
    pub surplus_offered: u64,
    pub declined: u64,
    pub timed_out: u64,
    pub claimed: u64,
    pub claimed_directly: u64,
    pub claim_conflicts: u64,
    pub picked_up: u64,
    pub delivered: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub fallback_offers: u64,
    pub still_open: u64,
    pub grams_posted: u64,
    pub grams_rescued: u64,
    pub simulated_minutes: i64,
}

#[derive(Debug)]
pub struct SimReport {
    pub counts: SimCounts,
    pub posting_wall: std::time::Duration,
    pub total_wall: std::time::Duration,
    /// Microseconds from submitting a post to its durable reply.
    pub post_latency_us: Histogram<u64>,
    /// Nanoseconds the engine spent deciding each post (matching included).
    pub match_latency_ns: Histogram<u64>,
    pub commits: u64,
}

impl SimReport {
    pub fn posts_per_sec(&self) -> f64 {
        self.counts.posted as f64 / self.posting_wall.as_secs_f64().max(1e-9)
    }

    pub fn render(&self) -> String {
        let c = &self.counts;
        let p = |h: &Histogram<u64>, q: f64, div: f64| h.value_at_quantile(q) as f64 / div;
        let pct = |n: u64| 100.0 * n as f64 / c.posted.max(1) as f64;
        format!(
            "Pahlawan Pangan thundering-herd simulation\n\
             world      {} providers, {} recipients (+{} fallback food banks), Greater Jakarta\n\
             simulated  {} min after the burst\n\n\
             posted          {:>8}   {:>10.1} kg\n\
             offered         {:>8}   ({} offers; {} declined, {} unanswered)\n\
             claimed         {:>8}   ({} directly; {} lost a claim race)\n\
             picked up       {:>8}\n\
             delivered       {:>8}   {:>10.1} kg rescued ({:.1}%)\n\
             expired         {:>8}   ({:.1}%)\n\
             dead-lettered   {:>8}   ({} went to a fallback food bank)\n\
             still open      {:>8}\n\n\
             throughput      {:>8.0} posts/s ({} posts in {:.2} s wall, {} commits)\n\
             post latency    p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  (submit → durable reply)\n\
             match latency   p50 {:.1} µs  p95 {:.1} µs  p99 {:.1} µs  (engine decision per post)\n\
             total wall      {:.2} s\n",
            c.providers,
            c.recipients,
            c.fallback_recipients,
            c.simulated_minutes,
            c.posted,
            c.grams_posted as f64 / 1e3,
            c.surplus_offered,
            c.offers_made,
            c.declined,
            c.timed_out,
            c.claimed,
            c.claimed_directly,
            c.claim_conflicts,
            c.picked_up,
            c.delivered,
            c.grams_rescued as f64 / 1e3,
            100.0 * c.grams_rescued as f64 / c.grams_posted.max(1) as f64,
            c.expired,
            pct(c.expired),
            c.dead_lettered,
            c.fallback_offers,
            c.still_open,
            self.posts_per_sec(),
            c.posted,
            self.posting_wall.as_secs_f64(),
            self.commits,
            p(&self.post_latency_us, 0.5, 1e3),
            p(&self.post_latency_us, 0.95, 1e3),
            p(&self.post_latency_us, 0.99, 1e3),
            p(&self.match_latency_ns, 0.5, 1e3),
            p(&self.match_latency_ns, 0.95, 1e3),
            p(&self.match_latency_ns, 0.99, 1e3),
            self.total_wall.as_secs_f64(),
        )
    }
}

/// Something a simulated recipient will do at a simulated time.
#[derive(Debug, Clone, Copy)]
enum Act {
    Answer {
        surplus: SurplusId,
        recipient: RecipientId,
        accept: bool,
    },
    DirectClaim {
        surplus: SurplusId,
        recipient: RecipientId,
    },
    PickUp {
        surplus: SurplusId,
        recipient: RecipientId,
    },
    Deliver {
        surplus: SurplusId,
        recipient: RecipientId,
        fraction_pct: u64,
    },
}

struct Sim {
    cfg: SimConfig,
    writes: Writes,
    reads: Reads,
    clock: Arc<ManualClock>,
    rng: SmallRng,
    agenda: BTreeMap<(Timestamp, u64), Act>,
    agenda_seq: u64,
    outbox_seq: u64,
    recipients: Vec<RecipientId>,
    quantity: HashMap<SurplusId, Mass>,
    open: HashMap<SurplusId, ()>,
    counts: SimCounts,
    post_latency_us: Histogram<u64>,
    posting_wall: std::time::Duration,
}

/// Runs the whole simulation.
pub async fn run(cfg: SimConfig) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let tmp;
    let data_dir = match &cfg.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(SimError::TempDir)?;
            tmp.path().to_path_buf()
        }
    };
    let clock = Arc::new(ManualClock::new(SIM_START));
    let config = EdgeConfig {
        edge_id: "sim-jakarta".into(),
        data_dir,
        ..EdgeConfig::default()
    };
    let edge = Edge::start(
        config,
        StartOptions {
            clock: clock.clone(),
            id_seed: Some(cfg.seed),
            serve_http: false,
            systemd: None,
        },
    )
    .await?;
    let mut sim = Sim {
        rng: SmallRng::seed_from_u64(cfg.seed),
        writes: edge.writes().clone(),
        reads: edge.reads().clone(),
        clock,
        agenda: BTreeMap::new(),
        agenda_seq: 0,
        outbox_seq: 0,
        recipients: Vec::new(),
        quantity: HashMap::new(),
        open: HashMap::new(),
        counts: SimCounts::default(),
        post_latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
            .map_err(|e| SimError::Setup(e.to_string()))?,
        posting_wall: std::time::Duration::ZERO,
        cfg,
    };
    let result = sim.run().await;
    let match_latency_ns = edge.writer_stats().decide_ns.lock().clone();
    let commits = WriterStats::get(&edge.writer_stats().batches);
    drop((sim.writes, sim.reads));
    edge.shutdown().await;
    result?;
    Ok(SimReport {
        counts: sim.counts,
        posting_wall: sim.posting_wall,
        total_wall: started.elapsed(),
        post_latency_us: sim.post_latency_us,
        match_latency_ns,
        commits,
    })
}

/// A point around the city centre: a triangular spread of `spread_deg`.
fn around_city(rng: &mut SmallRng, spread_deg: f64) -> GeoPoint {
    let mut d = || (rng.random::<f64>() + rng.random::<f64>() - 1.0) * spread_deg;
    let (lat, lon) = (CITY_CENTRE.0 + d(), CITY_CENTRE.1 + d());
    GeoPoint::new(lat, lon).unwrap_or_else(|_| {
        GeoPoint::new(CITY_CENTRE.0, CITY_CENTRE.1).expect("the centre is valid")
    })
}

fn contact(n: usize) -> Contact {
    Contact {
        phone: format!("+62 21 {:07}", n % 10_000_000),
        email: format!("sim{n}@example.org"),
    }
}

/// A uniform fraction in [0, 1) from (seed, a, b): the same answer every run.
fn hash_fraction(seed: u64, a: &[u8; 16], b: &[u8; 16], salt: u64) -> f64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15 ^ salt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    for chunk in a.chunks(8).chain(b.chunks(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h ^= u64::from_le_bytes(w);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const FOOD_MIX: [(FoodType, u32); 7] = [
    (FoodType::PreparedMeals, 40),
    (FoodType::Bakery, 20),
    (FoodType::Produce, 15),
    (FoodType::DryGoods, 10),
    (FoodType::Dairy, 5),
    (FoodType::MeatFish, 5),
    (FoodType::Frozen, 5),
];

/// Commands submitted together at most (below the writer queue's capacity).
const MAX_IN_FLIGHT: usize = 4_096;

impl Sim {
    fn now(&self) -> Timestamp {
        use edge_node::clock::Clock;
        self.clock.now()
    }

    fn schedule(&mut self, at: Timestamp, act: Act) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), act);
    }

    async fn run(&mut self) -> Result<(), SimError> {
        let providers = self.register_world().await?;
        self.burst(&providers).await?;
        self.run_on().await
    }

    /// The food banks (seeded), and one general food bank per owned cell
    /// as its fallback recipient.
    fn new_recipients(&mut self) -> Vec<NewRecipient> {
        let mut recipients = Vec::with_capacity(self.cfg.recipients);
        for n in 0..self.cfg.recipients {
            let mut types: FoodTypeSet = FoodType::ALL
                .into_iter()
                .filter(|_| self.rng.random_bool(0.7))
                .collect();
            if types.is_empty() {
                types.insert(FoodType::PreparedMeals);
            }
            recipients.push(NewRecipient {
                name: format!("Food bank {n}"),
                location: around_city(&mut self.rng, 0.25),
                capacity_per_day: Mass::from_grams(self.rng.random_range(100..800) * 1_000),
                accepted_food_types: types,
                is_fallback: false,
                contact: contact(n),
            });
        }
        let cells: Vec<u64> = self.writes.cells().iter().collect();
        for (i, cell) in cells.iter().enumerate() {
            if let Some(location) = edge_node::cells::center(*cell)
                .filter(|p| self.writes.cells().owner_cell(p).is_ok())
            {
                recipients.push(NewRecipient {
                    name: format!("Cell {i} general food bank"),
                    location,
                    capacity_per_day: Mass::from_grams(5_000_000),
                    accepted_food_types: FoodTypeSet::all(),
                    is_fallback: true,
                    contact: contact(100_000 + i),
                });
                self.counts.fallback_recipients += 1;
            }
        }
        recipients
    }

    async fn register_world(&mut self) -> Result<Vec<(ProviderId, GeoPoint)>, SimError> {
        let recipients = self.new_recipients();
        for chunk in recipients.chunks(MAX_IN_FLIGHT) {
            let done = futures::future::join_all(
                chunk
                    .iter()
                    .cloned()
                    .map(|r| self.writes.register_recipient(r, None)),
            )
            .await;
            for r in done {
                self.recipients.push(r?.map_err(refused)?.id);
            }
        }
        self.counts.recipients = self.cfg.recipients;
        let mut new_providers = Vec::with_capacity(self.cfg.providers);
        for n in 0..self.cfg.providers {
            new_providers.push(NewProvider {
                name: format!("Restaurant {n}"),
                location: around_city(&mut self.rng, 0.18),
                address: String::new(),
                contact: contact(200_000 + n),
            });
        }
        let mut providers = Vec::with_capacity(new_providers.len());
        for chunk in new_providers.chunks(MAX_IN_FLIGHT) {
            let done = futures::future::join_all(
                chunk
                    .iter()
                    .cloned()
                    .map(|p| self.writes.register_provider(p, None)),
            )
            .await;
            for p in done {
                let p = p?.map_err(refused)?;
                providers.push((p.id, p.location));
            }
        }
        self.counts.providers = providers.len();
        Ok(providers)
    }

    fn new_surplus(&mut self, provider: ProviderId, location: GeoPoint) -> NewSurplus {
        let roll = self.rng.random_range(0..100);
        let mut acc = 0;
        let food_type = FOOD_MIX
            .iter()
            .find(|(_, w)| {
                acc += w;
                roll < acc
            })
            .map_or(FoodType::PreparedMeals, |(t, _)| *t);
        let kg = 2 + self.rng.random_range(0..20) + self.rng.random_range(0..20);
        let expires_in = Duration::from_mins(self.rng.random_range(60..360));
        NewSurplus {
            provider_id: provider,
            location,
            quantity: Mass::from_grams(kg * 1_000 + self.rng.random_range(0..1_000)),
            food_type,
            expires_at: self.now() + expires_in,
            description: "closing-time surplus".into(),
        }
    }

    async fn burst(&mut self, providers: &[(ProviderId, GeoPoint)]) -> Result<(), SimError> {
        let bar = self.bar(providers.len() as u64, "posting");
        let per_sec = providers
            .len()
            .div_ceil(self.cfg.burst_secs.max(1) as usize)
            .max(1);
        for (second, group) in providers.chunks(per_sec).enumerate() {
            self.clock
                .set(SIM_START + Duration::from_secs(second as i64));
            self.step().await?;
            let posts: Vec<NewSurplus> = group
                .iter()
                .map(|(id, at)| self.new_surplus(*id, *at))
                .collect();
            for chunk in posts.chunks(MAX_IN_FLIGHT) {
                let t = Instant::now();
                let edge = &self.writes;
                let done = futures::future::join_all(chunk.iter().cloned().map(|p| async move {
                    let sent = Instant::now();
                    let r = edge.post_surplus(p, None, None, None).await;
                    (r, sent.elapsed())
                }))
                .await;
                self.posting_wall += t.elapsed();
                for (r, latency) in done {
                    let _ = self
                        .post_latency_us
                        .record((latency.as_micros() as u64).max(1));
                    let posted = r?.map_err(|rej| {
                        SimError::Setup(format!("a post was refused: {:?}", rej.reason))
                    })?;
                    self.quantity
                        .insert(posted.surplus.id, posted.surplus.quantity);
                    if self.rng.random_bool(0.03) {
                        let who = self.recipients[self.rng.random_range(0..self.recipients.len())];
                        let at = self.now() + Duration::from_mins(2);
                        self.schedule(
                            at,
                            Act::DirectClaim {
                                surplus: posted.surplus.id,
                                recipient: who,
                            },
                        );
                    }
                }
                bar.inc(chunk.len() as u64);
            }
            self.drain_outbox().await?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    async fn run_on(&mut self) -> Result<(), SimError> {
        let horizon = SIM_START + Duration::from_mins(i64::from(self.cfg.horizon_hours) * 60);
        let total_steps =
            (horizon - self.now()).as_ms() / (i64::from(self.cfg.step_secs.max(1)) * 1_000);
        let bar = self.bar(total_steps.max(1) as u64, "simulating");
        while !self.open.is_empty() && self.now() < horizon {
            self.clock
                .advance(Duration::from_secs(i64::from(self.cfg.step_secs.max(1))));
            self.step().await?;
            self.drain_outbox().await?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        self.counts.still_open = self.open.len() as u64;
        self.counts.simulated_minutes = (self.now() - SIM_START).as_ms() / 60_000;
        Ok(())
    }

    fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let target = if self.cfg.show_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar
    }

    /// Fires the edge's timers, then every simulated action now due.
    async fn step(&mut self) -> Result<(), SimError> {
        self.writes.tick().await?;
        let now = self.now();
        let due: Vec<Act> = {
            let later = self.agenda.split_off(&(now + Duration::from_ms(1), 0));
            std::mem::replace(&mut self.agenda, later)
                .into_values()
                .collect()
        };
        for chunk in due.chunks(MAX_IN_FLIGHT) {
            let actions = self.resolve(chunk).await?;
            let edge = &self.writes;
            let done = futures::future::join_all(
                actions
                    .into_iter()
                    .map(|(id, a)| edge.act(id, a, None, None)),
            )
            .await;
            for r in done {
                if let Err(rej) = r? {
                    use edge_core::lifecycle::Refusal;
                    use edge_node::commands::Rejected;
                    let lost_race = matches!(
                        rej.reason,
                        Rejected::Lifecycle(Refusal::AlreadyClaimed | Refusal::StaleVersion)
                    );
                    self.counts.claim_conflicts += u64::from(lost_race);
                }
            }
        }
        Ok(())
    }

    /// Turns planned acts into edge actions (a direct claim reads the version).
    async fn resolve(&mut self, acts: &[Act]) -> Result<Vec<(SurplusId, SurplusAction)>, SimError> {
        let mut out = Vec::with_capacity(acts.len());
        for act in acts {
            out.push(match *act {
                Act::Answer {
                    surplus,
                    recipient,
                    accept: true,
                } => (
                    surplus,
                    SurplusAction::Accept {
                        recipient_id: recipient,
                    },
                ),
                Act::Answer {
                    surplus,
                    recipient,
                    accept: false,
                } => (
                    surplus,
                    SurplusAction::Decline {
                        recipient_id: recipient,
                    },
                ),
                Act::DirectClaim { surplus, recipient } => {
                    let version = self.reads.surplus(surplus).await?.map_or(0, |v| v.version);
                    (
                        surplus,
                        SurplusAction::Claim {
                            recipient_id: recipient,
                            version,
                        },
                    )
                }
                Act::PickUp { surplus, recipient } => (
                    surplus,
                    SurplusAction::PickUp {
                        recipient_id: recipient,
                    },
                ),
                Act::Deliver {
                    surplus,
                    recipient,
                    fraction_pct,
                } => {
                    let q = self.quantity.get(&surplus).copied().unwrap_or(Mass::ZERO);
                    let delivered = Mass::from_grams(q.grams() * fraction_pct / 100);
                    (
                        surplus,
                        SurplusAction::Deliver {
                            recipient_id: recipient,
                            delivered,
                        },
                    )
                }
            });
        }
        Ok(out)
    }

    /// Reads new outbox events: counts them and plans recipients' reactions.
    async fn drain_outbox(&mut self) -> Result<(), SimError> {
        loop {
            let events = self.reads.outbox_after(self.outbox_seq, 50_000).await?;
            let Some(last) = events.last() else {
                return Ok(());
            };
            self.outbox_seq = last.seq;
            for env in events {
                self.observe(env.at, &env.event);
            }
        }
    }

    /// How the recipient answers an offer: accepts (a fallback always
    /// does), declines, or never answers (the ACK timeout rematches it).
    fn plan_answer(
        &mut self,
        at: Timestamp,
        surplus: SurplusId,
        recipient: RecipientId,
        fallback: bool,
    ) {
        let u = hash_fraction(self.cfg.seed, surplus.as_bytes(), recipient.as_bytes(), 1);
        let delay = |lo: i64, hi: i64| Duration::from_secs(lo + (u * 1e6) as i64 % (hi - lo));
        let plan = if fallback || u < 0.55 {
            Some((delay(30, 240), true))
        } else if u < 0.75 {
            Some((delay(30, 180), false))
        } else {
            None
        };
        if let Some((after, accept)) = plan {
            let act = Act::Answer {
                surplus,
                recipient,
                accept,
            };
            self.schedule(at + after, act);
        }
    }

    /// The claimant picks the food up 15 to 45 minutes after claiming.
    fn plan_pickup(&mut self, at: Timestamp, surplus: SurplusId, recipient: RecipientId) {
        let u = hash_fraction(self.cfg.seed, surplus.as_bytes(), recipient.as_bytes(), 2);
        let after = Duration::from_mins(15 + (u * 30.0) as i64);
        self.schedule(at + after, Act::PickUp { surplus, recipient });
    }

    /// ... and delivers 85 to 100% of it 10 to 40 minutes later.
    fn plan_delivery(&mut self, at: Timestamp, surplus: SurplusId, recipient: RecipientId) {
        let u = hash_fraction(self.cfg.seed, surplus.as_bytes(), recipient.as_bytes(), 3);
        let after = Duration::from_mins(10 + (u * 30.0) as i64);
        let fraction_pct = 85 + (u * 15.0) as u64;
        let act = Act::Deliver {
            surplus,
            recipient,
            fraction_pct,
        };
        self.schedule(at + after, act);
    }

    fn observe(&mut self, at: Timestamp, event: &Event) {
        let c = &mut self.counts;
        match event {
            Event::SurplusPosted(p) => {
                c.posted += 1;
                c.grams_posted += p.quantity.grams();
                self.open.insert(p.id, ());
            }
            Event::OfferMade {
                surplus_id,
                recipient_id,
                attempt,
                fallback,
                ..
            } => {
                c.offers_made += 1;
                c.surplus_offered += u64::from(*attempt == 1);
                c.fallback_offers += u64::from(*fallback);
                self.plan_answer(at, *surplus_id, *recipient_id, *fallback);
            }
            Event::OfferDeclined { .. } => c.declined += 1,
            Event::OfferTimedOut { .. } => c.timed_out += 1,
            Event::Claimed {
                surplus_id,
                recipient_id,
                via,
                ..
            } => {
                c.claimed += 1;
                c.claimed_directly += u64::from(*via == sync_protocol::ClaimVia::Direct);
                self.plan_pickup(at, *surplus_id, *recipient_id);
            }
            Event::PickedUp {
                surplus_id,
                recipient_id,
                ..
            } => {
                c.picked_up += 1;
                self.plan_delivery(at, *surplus_id, *recipient_id);
            }
            Event::Delivered {
                surplus_id,
                delivered,
                ..
            } => {
                c.delivered += 1;
                c.grams_rescued += delivered.grams();
                self.open.remove(surplus_id);
            }
            Event::Expired { surplus_id, .. } => {
                c.expired += 1;
                self.open.remove(surplus_id);
            }
            Event::DeadLettered {
                dlq_attempts: 0,
                reason,
                ..
            } if *reason != sync_protocol::DeadLetterReason::FallbackFailed => {
                c.dead_lettered += 1;
            }
            Event::DeadLettered { .. }
            | Event::ProviderRegistered(_)
            | Event::RecipientRegistered(_)
            | Event::ContactResealed { .. }
            | Event::SubjectErased { .. }
            | Event::Audited(_) => {}
        }
    }
}
