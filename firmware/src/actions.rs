//! Actions the staff took that the edge has not answered yet: each with the
//! id it keeps for life, sent once per connection (again only after the
//! edge said "busy, retry"), dropped when the edge answers it.

use heapless::Vec;
use sync_protocol::SurplusId;
use sync_protocol::kiosk::{Action, ActionId};

use crate::MAX_PENDING;
use crate::clock::Uptime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub id: ActionId,
    pub action: Action,
    /// The connection it was last sent on.
    sent_on: Option<u32>,
    /// After a `Busy` answer: not before then.
    retry_at: Option<Uptime>,
}

/// The queue is full: the press makes no action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

#[derive(Debug)]
pub struct Actions {
    queue: Vec<Pending, MAX_PENDING>,
    boot: u32,
    next_seq: u32,
}

impl Actions {
    pub const fn new(boot: u32) -> Actions {
        Actions {
            queue: Vec::new(),
            boot,
            next_seq: 0,
        }
    }

    /// Queues a new action with a new id. The caller checks first that no
    /// action on this surplus is pending (one at a time per card).
    pub fn push(&mut self, action: Action) -> Result<ActionId, QueueFull> {
        debug_assert!(self.on(action.surplus()).is_none(), "one action per card");
        let id = ActionId {
            boot: self.boot,
            seq: self.next_seq,
        };
        let pending = Pending {
            id,
            action,
            sent_on: None,
            retry_at: None,
        };
        self.queue.push(pending).map_err(|_| QueueFull)?;
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(id)
    }

    /// The action pending on this surplus, if any.
    pub fn on(&self, surplus: SurplusId) -> Option<&Pending> {
        self.queue.iter().find(|p| p.action.surplus() == surplus)
    }

    /// The ids pending, oldest first (for tests).
    #[cfg(test)]
    pub fn ids(&self) -> impl Iterator<Item = ActionId> + '_ {
        self.queue.iter().map(|p| p.id)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The oldest action not yet sent on connection `conn` (and not waiting
    /// out a `Busy`), marked as sent on it.
    pub fn next_to_send(&mut self, conn: u32, now: Uptime) -> Option<(ActionId, Action)> {
        let p = self
            .queue
            .iter_mut()
            .find(|p| p.sent_on != Some(conn) && p.retry_at.is_none_or(|t| now >= t))?;
        p.sent_on = Some(conn);
        p.retry_at = None;
        Some((p.id, p.action))
    }

    /// When the next `Busy` wait ends.
    pub fn next_retry(&self) -> Option<Uptime> {
        self.queue.iter().filter_map(|p| p.retry_at).min()
    }

    /// The edge answered: the action is done with (whatever the outcome).
    pub fn answer(&mut self, id: ActionId) -> Option<Action> {
        let i = self.queue.iter().position(|p| p.id == id)?;
        Some(self.queue.remove(i).action)
    }

    /// The edge said "busy": send it again, same id, not before `at`.
    pub fn retry_at(&mut self, id: ActionId, at: Uptime) {
        if let Some(p) = self.queue.iter_mut().find(|p| p.id == id) {
            p.sent_on = None;
            p.retry_at = Some(at);
        }
    }
}
