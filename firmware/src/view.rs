//! Composing the screen from the kiosk's state, and the one rule that
//! decides what the buttons may do: a card's step is offered only while it
//! can still be taken (not past its deadline by the edge's clock, nothing
//! already pending on it).

use core::fmt::Write;

use sync_protocol::kiosk::{Action, Card, Stage};
use sync_protocol::{Mass, SurplusId};

use crate::ACTION_MARGIN_MS;
use crate::cards::{deadline, is_past_deadline};
use crate::clock::Uptime;
use crate::kiosk::{Kiosk, LinkStatus, View};
use crate::screen::{COLUMNS, ClockTime, Countdown, Intent, Line, OneDecimal, ROWS, Screen, line};
use crate::text::Text;

impl Kiosk {
    /// The stage whose step the card offers now, or `None` if nothing may
    /// be done with it: an action on it is pending, the kiosk has no
    /// estimate of the edge's clock, or its deadline (an offer's
    /// [`ACTION_MARGIN_MS`] early) has passed.
    pub(crate) fn step(&self, surplus: SurplusId, now: Uptime) -> Option<Stage> {
        let card = self.cards.find(surplus)?;
        if self.actions.on(surplus).is_some() {
            return None;
        }
        let clock = self.clock?;
        (!is_past_deadline(card, clock.at(now), ACTION_MARGIN_MS)).then_some(card.stage)
    }

    /// The card on screen: the selected one if it is still here, else the
    /// first.
    pub(crate) fn shown_index(&self) -> usize {
        self.selected
            .and_then(|s| self.cards.position(s))
            .unwrap_or(0)
    }

    /// What OK and X do now: nothing for [`crate::CHANGE_GUARD_MS`] after the card
    /// on screen changed by itself, so a press meant for the old card does
    /// not act on the new one.
    pub(crate) fn intents(&self, now: Uptime) -> (Option<Intent>, Option<Intent>) {
        if self.guard_until.is_some_and(|t| now < t) {
            return (None, None);
        }
        self.labels(now)
    }

    /// What OK and X are labelled with: what they do once the guard is over.
    fn labels(&self, now: Uptime) -> (Option<Intent>, Option<Intent>) {
        match self.view {
            View::AskDecline(s) if self.step(s, now) == Some(Stage::Offered) => {
                (Some(Intent::Decline(s)), Some(Intent::Cancel))
            }
            View::Amount { surplus, grams } if self.step(surplus, now) == Some(Stage::PickedUp) => {
                (
                    Some(Intent::Deliver(surplus, Mass::from_grams(grams))),
                    Some(Intent::Cancel),
                )
            }
            _ => {
                let Some(card) = self.cards.get(self.shown_index()) else {
                    return (None, None);
                };
                let s = card.surplus;
                match self.step(s, now) {
                    Some(Stage::Offered) => (Some(Intent::Accept(s)), Some(Intent::AskDecline(s))),
                    Some(Stage::Claimed) => (Some(Intent::PickedUp(s)), None),
                    Some(Stage::PickedUp) => (Some(Intent::EnterAmount(s)), None),
                    None => (None, None),
                }
            }
        }
    }

    /// The four lines and what the buttons do, at `now`.
    pub fn screen(&self, now: Uptime) -> Screen {
        let now = now.max(self.now);
        let (ok, back) = self.intents(now);
        let (label, _) = self.labels(now);
        let shown = self.cards.get(self.shown_index());
        let rows = match (label, shown) {
            (Some(Intent::Decline(s)), _) => self.cards.find(s).map(|c| self.ask_decline(c)),
            (Some(Intent::Deliver(s, grams)), _) => {
                self.cards.find(s).map(|c| self.amount(c, grams))
            }
            (_, Some(card)) => Some(self.card(card, label, now)),
            (_, None) => None,
        }
        .unwrap_or_else(|| self.idle(now));
        let mut lines = [[b' '; COLUMNS]; ROWS];
        for (row, l) in lines.iter_mut().zip(rows) {
            *row = l.bytes();
        }
        Screen { lines, ok, back }
    }

