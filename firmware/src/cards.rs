//! The cards the kiosk holds: offers to this recipient and its claims in
//! progress, at most [`MAX_CARDS`], in the order they are shown.

use heapless::Vec;
use sync_protocol::kiosk::{Card, MAX_CARDS, Stage};
use sync_protocol::{SurplusId, Timestamp};

#[derive(Debug, Clone)]
struct Entry {
    card: Card,
    /// Re-sent in the snapshot after the current `Welcome`.
    confirmed: bool,
}

/// The list is full and the card is new: it is not kept. The edge sends no
/// more than [`MAX_CARDS`]; this is the guard if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug, Default)]
pub struct Cards {
    list: Vec<Entry, MAX_CARDS>,
}

impl Cards {
    pub const fn new() -> Cards {
        Cards { list: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Shown order: offers first (soonest deadline first), then claims to
    /// pick up, then pick-ups to record.
    pub fn get(&self, i: usize) -> Option<&Card> {
        self.list.get(i).map(|e| &e.card)
    }

    pub fn find(&self, surplus: SurplusId) -> Option<&Card> {
        self.position(surplus).map(|i| &self.list[i].card)
    }

    pub fn position(&self, surplus: SurplusId) -> Option<usize> {
        self.list.iter().position(|e| e.card.surplus == surplus)
    }

    /// Adds a card, or replaces the one for its surplus unless that one is
    /// newer (a higher version).
    pub fn upsert(&mut self, card: Card) -> Result<(), Full> {
        match self.position(card.surplus) {
            Some(i) => {
                let e = &mut self.list[i];
                e.confirmed = true;
                if card.version >= e.card.version {
                    e.card = card;
                }
            }
            None => self
                .list
                .push(Entry {
                    card,
                    confirmed: true,
                })
                .map_err(|_| Full)?,
        }
        self.sort();
        Ok(())
    }

    /// Moves a card from `from` to `to` after the edge applied this kiosk's
    /// action, as the edge's own card would (it bumps the version by one).
    /// A card already moved on (the edge's card came first) stays as it is.
    pub fn advance(&mut self, surplus: SurplusId, from: Stage, to: Stage) {
        if let Some(i) = self.position(surplus)
            && self.list[i].card.stage == from
        {
            let card = &mut self.list[i].card;
            card.stage = to;
            card.version = card.version.saturating_add(1);
            self.sort();
        }
    }

    pub fn remove(&mut self, surplus: SurplusId) -> Option<Card> {
        let i = self.position(surplus)?;
        Some(self.list.remove(i).card)
    }

    /// A `Welcome` arrived: what is not re-sent in its snapshot is gone.
    pub fn begin_snapshot(&mut self) {
        for e in &mut self.list {
            e.confirmed = false;
        }
    }

    pub fn end_snapshot(&mut self) {
        self.list.retain(|e| e.confirmed);
    }

    /// Drops what is past its deadline by the edge's clock `edge_now` (an
    /// offer `margin_ms` before it), except cards `keep` holds (an action
    /// on them is pending: they stay until the edge answers).
    pub fn prune(&mut self, edge_now: Timestamp, margin_ms: u64, keep: impl Fn(SurplusId) -> bool) {
        self.list
            .retain(|e| keep(e.card.surplus) || !is_past_deadline(&e.card, edge_now, margin_ms));
    }

    /// An insertion sort: at most MAX_CARDS entries, and on the board it
    /// is ~4 KiB smaller than the standard library's pattern-defeating
    /// quicksort.
    fn sort(&mut self) {
        for i in 1..self.list.len() {
            let mut j = i;
            while j > 0 && order(&self.list[j].card) < order(&self.list[j - 1].card) {
                self.list.swap(j, j - 1);
                j -= 1;
            }
        }
    }
}

/// Shown order: offers first, then claims, then pick-ups; sooner deadline
/// first; then by id, so the order is total.
fn order(card: &Card) -> (u8, Timestamp, [u8; 16]) {
    let rank = match card.stage {
        Stage::Offered => 0,
        Stage::Claimed => 1,
        Stage::PickedUp => 2,
    };
    (rank, deadline(card), *card.surplus.as_bytes())
}

/// When the card's next step must be done by.
pub fn deadline(card: &Card) -> Timestamp {
    match card.stage {
        Stage::Offered => card.respond_by,
        Stage::Claimed => card.expires_at,
        // Recording a delivery has no deadline.
        Stage::PickedUp => Timestamp::from_unix_ms(i64::MAX),
    }
}

/// Whether the card's step can no longer be taken at `edge_now` (an offer
/// already `margin_ms` before its deadline).
pub fn is_past_deadline(card: &Card, edge_now: Timestamp, margin_ms: u64) -> bool {
    let margin = match card.stage {
        Stage::Offered => margin_ms.min(i64::MAX as u64) as i64,
        Stage::Claimed | Stage::PickedUp => 0,
    };
    edge_now.unix_ms().saturating_add(margin) >= deadline(card).unix_ms()
}
