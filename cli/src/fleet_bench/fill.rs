//! The fleet history `bench-fleet` measures against, written through the
//! hub's own apply path (`cloud_hub::db::apply::apply_batch_at`), so every
//! row — event log, surplus, offers, registries, audit records, the month
//! partitions — is what the hub writes for real events. Ten cities' edges
//! (plus Kupang's standby, which took its primary's cells 40 minutes ago),
//! each owning a city's level-11 cells, post surplus for `history_days`
//! up to now; each surplus lives a seeded story (offers accepted, declined
//! or left to time out, dead letters and fallback offers, pick-up and
//! delivery, expiry), cut at its edge's last moment, so the recent ones are
//! caught in every state. Jayapura's edge went silent three hours ago; what
//! Kupang's primary sent after the takeover is fenced. The year before the
//! history is in `impact_daily`, as retention leaves it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use cloud_hub::db::{self, apply, leases, queries};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sync_protocol::session::hub::Apply;
use sync_protocol::{
    AuditRecord, ClaimVia, DeadLetterReason, Duration, EdgeId, Envelope, Event, FoodType,
    FoodTypeSet, GeoPoint, Mass, Provider, ProviderId, Recipient, RecipientId, SealedContact,
    SurplusId, SurplusPosted, Timestamp,
};

/// The S2 level of the cells each edge owns (~4.5 km across).
pub const CELL_LEVEL: u8 = 11;
/// Half the side of each city's box of cells, in degrees.
const CITY_HALF_SIDE_DEG: f64 = 0.15;
/// Events per batch at most: what an edge's session sends.
const MAX_BATCH_EVENTS: usize = sync_protocol::session::DEFAULT_MAX_BATCH_EVENTS;
/// A batch holds at most this much of an edge's time (the hub received it
/// within the hour).
const MAX_BATCH_SPAN: Duration = Duration::from_mins(60);
/// How long the live edges' leases last: past the end of the measurement,
/// standing in for the renewals a connected session would make.
const LEASE_HOLD: Duration = Duration::from_mins(240);
/// Jayapura's edge stopped this long ago (its leases lapsed: stale).
const SILENT_FOR: Duration = Duration::from_mins(180);
/// Kupang's standby took its primary's cells this long ago ...
const TAKEOVER_AGO: Duration = Duration::from_mins(40);
/// ... and the primary, cut off, kept writing until this long ago; what
/// it shipped after the takeover is fenced.
const PRIMARY_STOPPED_AGO: Duration = Duration::from_mins(20);
/// Days of `impact_daily` (retention's folded totals) before the history.
const FOLDED_DAYS: i64 = 365;

/// The cities (bench-sync's), their share of the fleet's surplus, and the
/// one edge each runs.
const CITIES: [(&str, u32); 10] = [
    ("jakarta", 3),
    ("surabaya", 2),
    ("medan", 1),
    ("makassar", 1),
    ("denpasar", 1),
    ("padang", 1),
    ("palembang", 1),
    ("manado", 1),
    ("jayapura", 1),
    ("kupang", 1),
];
const SILENT_CITY: &str = "jayapura";
const FENCED_CITY: &str = "kupang";

#[derive(Debug, Clone)]
pub struct FillConfig {
    /// Events to write into the hub's log, at least (a little more: each
    /// city's stories are sized from the mean events per story).
    pub events: u64,
    /// Days of history up to now (received within the retention window).
    pub history_days: i64,
    pub seed: u64,
}

/// What the fill wrote.
#[derive(Debug, Clone)]
pub struct Filled {
    pub events: u64,
    pub batches: u64,
    pub took: StdDuration,
    pub edges: usize,
    pub cells: usize,
    /// Jakarta's region (the `?region=` the one-shard forms are asked for).
    pub jakarta_region: i64,
}

/// An edge's history, planned.
struct Plan {
    edge: EdgeId,
    city: usize,
    home_region: i64,
    epoch: u64,
    cells: Vec<u64>,
    /// Stories to post over the history.
    stories: u64,
    /// The edge's last moment: nothing after it reaches the hub.
    until: Timestamp,
    /// Kupang: (when, the standby) — the standby takes every cell then.
    takeover: Option<(Timestamp, EdgeId)>,
}

