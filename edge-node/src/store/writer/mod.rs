//! The single writer: one OS thread owns the write connection and the engine.
//! It takes whatever commands are queued (requests first, then background
//! work, up to `max_batch`), applies them in order inside one transaction —
//! domain rows and outbox events together — commits once (one fsync for the
//! whole group), hands what committed to its [`Publish`], and only then
//! answers. A failed commit (or a panic) rolls back, reloads the engine from
//! SQLite and answers every command in the group with `Unavailable`: nothing
//! is acknowledged that is not durable.
//!
//! - this file: the group loop, commit and recovery;
//! - [`apply`]: what each command does, one small function each;
//! - [`project`]: events to outbox rows and the domain rows they change;
//! - [`committed`]: the value describing what a group committed;
//! - [`queue`]: the two bounded queues; [`command`]: the commands.

mod apply;
mod channels;
pub mod command;
pub mod committed;
mod kiosk;
mod project;
pub mod queue;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rusqlite::Connection;
use sync_protocol::{EdgeId, Timestamp};

use super::StoreError;
use super::disk::{Admit, DiskGuard, DiskPolicy, free_bytes};
use super::load::load;
use super::stats::WriterStats;
use crate::clock::Clock;
use crate::ids::IdGen;
use crate::pii::PiiKeys;
use edge_core::engine::{Engine, EngineConfig};
use edge_core::lifecycle::LiveSurplus;
use sync_protocol::Surplus;

pub use command::{
    ChannelAnswer, ChannelOp, Command, DeviceId, KioskAnswer, KioskOp, PostRequest, Reply,
    Unavailable,
};
pub use committed::{Committed, DirectoryEntry, GroupCounts, Publish};
pub use queue::{QueueError, QueueSenders, Queues, queues};

use command::Pending;
use queue::Wake;

/// A group taking longer than this is logged: it delays every reply in it.
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(100);

/// Marks the writer alive while its thread runs, and dead when it ends for
/// any reason (readiness, the watchdog).
struct AliveGuard(Arc<WriterStats>);

