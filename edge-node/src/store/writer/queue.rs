//! The writer's two bounded queues. Requests (posts, claims, registrations)
//! go into one that sheds at once when full: the caller answers 503.
//! Background work (the hub link's marks and imports, retention, re-sealing,
//! key swaps, audit records) goes into another that a caller waits for room
//! in — woken by a semaphore, never by polling — and the writer drains it
//! after the requests of each group, so it neither fails nor crowds requests
//! out.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::command::Command;

/// Why a command did not get into a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue is full (for background work: it stayed full past the
    /// caller's deadline).
    #[error("the writer's queue is full")]
    Full,
    /// The writer has stopped.
    #[error("the writer has stopped")]
    Stopped,
}

/// A background command and its place in the queue, given back when the
/// writer takes it out.
pub(super) struct Background {
    pub(super) command: Command,
    _room: OwnedSemaphorePermit,
}

/// The sending side, cloned into every port that writes.
#[derive(Clone)]
pub struct QueueSenders {
    requests: Sender<Command>,
    background: Sender<Background>,
    room: Arc<Semaphore>,
}

/// The receiving side, owned by the writer thread.
pub struct Queues {
    pub(super) requests: Receiver<Command>,
    pub(super) background: Receiver<Background>,
    room: Arc<Semaphore>,
    background_open: bool,
}

/// Two queues holding at most `requests` and `background` commands.
pub fn queues(requests: usize, background: usize) -> (QueueSenders, Queues) {
    let background = background.max(1);
    let (req_tx, req_rx) = crossbeam_channel::bounded(requests.max(1));
    let (bg_tx, bg_rx) = crossbeam_channel::bounded(background);
    let room = Arc::new(Semaphore::new(background));
    (
        QueueSenders {
            requests: req_tx,
            background: bg_tx,
            room: room.clone(),
        },
        Queues {
            requests: req_rx,
            background: bg_rx,
            room,
            background_open: true,
        },
    )
}

impl QueueSenders {
    /// Queues a request, or says at once that there is no room.
    pub fn request(&self, command: Command) -> Result<(), QueueError> {
        self.requests.try_send(command).map_err(|e| match e {
            TrySendError::Full(_) => QueueError::Full,
            TrySendError::Disconnected(_) => QueueError::Stopped,
        })
    }

    /// Queues background work, waiting for room — at most `deadline` when
    /// one is given (`Full` after it).
    pub async fn background(
        &self,
        command: Command,
        deadline: Option<Duration>,
    ) -> Result<(), QueueError> {
        let room = self.room.clone().acquire_owned();
        let room = match deadline {
            None => room.await,
            Some(d) => tokio::time::timeout(d, room)
                .await
                .map_err(|_| QueueError::Full)?,
        }
        .map_err(|_| QueueError::Stopped)?;
        // Cannot be full: every queued command holds one of the permits.
        self.background
            .try_send(Background {
                command,
                _room: room,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => QueueError::Full,
                TrySendError::Disconnected(_) => QueueError::Stopped,
            })
    }

    /// Asks the writer to finish what is queued and stop; blocks while the
    /// request queue is full (the writer is draining it).
    pub fn stop_blocking(&self) {
        let _ = self.requests.send(Command::Stop);
    }
}

/// What woke the writer.
pub(super) enum Wake {
    Command(Command),
    /// The wait for the next timer ran out.
    Timer,
    /// Every request sender is gone.
    Closed,
}

impl Queues {
    /// Waits for a command from either queue, at most `timeout` if given.
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> Wake {
        // Requests first: a select picks at random among ready queues.
        if let Ok(c) = self.requests.try_recv() {
            return Wake::Command(c);
        }
        let mut sel = Select::new();
        let requests = sel.recv(&self.requests);
        if self.background_open {
            sel.recv(&self.background);
        }
        let op = match timeout {
            None => sel.select(),
            Some(t) => match sel.select_timeout(t) {
                Ok(op) => op,
                Err(_) => return Wake::Timer,
            },
        };
        if op.index() == requests {
            return op.recv(&self.requests).map_or(Wake::Closed, Wake::Command);
        }
        match op.recv(&self.background) {
            Ok(b) => Wake::Command(b.command),
            Err(_) => {
                // Disconnected: wait on requests alone from now on.
                self.background_open = false;
                self.wait(timeout)
            }
        }
    }

    pub(super) fn try_request(&self) -> Option<Command> {
        self.requests.try_recv().ok()
    }

    pub(super) fn try_background(&self) -> Option<Command> {
        self.background.try_recv().ok().map(|b| b.command)
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        // Whoever waits for room learns that the writer has stopped, and
        // whatever is still queued is dropped unanswered (its caller gets
        // `Unavailable`): crossbeam keeps queued messages for as long as a
        // sender lives, and senders outlive the writer in lingering handles.
        self.room.close();
        while self.requests.try_recv().is_ok() {}
        while self.background.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit() -> (
        Command,
        tokio::sync::oneshot::Receiver<Result<(), super::super::Unavailable>>,
    ) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let record = sync_protocol::AuditRecord {
            actor: "a".into(),
            role: "admin".into(),
            action: "contact.read".into(),
            resource: "provider/x".into(),
            status: 200,
            ip: None,
            user_agent: None,
        };
        (Command::Audit { record, reply }, rx)
    }

    #[test]
    fn a_full_request_queue_refuses_at_once() {
        let (tx, q) = queues(1, 1);
        assert_eq!(tx.request(Command::Stop), Ok(()));
        assert_eq!(tx.request(Command::Stop), Err(QueueError::Full));
        drop(q);
        assert_eq!(tx.request(Command::Stop), Err(QueueError::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_waits_for_room_and_a_deadline_bounds_the_wait() {
        let (tx, q) = queues(1, 1);
        tx.background(audit().0, None).await.expect("room for one");
        // Full: a caller with a deadline gives up after it ...
        let late = tx.background(audit().0, Some(Duration::from_millis(500)));
        assert_eq!(late.await, Err(QueueError::Full));
        // ... one without waits, and gets in once the writer takes the
        // first out.
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.background(audit().0, None).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits for room");
        assert!(q.try_background().is_some());
        assert_eq!(waiting.await.expect("joined"), Ok(()));
        assert!(q.try_background().is_some());
        assert!(q.try_background().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_writer_releases_whoever_waits_for_room() {
        let (tx, q) = queues(1, 1);
        let (queued, answer) = audit();
        tx.background(queued, None).await.expect("room for one");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.background(audit().0, None).await }
        });
        tokio::task::yield_now().await;
        drop(q);
        assert_eq!(waiting.await.expect("joined"), Err(QueueError::Stopped));
        assert!(
            answer.await.is_err(),
            "the queued command was dropped unanswered"
        );
    }

    #[test]
    fn the_writer_wakes_for_either_queue_and_times_out_on_neither() {
        let (tx, mut q) = queues(4, 4);
        assert!(matches!(
            q.wait(Some(Duration::from_millis(1))),
            Wake::Timer
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(tx.background(audit().0, None)).expect("queued");
        assert!(matches!(q.wait(None), Wake::Command(Command::Audit { .. })));
        tx.request(Command::Stop).expect("queued");
        assert!(matches!(q.wait(None), Wake::Command(Command::Stop)));
        drop(tx);
        assert!(matches!(q.wait(None), Wake::Closed));
    }
}