/// Writes the fleet's history into a migrated hub database, as of `now`.
pub async fn fill(database_url: &str, cfg: &FillConfig, now: Timestamp) -> anyhow::Result<Filled> {
    let started = Instant::now();
    let mut client = db::connect(database_url).await?;
    let mean = mean_events_per_story(cfg.seed);
    let weight: u32 = CITIES.iter().map(|c| c.1).sum();
    let mut plans = Vec::new();
    let mut cells = 0;
    for (city, (name, w)) in CITIES.iter().enumerate() {
        let share = cfg.events * u64::from(*w) / u64::from(weight);
        let plan = plan_edge(&mut client, city, name, share, mean, now).await?;
        cells += plan.cells.len();
        plans.push(plan);
    }
    let jakarta_region = plans[0].home_region;
    months_ahead_of_time(&mut client, cfg, now).await?;
    let mut tasks = Vec::new();
    for plan in plans {
        let url = database_url.to_string();
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = db::connect(&url).await?;
            write_edge(&mut c, &plan, &cfg, now).await
        }));
    }
    let (mut events, mut batches) = (0, 0);
    for t in tasks {
        let (e, b) = t.await??;
        events += e;
        batches += b;
    }
    fold_older_days(&client, cfg, now).await?;
    silence(&client, now).await?;
    Ok(Filled {
        events,
        batches,
        took: started.elapsed(),
        edges: CITIES.len() + 1,
        cells,
        jakarta_region,
    })
}

/// The month partitions of the history, as the hub's housekeeping made
/// them (each ahead of its month, under the schema lock): the apply path
/// makes a missing one itself, but ten edges racing to make the same
/// month trip over each other.
async fn months_ahead_of_time(
    client: &mut tokio_postgres::Client,
    cfg: &FillConfig,
    now: Timestamp,
) -> anyhow::Result<()> {
    let start = apply::odt(now_minus(
        now,
        Duration::from_mins(cfg.history_days * 24 * 60),
    ));
    let last = db::partitions::Month::of(apply::odt(now));
    db::locked(client, async |c| {
        let mut month = db::partitions::Month::of(start);
        while month <= last {
            for table in db::partitions::PARTITIONED {
                db::partitions::ensure(c, table, month).await?;
            }
            month = month.next();
        }
        Ok(())
    })
    .await?;
    Ok(())
}

fn edge_id(name: &str, n: u8) -> anyhow::Result<EdgeId> {
    Ok(EdgeId::new(&format!("{name}-{n}"))?)
}

/// Registers a city's edge at the hub (its home region from its cells) and
/// grants its leases — to Jayapura's as of the hour it went silent, so
/// they have lapsed — and sizes its history.
async fn plan_edge(
    client: &mut tokio_postgres::Client,
    city: usize,
    name: &str,
    events: u64,
    mean: f64,
    now: Timestamp,
) -> anyhow::Result<Plan> {
    let edge = edge_id(name, 1)?;
    let cells = city_cells(city)?;
    let home_region = queries::register(client, &edge, &cells).await?.home_region;
    // Jayapura's were last granted (for the hub's usual TTL) when it went
    // silent; the others' hold past the measurement.
    let (granted_at, hold) = if name == SILENT_CITY {
        let ttl = cloud_hub::HubConfig::default().lease_ttl_secs;
        (now_minus(now, SILENT_FOR), Duration::from_secs(ttl as i64))
    } else {
        (now, LEASE_HOLD)
    };
    let epoch = leases::grant(client, &edge, &cells, 0, granted_at, hold)
        .await?
        .epoch;
    let (until, takeover) = match name {
        SILENT_CITY => (now_minus(now, SILENT_FOR), None),
        FENCED_CITY => {
            let standby = edge_id(name, 2)?;
            queries::register(client, &standby, &cells).await?;
            (
                now_minus(now, PRIMARY_STOPPED_AGO),
                Some((now_minus(now, TAKEOVER_AGO), standby)),
            )
        }
        _ => (now, None),
    };
    let registrations = 2 * (providers_of(city) + recipients_of(city)) as u64;
    let stories = (events.saturating_sub(registrations) as f64 / mean * 1.01).ceil() as u64;
    Ok(Plan {
        edge,
        city,
        home_region,
        epoch,
        cells,
        stories: stories.max(1),
        until,
        takeover,
    })
}

fn now_minus(now: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_unix_ms(now.unix_ms() - d.as_ms())
}

/// The level-11 cells covering a city's box.
fn city_cells(city: usize) -> anyhow::Result<Vec<u64>> {
    let (lat, lon) = crate::sync_bench::CITIES[city];
    let h = CITY_HALF_SIDE_DEG;
    let set =
        edge_node::cells::CellSet::covering(CELL_LEVEL, [lat - h, lon - h, lat + h, lon + h])?;
    Ok(set.iter().collect())
}

fn providers_of(city: usize) -> usize {
    30 * CITIES[city].1 as usize
}