impl AliveGuard {
    fn new(stats: Arc<WriterStats>) -> AliveGuard {
        stats.writer_alive.store(true, Ordering::Relaxed);
        AliveGuard(stats)
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.writer_alive.store(false, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub edge_id: EdgeId,
    pub max_batch: usize,
    /// The S2 level of owned cells (to place providers' events).
    pub cell_level: u8,
    /// Keep the recipient directory (a routing service is configured).
    pub directory: bool,
    pub engine: EngineConfig,
    /// The data directory (its free space, for the full-disk guard).
    pub data_dir: std::path::PathBuf,
    /// When writes stop and resume for a full disk.
    pub disk: DiskPolicy,
    /// Go round the loop at least this often even with nothing to do, so
    /// the heartbeat shows an idle writer alive (the systemd watchdog); none
    /// waits for work or the next timer only.
    pub heartbeat: Option<std::time::Duration>,
}

pub struct Writer {
    conn: Connection,
    engine: Engine,
    cfg: WriterConfig,
    next_seq: u64,
    clock: Arc<dyn Clock>,
    ids: IdGen,
    stats: Arc<WriterStats>,
    /// The keys new contacts are sealed with.
    keys: Arc<PiiKeys>,
    /// The keys as of the last commit (a rolled-back swap goes back to them).
    committed_keys: Arc<PiiKeys>,
    /// The epoch stamped on new events (granted by the hub; 0 before).
    lease_epoch: u64,
    /// What the current group changed, for its publisher.
    group: Committed,
    /// The group erased a subject: scrub the WAL after its commit.
    scrub_wal: bool,
    /// Recipients changed since the directory was last handed out.
    directory_dirty: bool,
    /// Whether writes are refused for a full disk.
    disk: DiskGuard,
}

/// Whether the writer keeps running after a group.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

impl Writer {
    pub fn new(
        conn: Connection,
        cfg: WriterConfig,
        clock: Arc<dyn Clock>,
        ids: IdGen,
        keys: Arc<PiiKeys>,
        stats: Arc<WriterStats>,
    ) -> Result<Writer, StoreError> {
        let loaded = load(&conn, cfg.engine, clock.now())?;
        let lease_epoch = super::load::lease_epoch(&conn)?;
        Ok(Writer {
            lease_epoch,
            conn,
            engine: loaded.engine,
            next_seq: loaded.next_seq,
            clock,
            ids,
            stats,
            committed_keys: keys.clone(),
            keys,
            group: Committed::default(),
            scrub_wal: false,
            directory_dirty: true,
            disk: DiskGuard::new(cfg.disk),
            cfg,
        })
    }

    /// The last outbox `seq` committed.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The views of every live surplus, to seed the read model at start.
    pub fn live_views(&self) -> Vec<Surplus> {
        self.engine.live().map(LiveSurplus::snapshot).collect()
    }

    /// Surplus finished within `window` before `now`, oldest first.
    pub fn recent_views(
        &self,
        now: Timestamp,
        window: sync_protocol::Duration,
        limit: usize,
    ) -> Result<Vec<Surplus>, StoreError> {
        let since = now + sync_protocol::Duration::from_ms(-window.as_ms());
        Ok(super::load::recent_finished(&self.conn, since, limit)?
            .iter()
            .map(LiveSurplus::snapshot)
            .collect())
    }

    /// Every matchable recipient if they changed since last asked and a
    /// routing service is configured (at start: before serving).
    pub fn take_directory(&mut self) -> Option<Vec<DirectoryEntry>> {
        if !(self.cfg.directory && std::mem::take(&mut self.directory_dirty)) {
            return None;
        }
        Some(
            self.engine
                .recipients()
                .iter()
                .map(|e| {
                    let r = &e.recipient;
                    (r.id, r.location, r.accepted_food_types)
                })
                .collect(),
        )
    }

    /// Runs until told to stop (or every request sender is dropped),
    /// finishing what was queued before that.
    pub fn run(mut self, mut queues: Queues, mut publisher: impl Publish) {
        let _alive = AliveGuard::new(self.stats.clone());
        let mut batch = Vec::with_capacity(self.cfg.max_batch);
        let mut next = Next::Continue;
        while next == Next::Continue {
            WriterStats::add(&self.stats.heartbeats, 1);
            next = self.collect(&mut queues, &mut batch);
            let now = self.clock.now();
            let timers_due = self.engine.next_deadline().is_some_and(|t| t <= now);
            let was_refusing = self.disk.is_refusing();
            if !batch.is_empty() || timers_due {
                self.process(now, &mut batch, &mut publisher);
            } else if was_refusing {
                // Nothing to write: has space come back? (So the gauge and
                // the alert on it clear on an idle edge too.)
                let dir = &self.cfg.data_dir;
                self.disk.idle_check(|| free_bytes(dir));
            }
            self.show_disk_state(was_refusing);
        }
        // Background work queued before the stop is finished too.
        loop {
            WriterStats::add(&self.stats.heartbeats, 1);
            batch.extend(std::iter::from_fn(|| queues.try_background()).take(self.cfg.max_batch));
            if batch.is_empty() {
                break;
            }
            self.process(self.clock.now(), &mut batch, &mut publisher);
        }
        tracing::debug!("writer stopped");
    }

    /// Waits for work, then takes requests up to `max_batch` and background
    /// work in the room left — at least one, so it never starves.
    fn collect(&self, queues: &mut Queues, batch: &mut Vec<Command>) -> Next {
        let mut next = match queues.wait(self.wait_for()) {
            Wake::Command(Command::Stop) | Wake::Closed => Next::Stop,
            Wake::Command(c) => {
                batch.push(c);
                Next::Continue
            }
            Wake::Timer => Next::Continue,
        };
        while next == Next::Continue && batch.len() < self.cfg.max_batch {
            match queues.try_request() {
                Some(Command::Stop) => next = Next::Stop,
                Some(c) => batch.push(c),
                None => break,
            }
        }
        let room = self.cfg.max_batch.saturating_sub(batch.len()).max(1);
        batch.extend(std::iter::from_fn(|| queues.try_background()).take(room));
        next
    }

    /// How long to wait for a command: until the next timer is due (at
    /// most 1 s), or for ever when none is (or the clock is manual); never
    /// longer than the heartbeat, when there is one.
    fn wait_for(&self) -> Option<std::time::Duration> {
        let timer = self
            .engine
            .next_deadline()
            .filter(|_| !self.clock.is_manual())
            .map(|due| {
                // While writes are refused for a full disk, due timers wait
                // (they would write): at most four tries a second, no spin.
                let floor = if self.disk.is_refusing() { 250 } else { 0 };
                let wait_ms = (due - self.clock.now()).as_ms().clamp(floor, 1_000);
                std::time::Duration::from_millis(wait_ms as u64)
            });
        // While refusing for a full disk, look at the free space at least
        // once a second even with nothing to do.
        let disk = self
            .disk
            .is_refusing()
            .then_some(std::time::Duration::from_secs(1));
        [timer, self.cfg.heartbeat, disk]
            .into_iter()
            .flatten()
            .min()
    }

    fn process(&mut self, now: Timestamp, batch: &mut Vec<Command>, publisher: &mut impl Publish) {
        if !self.admit(now, batch) {
            return;
        }
        let size = batch.len() as u64;
        let mut pending = Vec::with_capacity(batch.len());
        let started = Instant::now();
        // A bug that panics inside a group must not take the edge down: the
        // transaction is rolled back, state is reloaded from SQLite (the source
        // of truth) and every command in the group is answered 503.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_group(now, batch, &mut pending)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            WriterStats::add(&self.stats.writer_panics, 1);
            Err(StoreError::Corrupt(format!("the writer panicked: {what}")))
        });
        match result {
            Ok(commit_ns) => {
                self.disk.committed();
                publisher.publish(self.committed(now));
                for p in pending {
                    p.send(None);
                }
                self.record_group(size, commit_ns, started.elapsed());
            }
            Err(e) => self.fail(e, size, pending, batch),
        }
        batch.clear(); // after a panic: commands not reached drop their reply (Unavailable)
    }