    fn text(&self, t: Text) -> &'static str {
        t.get(self.lang)
    }

    /// The notice if one is up, else `otherwise`.
    fn notice_or(&self, otherwise: Line) -> Line {
        match self.notice {
            Some((t, _)) => line(format_args!("{}", self.text(t))),
            None => otherwise,
        }
    }

    fn idle(&self, now: Uptime) -> [Line; ROWS] {
        let who = match &self.recipient {
            Some(name) => line(format_args!("{name}")),
            None => line(format_args!("{}", self.text(Text::NotConnectedYet))),
        };
        [
            line(format_args!("{}", self.text(Text::Title))),
            who,
            self.notice_or(line(format_args!("{}", self.text(Text::NoOffers)))),
            self.status_line(now),
        ]
    }

    fn status_line(&self, now: Uptime) -> Line {
        let mut l = Line::new();
        let pending = self.actions.len();
        let _ = match (self.status(), self.refused) {
            (LinkStatus::Online, _) => match self.clock {
                Some(c) => write!(
                    l,
                    "{}  {}",
                    self.text(Text::Online),
                    ClockTime(c.at(now), self.utc_offset_minutes)
                ),
                None => write!(l, "{}", self.text(Text::Online)),
            },
            (LinkStatus::Connecting, _) => write!(l, "{}", self.text(Text::Connecting)),
            // Until the next attempt, say why the edge refused.
            (LinkStatus::Failed | LinkStatus::Offline, Some(r)) => {
                write!(l, "{}", self.text(Text::Refused(r)))
            }
            (LinkStatus::Failed, None) => write!(l, "{}", self.text(Text::LinkFailed)),
            (LinkStatus::Offline, None) => write!(l, "{}", self.text(Text::Offline)),
        };
        if pending > 0 && self.status() != LinkStatus::Online {
            let _ = write!(l, ", {pending} {}", self.text(Text::Queued));
        }
        l
    }

    fn card(&self, card: &Card, ok: Option<Intent>, now: Uptime) -> [Line; ROWS] {
        let n = self.cards.len();
        let i = self.shown_index() + 1;
        let mark = if self.status() == LinkStatus::Online {
            b' '
        } else {
            b'!'
        };
        let head = line(format_args!(
            "{i}/{n} {} {}kg",
            self.text(Text::Food(card.food_type)),
            OneDecimal(card.quantity.grams())
        ))
        .mark(mark);
        let pending = self.actions.on(card.surplus).map(|p| p.action);
        let bottom = match (ok, pending) {
            (Some(Intent::Accept(_)), _) => Text::AcceptDecline,
            (Some(Intent::PickedUp(_)), _) => Text::OkPickedUp,
            (Some(Intent::EnterAmount(_)), _) => Text::OkRecordDelivery,
            (_, Some(_)) if self.status() == LinkStatus::Online => Text::Sending,
            (_, Some(_)) => Text::WaitingOffline,
            _ => Text::Expired,
        };
        [
            head,
            line(format_args!("{}", card.provider)),
            self.notice_or(self.card_state(card, pending, now)),
            line(format_args!("{}", self.text(bottom))),
        ]
    }

    /// The third line of a card: where it stands.
    fn card_state(&self, card: &Card, pending: Option<Action>, now: Uptime) -> Line {
        let t = match pending {
            Some(Action::Accept { .. }) => Text::Accepting,
            Some(Action::Decline { .. }) => Text::Declining,
            Some(Action::PickedUp { .. }) => Text::SavingPickUp,
            Some(Action::Delivered { .. }) => Text::SavingDelivery,
            None => match (self.step(card.surplus, now), self.clock) {
                (Some(Stage::Offered), Some(c)) => {
                    let left = deadline(card).since(c.at(now)).as_ms() - ACTION_MARGIN_MS as i64;
                    return line(format_args!(
                        "{} {}  {}km",
                        self.text(Text::Reply),
                        Countdown(left.max(0) as u64),
                        OneDecimal(u64::from(card.distance_m))
                    ));
                }
                (Some(Stage::Claimed), _) => {
                    return line(format_args!(
                        "{} {}",
                        self.text(Text::PickUpBy),
                        ClockTime(card.expires_at, self.utc_offset_minutes)
                    ));
                }
                (Some(Stage::PickedUp), _) => Text::PickedUp,
                _ => Text::Expired,
            },
        };
        line(format_args!("{}", self.text(t)))
    }

    fn ask_decline(&self, card: &Card) -> [Line; ROWS] {
        [
            line(format_args!("{}", self.text(Text::DeclineThis))),
            line(format_args!("{}", card.provider)),
            self.notice_or(line(format_args!(
                "{} {}kg",
                self.text(Text::Food(card.food_type)),
                OneDecimal(card.quantity.grams())
            ))),
            line(format_args!("{}", self.text(Text::YesNo))),
        ]
    }

    fn amount(&self, card: &Card, delivered: Mass) -> [Line; ROWS] {
        [
            line(format_args!("{}", self.text(Text::AmountDelivered))),
            line(format_args!("  {} kg", OneDecimal(delivered.grams()))),
            self.notice_or(line(format_args!(
                "{} {}kg",
                self.text(Text::ChangeMax),
                OneDecimal(card.quantity.grams())
            ))),
            line(format_args!("{}", self.text(Text::SendCancel))),
        ]
    }
}