fn recipients_of(city: usize) -> usize {
    12 * CITIES[city].1 as usize
}

/// Applies an edge's history batch by batch, as its sessions would have
/// sent it; Kupang's takeover happens between the batches before and after
/// it. Returns (events, batches).
async fn write_edge(
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    cfg: &FillConfig,
    now: Timestamp,
) -> anyhow::Result<(u64, u64)> {
    let start = now_minus(now, Duration::from_mins(cfg.history_days * 24 * 60));
    let mut stream = Stream::new(plan, cfg.seed, start);
    let mut pending_takeover = plan.takeover.clone();
    let (mut events, mut batches) = (0u64, 0u64);
    let mut next = stream.next_event();
    while let Some(first) = next.take() {
        let cut = pending_takeover.as_ref().map(|t| t.0);
        if let Some((at, standby)) = pending_takeover.as_ref()
            && first.1.at > *at
        {
            take_over(client, plan, standby, *at).await?;
            pending_takeover = None;
        }
        let limit = first.1.at + MAX_BATCH_SPAN;
        let mut batch = vec![first];
        loop {
            match stream.next_event() {
                Some(e)
                    if batch.len() < MAX_BATCH_EVENTS
                        && e.1.at <= limit
                        && cut.is_none_or(|c| (batch[0].1.at > c) == (e.1.at > c)) =>
                {
                    batch.push(e)
                }
                other => {
                    next = other;
                    break;
                }
            }
        }
        let received = batch[batch.len() - 1].1.at + Duration::from_secs(1);
        let apply = Apply {
            first_seq: batch[0].1.seq,
            last_seq: batch[batch.len() - 1].1.seq,
            events: batch,
        };
        apply::apply_batch_at(
            client,
            &plan.edge,
            plan.home_region,
            &apply,
            apply::odt(received),
        )
        .await
        .with_context(|| {
            format!(
                "applying {}'s batch from seq {}",
                plan.edge, apply.first_seq
            )
        })?;
        events += apply.events.len() as u64;
        batches += 1;
    }
    Ok((events, batches))
}

/// Kupang's primary lost the hub: its leases lapsed at `at`, and its standby
/// was granted every cell (a new epoch, fencing the primary's older one).
async fn take_over(
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    standby: &EdgeId,
    at: Timestamp,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE cell_leases SET expires_at = $2 WHERE holder = $1",
            &[&plan.edge.as_str(), &apply::odt(at)],
        )
        .await?;
    let granted = leases::grant(
        client,
        standby,
        &plan.cells,
        0,
        at,
        Duration::from_ms(LEASE_HOLD.as_ms() + TAKEOVER_AGO.as_ms()),
    )
    .await?;
    anyhow::ensure!(
        granted.conflicts.is_empty(),
        "the standby could not take {} cells",
        granted.conflicts.len()
    );
    Ok(())
}

/// The year before the history as retention leaves it: one `impact_daily`
/// row per edge and UTC day, about as busy as the edge's history.
async fn fold_older_days(
    client: &tokio_postgres::Client,
    cfg: &FillConfig,
    now: Timestamp,
) -> anyhow::Result<()> {
    let today = apply::odt(now).date();
    let first_kept = today - time::Duration::days(cfg.history_days);
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0xda11);
    let mean = mean_events_per_story(cfg.seed);
    let weight: u32 = CITIES.iter().map(|c| c.1).sum();
    for (name, w) in CITIES {
        let edge = edge_id(name, 1)?;
        let home = queries::progress(client, &edge)
            .await?
            .map(|p| p.home_region)
            .ok_or_else(|| anyhow::anyhow!("{edge} is not registered"))?;
        let per_day =
            cfg.events as f64 * f64::from(w) / f64::from(weight) / mean / cfg.history_days as f64;
        let mut days = Vec::new();
        let mut figures: [Vec<i64>; 5] = Default::default();
        for back in 1..=FOLDED_DAYS {
            let posted = (per_day * rng.random_range(0.6..1.3)).round().max(1.0) as i64;
            let delivered = (posted as f64 * rng.random_range(0.7..0.85)).round() as i64;
            days.push(first_kept - time::Duration::days(back));
            figures[0].push(posted);
            figures[1].push(posted * rng.random_range(9_000..15_000));
            figures[2].push(delivered);
            figures[3].push(delivered * rng.random_range(9_000..14_000));
            figures[4].push((posted - delivered) / 2);
        }
        client
            .execute(
                "INSERT INTO impact_daily (geo_region_id, day, edge_id, posted_n, posted_g,
                                           delivered_n, delivered_g, expired_n)
                 SELECT $1, u.day, $2, u.pn, u.pg, u.dn, u.dg, u.en
                 FROM UNNEST($3::date[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                             $8::bigint[]) AS u(day, pn, pg, dn, dg, en)",
                &[
                    &home,
                    &edge.as_str(),
                    &days,
                    &figures[0],
                    &figures[1],
                    &figures[2],
                    &figures[3],
                    &figures[4],
                ],
            )
            .await?;
    }
    Ok(())
}