    /// The full-disk guard's state on the gauge, and one line when a spell
    /// ends (however it ended: space back, a probe that committed).
    fn show_disk_state(&self, was_refusing: bool) {
        let refusing = self.disk.is_refusing();
        self.stats.disk_full.store(refusing, Ordering::Relaxed);
        if was_refusing && !refusing {
            tracing::warn!(
                refused_so_far = WriterStats::get(&self.stats.disk_full_refusals),
                "disk space is back: writes resume"
            );
        }
    }

    /// Whether this group may write (the full-disk guard); a refused group
    /// is answered at once, and logged once a spell, not once a command.
    fn admit(&mut self, now: Timestamp, batch: &mut Vec<Command>) -> bool {
        let dir = &self.cfg.data_dir;
        let admit = self.disk.admit(now, || free_bytes(dir));
        match admit {
            Admit::Write | Admit::Probe | Admit::Resume { .. } => true,
            Admit::Refuse { why, newly } => {
                if newly {
                    tracing::error!(
                        ?why,
                        data_dir = %dir.display(),
                        min_free_bytes = self.cfg.disk.min_free_bytes,
                        "the data directory's disk is (nearly) full: writes are refused (507) until space is freed"
                    );
                }
                let failure = Unavailable::disk_full("the edge's disk is full");
                WriterStats::add(&self.stats.disk_full_refusals, batch.len() as u64);
                for cmd in batch.drain(..) {
                    cmd.refuse(&failure);
                }
                false
            }
        }
    }