/// Jayapura's edge as the hub last heard it: its last batch and its last
/// lease renewal when it went silent.
async fn silence(client: &tokio_postgres::Client, now: Timestamp) -> anyhow::Result<()> {
    let edge = edge_id(SILENT_CITY, 1)?;
    let at = apply::odt(now_minus(now, SILENT_FOR));
    let home = queries::progress(client, &edge)
        .await?
        .map(|p| p.home_region)
        .ok_or_else(|| anyhow::anyhow!("{edge} is not registered"))?;
    client
        .execute(
            "UPDATE edges SET last_seen = $2 WHERE edge_id = $1",
            &[&edge.as_str(), &at],
        )
        .await?;
    client
        .execute(
            "UPDATE edge_progress SET last_applied = $3 WHERE geo_region_id = $1 AND edge_id = $2",
            &[&home, &edge.as_str(), &at],
        )
        .await?;
    Ok(())
}

/// A UUID v7 for `at` (as the edge makes its ids), its random bits from `rng`.
fn v7(at: Timestamp, rng: &mut SmallRng) -> uuid::Uuid {
    let mut b: [u8; 16] = rng.random();
    let ms = at.unix_ms().max(0) as u64;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    uuid::Uuid::from_bytes(b)
}

/// A contact as the edge seals it (`[1][key id][nonce][ciphertext+tag]`):
/// opaque bytes to the hub.
fn sealed(rng: &mut SmallRng) -> SealedContact {
    let mut bytes = vec![1u8, 1];
    bytes.extend((0..58).map(|_| rng.random::<u8>()));
    SealedContact(bytes)
}

/// An event waiting for its moment in an edge's stream.
struct Timed {
    at: Timestamp,
    /// Breaks ties in the order the event was planned.
    order: u64,
    cell: u64,
    event: Event,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Timed) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Timed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Timed) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Who a story's events can name.
struct Cast {
    providers: Vec<(ProviderId, GeoPoint, u64)>,
    recipients: Vec<RecipientId>,
    /// The cell's food banks: the last resort after the dead-letter queue.
    fallback: Vec<RecipientId>,
}

/// Recipients at the front of the list answer few offers: the trouble
/// list's "most unanswered".
const UNRESPONSIVE: usize = 2;

/// One edge's outbox in commit order: every story's events merged by time,
/// numbered densely from 1, each stamped with the edge's lease epoch.
struct Stream {
    edge: EdgeId,
    epoch: u64,
    rng: SmallRng,
    cast: Cast,
    heap: BinaryHeap<Reverse<Timed>>,
    order: u64,
    seq: u64,
    /// The next story's posting time, and how many remain.
    next_post: Timestamp,
    stories_left: u64,
    spacing_ms: f64,
    until: Timestamp,
}

impl Stream {
    fn new(plan: &Plan, seed: u64, start: Timestamp) -> Stream {
        let mut rng = SmallRng::seed_from_u64(seed ^ ((plan.city as u64 + 1) * 0x9e37_79b9));
        let span_ms = (plan.until.unix_ms() - start.unix_ms()).max(1) as f64;
        let mut s = Stream {
            edge: plan.edge.clone(),
            epoch: plan.epoch,
            cast: Cast {
                providers: Vec::new(),
                recipients: Vec::new(),
                fallback: Vec::new(),
            },
            heap: BinaryHeap::new(),
            order: 0,
            seq: 0,
            next_post: start + Duration::from_mins(60),
            stories_left: plan.stories,
            spacing_ms: (span_ms - 3_600_000.0).max(1.0) / plan.stories as f64,
            until: plan.until,
            rng: SmallRng::seed_from_u64(0),
        };
        s.register(plan, &mut rng, start);
        s.rng = rng;
        s
    }