    /// The group's changes as a value, and the writer ready for the next.
    fn committed(&mut self, now: Timestamp) -> Committed {
        if let Some(keys) = &self.group.pii_keys {
            self.committed_keys = keys.clone();
        }
        let directory = self.take_directory();
        Committed {
            now,
            last_seq: self.last_seq(),
            directory,
            ..std::mem::take(&mut self.group)
        }
    }

    fn record_group(&self, size: u64, commit_ns: u64, group: std::time::Duration) {
        let stats = &self.stats;
        WriterStats::add(&stats.batches, 1);
        WriterStats::add(&stats.commands, size);
        WriterStats::record(&stats.commit_ns, commit_ns);
        WriterStats::record(&stats.batch_size, size);
        WriterStats::record(&stats.group_ns, group.as_nanos() as u64);
        if group > SLOW_GROUP {
            tracing::warn!(
                commands = size,
                group_ms = group.as_millis() as u64,
                commit_ms = commit_ns / 1_000_000,
                "slow group commit"
            );
        }
    }

    /// The group did not commit: roll back, reload, answer every command
    /// `Unavailable`.
    fn fail(
        &mut self,
        e: StoreError,
        size: u64,
        pending: Vec<Pending>,
        unreached: &mut Vec<Command>,
    ) {
        let failure = if e.is_disk_full() {
            WriterStats::add(&self.stats.disk_full_failures, 1);
            let free = free_bytes(&self.cfg.data_dir);
            if self.disk.commit_failed(self.clock.now(), free) {
                tracing::error!(error = %e, commands = size,
                    "a group commit failed: the disk is full; rolled back, writes are refused (507) until space is freed");
            }
            Unavailable::disk_full(e.to_string())
        } else {
            tracing::error!(error = %e, commands = size, "group commit failed; rolled back");
            Unavailable::new(e.to_string())
        };
        WriterStats::add(&self.stats.commit_failures, 1);
        let _ = self.conn.execute_batch("ROLLBACK");
        self.recover();
        for p in pending {
            p.send(Some(&failure));
        }
        for cmd in unreached.drain(..) {
            cmd.refuse(&failure);
        }
    }

    /// Reloads the engine from what SQLite holds (the last committed state).
    fn recover(&mut self) {
        self.group = Committed::default();
        self.scrub_wal = false;
        self.keys = self.committed_keys.clone();
        self.directory_dirty = true;
        let healthy = match load(&self.conn, self.cfg.engine, self.clock.now()) {
            Ok(loaded) => {
                self.engine = loaded.engine;
                self.next_seq = loaded.next_seq;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading state after a failed commit failed");
                false
            }
        };
        self.stats.writer_healthy.store(healthy, Ordering::Relaxed);
    }

    /// One transaction for the whole group; returns the commit's duration.
    fn run_group(
        &mut self,
        now: Timestamp,
        batch: &mut Vec<Command>,
        pending: &mut Vec<Pending>,
    ) -> Result<u64, StoreError> {
        let _group = tracing::info_span!("store.group", commands = batch.len()).entered();
        let commits = commit_spans(batch);
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.engine.tick(now);
        self.write_output(now, None)?;
        // Commands left in `batch` when one fails were never reached: the
        // caller answers them with the group's failure.
        let mut cmds = std::mem::take(batch).into_iter();
        while let Some(cmd) = cmds.next() {
            match self.apply(now, cmd) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    batch.extend(cmds);
                    return Err(e);
                }
            }
        }
        let t = Instant::now();
        self.conn.execute_batch("COMMIT")?;
        drop(commits);
        if std::mem::take(&mut self.scrub_wal) {
            self.scrub_wal();
        }
        self.stats.writer_healthy.store(true, Ordering::Relaxed);
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// After an erasure: the WAL still holds the old page images (names,
    /// sealed contacts). Checkpoint them over and truncate it; with
    /// `secure_delete` the freed space is zeroed. Readers holding an old
    /// snapshot can make this partial: it is retried at the next erasure, and
    /// the next checkpoint overwrites the frames anyway.
    fn scrub_wal(&self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "checkpoint after an erasure failed");
        }
    }
}