    /// The registry's events in the history's first hour: providers and
    /// recipients (two fallback food banks among them), each audited.
    fn register(&mut self, plan: &Plan, rng: &mut SmallRng, start: Timestamp) {
        let (lat, lon) = crate::sync_bench::CITIES[plan.city];
        let mut at = start;
        let place = |rng: &mut SmallRng| {
            let h = CITY_HALF_SIDE_DEG * 0.95;
            GeoPoint::new(lat + rng.random_range(-h..h), lon + rng.random_range(-h..h))
                .unwrap_or_else(|_| GeoPoint::new(lat, lon).expect("a city centre is a point"))
        };
        for i in 0..providers_of(plan.city) {
            at = at + Duration::from_secs(5);
            let id = ProviderId::from_uuid(v7(at, rng));
            let location = place(rng);
            let cell = edge_node::cells::cell_at(CELL_LEVEL, &location);
            self.cast.providers.push((id, location, cell));
            let p = Provider {
                id,
                name: format!("{} provider {i}", CITIES[plan.city].0),
                location,
                contact: sealed(rng),
            };
            self.push(at, cell, Event::ProviderRegistered(p));
            self.push(
                at,
                0,
                audit(
                    "admin-1",
                    "admin",
                    "provider.register",
                    format!("providers/{id}"),
                    201,
                ),
            );
        }
        let n = recipients_of(plan.city);
        for i in 0..n + 2 {
            at = at + Duration::from_secs(5);
            let id = RecipientId::from_uuid(v7(at, rng));
            let location = place(rng);
            let is_fallback = i >= n;
            if is_fallback {
                self.cast.fallback.push(id);
            } else {
                self.cast.recipients.push(id);
            }
            let r = Recipient {
                id,
                name: format!("{} food bank {i}", CITIES[plan.city].0),
                location,
                capacity_per_day: Mass::from_grams(rng.random_range(200..2_000) * 1_000),
                accepted_food_types: FoodTypeSet::all(),
                is_fallback,
                contact: sealed(rng),
            };
            let cell = edge_node::cells::cell_at(CELL_LEVEL, &location);
            self.push(at, cell, Event::RecipientRegistered(r));
            self.push(
                at,
                0,
                audit(
                    "admin-1",
                    "admin",
                    "recipient.register",
                    format!("recipients/{id}"),
                    201,
                ),
            );
        }
    }

    fn push(&mut self, at: Timestamp, cell: u64, event: Event) {
        if at > self.until {
            return;
        }
        self.order += 1;
        self.heap.push(Reverse(Timed {
            at,
            order: self.order,
            cell,
            event,
        }));
    }

    /// The next event in commit order, as (cell hint, envelope).
    fn next_event(&mut self) -> Option<(u64, Envelope)> {
        loop {
            let due = self
                .heap
                .peek()
                .is_some_and(|t| self.stories_left == 0 || t.0.at <= self.next_post);
            if due {
                let Reverse(t) = self.heap.pop()?;
                self.seq += 1;
                let env = Envelope {
                    edge_id: self.edge.clone(),
                    seq: self.seq,
                    lease_epoch: self.epoch,
                    at: t.at,
                    trace_context: None,
                    event: t.event,
                };
                return Some((t.cell, env));
            }
            if self.stories_left == 0 {
                return None;
            }
            let at = self.next_post;
            let jitter = self.rng.random_range(0.0..2.0);
            self.next_post = at + Duration::from_ms((self.spacing_ms * jitter) as i64);
            self.stories_left -= 1;
            if at <= self.until {
                self.story(at);
            } else {
                self.stories_left = 0;
            }
        }
    }

    /// One surplus's life from its posting at `t`.
    fn story(&mut self, t: Timestamp) {
        let events = plan_story(&mut self.rng, &self.cast, t);
        for (at, cell, event) in events {
            self.push(at, cell, event);
        }
    }
}

fn audit(actor: &str, role: &str, action: &str, resource: String, status: u16) -> Event {
    Event::Audited(AuditRecord {
        actor: actor.to_string(),
        role: role.to_string(),
        action: action.to_string(),
        resource,
        status,
        ip: Some("10.20.0.7".into()),
        user_agent: Some("pahlawan-kiosk/1.4 (Android 13)".into()),
    })
}

/// Food, how long it keeps (hours) and how often it is posted (%).
const FOODS: [(FoodType, f64, f64, u32); 7] = [
    (FoodType::PreparedMeals, 2.0, 5.0, 35),
    (FoodType::Bakery, 6.0, 14.0, 25),
    (FoodType::Produce, 12.0, 36.0, 15),
    (FoodType::Dairy, 12.0, 48.0, 8),
    (FoodType::MeatFish, 6.0, 24.0, 5),
    (FoodType::DryGoods, 48.0, 168.0, 7),
    (FoodType::Frozen, 24.0, 96.0, 5),
];

const DESCRIPTIONS: [&str; 6] = [
    "Nasi kotak sisa acara",
    "Roti tawar dan kue",
    "Sayur dan buah segar",
    "Susu dan yogurt",
    "Ayam goreng",
    "Beras dan mi instan",
];

fn minutes(rng: &mut SmallRng, lo: f64, hi: f64) -> Duration {
    Duration::from_ms((rng.random_range(lo..hi) * 60_000.0) as i64)
}

/// A story's events in order: (at, cell hint, event).
type Story = Vec<(Timestamp, u64, Event)>;

/// Plans one surplus's story from its posting at `t`: up to three offers
/// (accepted, declined, or timed out — the unresponsive recipients mostly
/// let theirs time out), a direct claim now and then, the dead-letter
/// queue and a fallback offer when the offers run out, pick-up and
/// delivery (or an uncollected claim), expiry where time runs out first.
fn plan_story(rng: &mut SmallRng, cast: &Cast, t: Timestamp) -> Story {
    let (provider, location, cell) = cast.providers[rng.random_range(0..cast.providers.len())];
    let pick = rng.random_range(0..100);
    let mut cumulative = 0;
    let (food, lo, hi) = FOODS
        .iter()
        .find(|f| {
            cumulative += f.3;
            pick < cumulative
        })
        .map_or((FoodType::Bakery, 6.0, 14.0), |f| (f.0, f.1, f.2));
    let expires = t + minutes(rng, lo * 60.0, hi * 60.0);
    let grams = 1_000 + (rng.random::<f64>().powi(2) * 39_000.0) as u64;
    let id = SurplusId::from_uuid(v7(t, rng));
    let mut s = StoryBuilder {
        id,
        cell,
        expires,
        version: 1,
        events: Vec::new(),
        done: false,
    };
    s.events.push((
        t,
        cell,
        Event::SurplusPosted(SurplusPosted {
            id,
            provider_id: provider,
            location,
            cell,
            quantity: Mass::from_grams(grams),
            food_type: food,
            expires_at: expires,
            description: DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len())].to_string(),
        }),
    ));
    let actor = provider.to_string();
    let mut at = t;
    let mut claimed = None;
    if rng.random_range(0..100) < 3 {
        s.dead_letter(
            at,
            DeadLetterReason::NoCandidate,
            0,
            Some(at + Duration::from_mins(10)),
        );
        s.audit(t, &actor, "provider", "surplus.post", 201);
    } else {
        for attempt in 1..=3u32 {
            let r = cast.recipients[rng.random_range(0..cast.recipients.len())];
            s.offer(at, r, attempt, false);
            if attempt == 1 {
                s.audit(t, &actor, "provider", "surplus.post", 201);
            }
            let (next, outcome) = answer(rng, cast, r, at);
            if s.expired_by(next) {
                break;
            }
            at = next;
            match outcome {
                Answer::Accept => {
                    s.claim(at, r, ClaimVia::OfferAccepted, "offer.accept");
                    claimed = Some(r);
                    break;
                }
                Answer::Direct(other) => {
                    s.claim(at, other, ClaimVia::Direct, "surplus.claim");
                    claimed = Some(other);
                    break;
                }
                Answer::Decline => s.decline(at, r),
                Answer::TimeOut => s.time_out(at, r),
            }
        }
        if claimed.is_none() && !s.done {
            s.dead_letter(
                at,
                DeadLetterReason::OffersExhausted,
                0,
                Some(at + Duration::from_mins(10)),
            );
        }
    }
    if claimed.is_none() && !s.done {
        claimed = fallback(rng, cast, &mut s, at + Duration::from_mins(10));
    }
    if let Some(r) = claimed
        && !s.done
    {
        collect(rng, &mut s, r, grams);
    }
    s.expire();
    s.events
}

enum Answer {
    Accept,
    Decline,
    TimeOut,
    /// Another recipient claimed it directly (at a kiosk) meanwhile.
    Direct(RecipientId),
}

/// How and when recipient `r` answers an offer made at `at`.
fn answer(rng: &mut SmallRng, cast: &Cast, r: RecipientId, at: Timestamp) -> (Timestamp, Answer) {
    let unresponsive = cast.recipients[..UNRESPONSIVE.min(cast.recipients.len())].contains(&r);
    let (accept, decline) = if unresponsive { (20, 25) } else { (72, 84) };
    let roll = rng.random_range(0..100);
    if roll < 4 {
        let other = cast.recipients[rng.random_range(0..cast.recipients.len())];
        return (at + minutes(rng, 1.0, 4.0), Answer::Direct(other));
    }
    if roll < accept {
        (at + minutes(rng, 0.5, 4.5), Answer::Accept)
    } else if roll < decline {
        (at + minutes(rng, 0.5, 4.0), Answer::Decline)
    } else {
        (at + Duration::from_mins(5), Answer::TimeOut)
    }
}