/// Each traced command gets a `store.commit` span in its own trace, open
/// until the group's commit is durable: the request's trace shows what the
/// group commit (and its fsync) cost it.
fn commit_spans(batch: &[Command]) -> Vec<tracing::Span> {
    batch
        .iter()
        .filter_map(|c| match c {
            Command::Post { post, .. } => post.trace.as_ref(),
            Command::Act { trace, .. } => trace.as_ref(),
            _ => None,
        })
        .map(|tc| {
            let span = tracing::info_span!("store.commit", commands = batch.len());
            sync_protocol::trace::otel::set_parent(&span, tc);
            span
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::commands::{NewProvider, NewRecipient, NewSurplus};
    use sync_protocol::{Contact, FoodType, FoodTypeSet, GeoPoint, Mass};
    use tokio::sync::oneshot;

    const T0: Timestamp = Timestamp::from_unix_ms(1_795_539_600_000);

    fn writer(dir: &std::path::Path, max_batch: usize) -> Writer {
        let conn = crate::store::open_writer(&dir.join(crate::store::DB_FILE)).expect("opens");
        let cfg = WriterConfig {
            edge_id: EdgeId::new("test-edge").expect("valid"),
            max_batch,
            cell_level: 13,
            directory: false,
            engine: EngineConfig::default(),
            data_dir: dir.to_path_buf(),
            disk: DiskPolicy {
                min_free_bytes: 0,
                probe_every: sync_protocol::Duration::from_secs(10),
            },
            heartbeat: None,
        };
        let clock = Arc::new(ManualClock::new(T0));
        let keys = Arc::new(PiiKeys::generate());
        Writer::new(conn, cfg, clock, IdGen::seeded(1), keys, Default::default()).expect("loads")
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn tick() -> Command {
        Command::Tick {
            reply: oneshot::channel().0,
        }
    }

    fn mark(seq: u64) -> (Command, oneshot::Receiver<Result<(), Unavailable>>) {
        let (reply, rx) = oneshot::channel();
        (Command::MarkPublished { seq, reply }, rx)
    }

    fn kinds(batch: &[Command]) -> String {
        batch
            .iter()
            .map(|c| match c {
                Command::Tick { .. } => 'R',
                Command::MarkPublished { .. } => 'B',
                _ => '?',
            })
            .collect()
    }

    #[test]
    fn a_group_takes_requests_first_and_background_work_in_the_room_left_at_least_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = writer(dir.path(), 4);
        let (tx, mut q) = queues(16, 16);
        for n in 0..3 {
            block_on(tx.background(mark(n).0, None)).expect("queued");
        }
        for _ in 0..6 {
            tx.request(tick()).expect("queued");
        }
        let mut batch = Vec::new();
        assert!(w.collect(&mut q, &mut batch) == Next::Continue);
        assert_eq!(
            kinds(&batch),
            "RRRRB",
            "a full group of requests still lets one through"
        );
        batch.clear();
        assert!(w.collect(&mut q, &mut batch) == Next::Continue);
        assert_eq!(kinds(&batch), "RRBB", "the rest fills the room left");
    }

    #[test]
    fn with_a_heartbeat_an_idle_writer_goes_round_its_loop_and_without_one_it_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (heartbeat, idle_beats) in [
            (Some(std::time::Duration::from_millis(10)), true),
            (None, false),
        ] {
            let mut w = writer(dir.path(), 4);
            w.cfg.heartbeat = heartbeat;
            let stats = w.stats.clone();
            let (tx, q) = queues(4, 4);
            let run = std::thread::spawn(move || w.run(q, Keep(std::sync::mpsc::channel().0)));
            // Three beats with nothing queued, or none past the first.
            let deadline = Instant::now() + std::time::Duration::from_secs(120);
            if idle_beats {
                while WriterStats::get(&stats.heartbeats) < 3 {
                    assert!(Instant::now() < deadline, "an idle writer beats");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert!(
                    stats.writer_alive.load(Ordering::Relaxed),
                    "alive while it runs"
                );
            }
            tx.stop_blocking();
            run.join().expect("the writer ran");
            assert!(
                !stats.writer_alive.load(Ordering::Relaxed),
                "dead once ended"
            );
            if !idle_beats {
                // The first wake, then the stop's drain: nothing between.
                assert_eq!(WriterStats::get(&stats.heartbeats), 2);
            }
        }
    }

    /// Keeps what each group committed.
    struct Keep(std::sync::mpsc::Sender<Committed>);

    impl Publish for Keep {
        fn publish(&mut self, committed: Committed) {
            let _ = self.0.send(committed);
        }
    }

    #[test]
    fn each_group_hands_its_publisher_what_it_committed_and_stop_finishes_background_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = writer(dir.path(), 64);
        let (tx, q) = queues(16, 16);
        let here = GeoPoint::new(-6.2, 106.816).expect("valid");
        let contact = Contact {
            phone: "+62 1".into(),
            email: "a@b.example".into(),
        };
        let (provider, provider_rx) = oneshot::channel();
        let new = NewProvider {
            name: "P".into(),
            location: here,
            address: String::new(),
            contact: contact.clone(),
        };
        tx.request(Command::RegisterProvider {
            new,
            actor: None,
            reply: provider,
        })
        .expect("queued");
        let (recipient, recipient_rx) = oneshot::channel();
        let new = NewRecipient {
            name: "R".into(),
            location: here,
            capacity_per_day: Mass::from_grams(100_000),
            accepted_food_types: FoodTypeSet::all(),
            is_fallback: false,
            contact,
        };
        tx.request(Command::RegisterRecipient {
            new,
            cell: 7,
            actor: None,
            reply: recipient,
        })
        .expect("queued");
        let (published, published_rx) = std::sync::mpsc::channel();
        let run = std::thread::spawn(move || w.run(q, Keep(published)));
        let first = published_rx.recv().expect("a group");
        assert_eq!(first.last_seq, 2, "two registrations");
        let p = provider_rx
            .blocking_recv()
            .expect("answered")
            .expect("committed");
        let r = recipient_rx
            .blocking_recv()
            .expect("answered")
            .expect("committed");
        let (p, r) = (p.expect("registered"), r.expect("registered"));
        let (post, post_rx) = oneshot::channel();
        let new = NewSurplus {
            provider_id: p.id,
            location: here,
            quantity: Mass::from_grams(5_000),
            food_type: FoodType::Bakery,
            expires_at: T0 + sync_protocol::Duration::from_mins(120),
            description: String::new(),
        };
        let request = PostRequest {
            new,
            cell: 7,
            idempotency: None,
            trace: None,
            actor: None,
            hints: None,
        };
        tx.request(Command::Post {
            post: Box::new(request),
            reply: post,
        })
        .expect("queued");
        let posted = published_rx.recv().expect("a group");
        let s = post_rx
            .blocking_recv()
            .expect("answered")
            .expect("committed");
        let s = s.expect("posted").surplus;
        assert_eq!(posted.offers_made, [(r.id, s.id)]);
        assert_eq!(posted.counts.offers_made, 1);
        assert_eq!(
            posted.views.iter().map(|v| v.id).collect::<Vec<_>>(),
            [s.id]
        );
        assert!(posted.last_seq > first.last_seq);
        assert!(posted.alerts.is_empty() && posted.erased_providers.is_empty());
        // Background work queued before the stop is done before the writer ends.
        let (m, marked) = mark(posted.last_seq);
        block_on(tx.background(m, None)).expect("queued");
        tx.stop_blocking();
        run.join().expect("the writer ran");
        assert_eq!(marked.blocking_recv().expect("answered"), Ok(()));
    }
}