/// The dead-letter queue's last resort at `at`: the cell's food bank is
/// offered the surplus (a fallback alert) and takes it or lets it time out;
/// sometimes no food bank can arrive in time.
fn fallback(
    rng: &mut SmallRng,
    cast: &Cast,
    s: &mut StoryBuilder,
    at: Timestamp,
) -> Option<RecipientId> {
    if s.expired_by(at) {
        return None;
    }
    if cast.fallback.is_empty() || rng.random_range(0..100) < 35 {
        s.dead_letter(at, DeadLetterReason::FallbackFailed, 1, None);
        return None;
    }
    let bank = cast.fallback[rng.random_range(0..cast.fallback.len())];
    s.offer(at, bank, 4, true);
    if rng.random_range(0..100) < 70 {
        let when = at + minutes(rng, 1.0, 5.0);
        if s.expired_by(when) {
            return None;
        }
        s.claim(when, bank, ClaimVia::OfferAccepted, "offer.accept");
        Some(bank)
    } else {
        let when = at + Duration::from_mins(5);
        if s.expired_by(when) {
            return None;
        }
        s.time_out(when, bank);
        s.dead_letter(when, DeadLetterReason::FallbackFailed, 1, None);
        None
    }
}

/// Pick-up and delivery after a claim (4 % are never collected and
/// expire).
fn collect(rng: &mut SmallRng, s: &mut StoryBuilder, r: RecipientId, grams: u64) {
    if rng.random_range(0..100) < 4 {
        return;
    }
    let claimed_at = s.events.last().map_or(Timestamp::UNIX_EPOCH, |e| e.0);
    let pickup = claimed_at + minutes(rng, 20.0, 120.0);
    if s.expired_by(pickup) {
        return;
    }
    s.step(pickup, |id, v| Event::PickedUp {
        surplus_id: id,
        recipient_id: r,
        version: v,
    });
    s.audit(pickup, &r.to_string(), "ngo", "surplus.pickup", 200);
    let delivered_at = pickup + minutes(rng, 10.0, 60.0);
    let delivered = Mass::from_grams((grams as f64 * rng.random_range(0.9..1.0)) as u64);
    s.step(delivered_at, |id, v| Event::Delivered {
        surplus_id: id,
        recipient_id: r,
        delivered,
        version: v,
    });
    s.audit(delivered_at, &r.to_string(), "ngo", "surplus.deliver", 200);
    s.done = true;
}

/// A story being written: its surplus's version moves with each event.
struct StoryBuilder {
    id: SurplusId,
    cell: u64,
    expires: Timestamp,
    version: u64,
    events: Story,
    /// Delivered or expired: nothing more happens.
    done: bool,
}

impl StoryBuilder {
    fn step(&mut self, at: Timestamp, event: impl FnOnce(SurplusId, u64) -> Event) {
        self.version += 1;
        let e = event(self.id, self.version);
        self.events.push((at, self.cell, e));
    }

    fn audit(&mut self, at: Timestamp, actor: &str, role: &str, action: &str, status: u16) {
        let e = audit(actor, role, action, format!("surplus/{}", self.id), status);
        self.events.push((at, 0, e));
    }

    fn offer(&mut self, at: Timestamp, r: RecipientId, attempt: u32, fallback: bool) {
        self.step(at, |id, v| Event::OfferMade {
            surplus_id: id,
            recipient_id: r,
            ack_deadline: at + Duration::from_mins(5),
            attempt,
            fallback,
            version: v,
        });
    }

    fn claim(&mut self, at: Timestamp, r: RecipientId, via: ClaimVia, action: &str) {
        self.step(at, |id, v| Event::Claimed {
            surplus_id: id,
            recipient_id: r,
            via,
            version: v,
        });
        self.audit(at, &r.to_string(), "ngo", action, 200);
    }

    fn decline(&mut self, at: Timestamp, r: RecipientId) {
        self.step(at, |id, v| Event::OfferDeclined {
            surplus_id: id,
            recipient_id: r,
            version: v,
        });
        self.audit(at, &r.to_string(), "ngo", "offer.decline", 200);
    }

    fn time_out(&mut self, at: Timestamp, r: RecipientId) {
        self.step(at, |id, v| Event::OfferTimedOut {
            surplus_id: id,
            recipient_id: r,
            version: v,
        });
    }

    fn dead_letter(
        &mut self,
        at: Timestamp,
        reason: DeadLetterReason,
        dlq_attempts: u32,
        retry_at: Option<Timestamp>,
    ) {
        self.step(at, |id, v| Event::DeadLettered {
            surplus_id: id,
            reason,
            dlq_attempts,
            retry_at,
            version: v,
        });
    }

    /// Whether the surplus expires before `at` (then its expiry is the
    /// story's end).
    fn expired_by(&mut self, at: Timestamp) -> bool {
        if at < self.expires {
            return false;
        }
        self.expire();
        true
    }

    /// Unless delivered (or expired already), the surplus expires at its
    /// time.
    fn expire(&mut self) {
        if self.done {
            return;
        }
        let at = self.expires;
        self.step(at, |id, v| Event::Expired {
            surplus_id: id,
            version: v,
        });
        self.done = true;
    }
}

/// Events per story on average, from 4,000 stories of the same seeded kind.
fn mean_events_per_story(seed: u64) -> f64 {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let point = GeoPoint::new(-6.2, 106.85).expect("a point");
    let cast = Cast {
        providers: vec![(ProviderId::from_bytes([1; 16]), point, 1)],
        recipients: (0..12u8)
            .map(|i| RecipientId::from_bytes([i; 16]))
            .collect(),
        fallback: vec![RecipientId::from_bytes([99; 16])],
    };
    let n = 4_000;
    let total: usize = (0..n)
        .map(|_| plan_story(&mut rng, &cast, Timestamp::from_unix_ms(0)).len())
        .sum();
    total as f64 / f64::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast() -> Cast {
        let point = GeoPoint::new(-6.2, 106.85).expect("a point");
        Cast {
            providers: vec![(ProviderId::from_bytes([1; 16]), point, 7)],
            recipients: (0..12u8)
                .map(|i| RecipientId::from_bytes([i; 16]))
                .collect(),
            fallback: vec![RecipientId::from_bytes([99; 16])],
        }
    }

    #[test]
    fn every_story_starts_posted_its_versions_climb_and_it_ends_delivered_or_expired() {
        let mut rng = SmallRng::seed_from_u64(1);
        let cast = cast();
        let mut ends = std::collections::BTreeMap::new();
        for _ in 0..2_000 {
            let story = plan_story(&mut rng, &cast, Timestamp::from_unix_ms(1_000_000));
            assert!(matches!(story[0].2, Event::SurplusPosted(_)));
            let mut version = 1;
            let mut last = Timestamp::UNIX_EPOCH;
            for (at, _, e) in &story {
                assert!(*at >= last || matches!(e, Event::Audited(_)), "{story:?}");
                last = last.max(*at);
                let v = match e {
                    Event::OfferMade { version, .. }
                    | Event::OfferDeclined { version, .. }
                    | Event::OfferTimedOut { version, .. }
                    | Event::Claimed { version, .. }
                    | Event::PickedUp { version, .. }
                    | Event::Delivered { version, .. }
                    | Event::Expired { version, .. }
                    | Event::DeadLettered { version, .. } => Some(*version),
                    _ => None,
                };
                if let Some(v) = v {
                    assert_eq!(v, version + 1, "{story:?}");
                    version = v;
                }
            }
            let end = story
                .iter()
                .rev()
                .find(|e| !matches!(e.2, Event::Audited(_)))
                .map(|e| e.2.kind());
            *ends.entry(end.unwrap_or("none")).or_insert(0) += 1;
        }
        assert_eq!(
            ends.keys().copied().collect::<Vec<_>>(),
            ["delivered", "expired"]
        );
        assert!(ends["delivered"] > 1_300, "{ends:?}");
    }

    #[test]
    fn a_stream_is_dense_in_seq_and_in_time_order() {
        let plan = Plan {
            edge: EdgeId::new("jakarta-1").expect("an id"),
            city: 0,
            home_region: 1,
            epoch: 3,
            cells: city_cells(0).expect("cells"),
            stories: 300,
            until: Timestamp::from_unix_ms(10 * 86_400_000),
            takeover: None,
        };
        let mut s = Stream::new(&plan, 7, Timestamp::from_unix_ms(0));
        let mut last = (0, Timestamp::UNIX_EPOCH);
        let mut n = 0;
        while let Some((_, env)) = s.next_event() {
            assert_eq!(env.seq, last.0 + 1);
            assert!(env.at >= last.1);
            assert!(env.at <= plan.until);
            assert_eq!(env.lease_epoch, 3);
            last = (env.seq, env.at);
            n += 1;
        }
        let mean = mean_events_per_story(7);
        assert!(n as f64 > 300.0 * mean * 0.8, "{n} events");
    }
}
