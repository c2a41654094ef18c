//! The kiosk: its inputs (connection up and down, bytes read, buttons,
//! time), its state (link, clock, cards, pending actions, what is on
//! screen) and its outputs (frames to write, the link's status, when to
//! call again). The screen itself is composed in `view.rs`.

use sync_protocol::DeviceId;
use sync_protocol::kiosk::{
    Action, ActionId, DeviceEvent, DeviceLink, Down, Frame, KioskError, LinkKey, NONCE_BYTES, Name,
    Outcome, Refusal, Stage, TimeSync, Up,
};

use crate::actions::Actions;
use crate::cards::Cards;
use crate::clock::{EdgeClock, Uptime};
use crate::screen::Intent;
use crate::text::{Language, Text};
use crate::{
    ACTION_MARGIN_MS, CHANGE_GUARD_MS, HANDSHAKE_TIMEOUT_MS, HEARTBEAT_MS, KG_STEP_GRAMS,
    LINK_TIMEOUT_MS, NOTICE_MS,
};

/// What the board knows before it starts: its credential from pairing, a
/// random number drawn at boot, its firmware version.
#[derive(Debug, Clone)]
pub struct Config {
    pub device: DeviceId,
    pub key: LinkKey,
    /// Random at every boot: the high half of this boot's action ids.
    pub boot: u32,
    pub firmware: u16,
    pub language: Language,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    /// Do what the bottom line offers first (accept, picked up, send...).
    Ok,
    /// X: decline, cancel.
    Back,
    /// ▲: previous card, or more kilograms.
    Up,
    /// ▼: next card, or fewer kilograms.
    Down,
    /// Bahasa Indonesia ⇄ English.
    Language,
}

/// The link as the shell must treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// No connection: the shell connects (and calls `connected`) when it can.
    Offline,
    /// Handshaking.
    Connecting,
    Online,
    /// Broken (refused, bad frame, timeout): the shell closes the socket,
    /// calls `disconnected`, and reconnects after a pause.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitChallenge,
    AwaitWelcome,
    /// `snapshot_left` cards of the Welcome's snapshot are still to come.
    Live {
        snapshot_left: u8,
    },
}

#[derive(Debug)]
struct Connection {
    link: DeviceLink,
    hello: Option<Frame>,
    ready_due: bool,
    phase: Phase,
    /// Counts connections since boot: what "sent on this connection" means.
    number: u32,
    since: Uptime,
    last_rx: Uptime,
    last_tx: Uptime,
    failed: bool,
}

/// What the screen is doing besides showing cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Browse,
    AskDecline(sync_protocol::SurplusId),
    Amount {
        surplus: sync_protocol::SurplusId,
        grams: u64,
    },
}

/// The kiosk core. See the crate doc for the shell's side of the contract.
#[derive(Debug)]
pub struct Kiosk {
    device: DeviceId,
    key: LinkKey,
    firmware: u16,
    conn: Option<Connection>,
    connections: u32,
    pub(crate) lang: Language,
    pub(crate) refused: Option<Refusal>,
    pub(crate) clock: Option<EdgeClock>,
    pub(crate) utc_offset_minutes: i16,
    pub(crate) recipient: Option<Name>,
    pub(crate) cards: Cards,
    pub(crate) actions: Actions,
    pub(crate) view: View,
    pub(crate) selected: Option<sync_protocol::SurplusId>,
    pub(crate) notice: Option<(Text, Uptime)>,
    /// Buttons do nothing until then (see `pin_shown`).
    pub(crate) guard_until: Option<Uptime>,
    pub(crate) now: Uptime,
}

impl Kiosk {
    pub fn new(config: Config) -> Kiosk {
        Kiosk {
            device: config.device,
            key: config.key,
            firmware: config.firmware,
            conn: None,
            connections: 0,
            lang: config.language,
            refused: None,
            clock: None,
            utc_offset_minutes: 0,
            recipient: None,
            cards: Cards::new(),
            actions: Actions::new(config.boot),
            view: View::Browse,
            selected: None,
            notice: None,
            guard_until: None,
            now: Uptime(0),
        }
    }

    /// Uptime never runs backwards here, whatever the shell passes.
    fn advance_to(&mut self, now: Uptime) -> Uptime {
        self.now = self.now.max(now);
        self.expire(self.now);
        self.now
    }

    /// The socket connected; `nonce` is fresh from the board's RNG.
    pub fn connected(&mut self, now: Uptime, nonce: [u8; NONCE_BYTES]) {
        let now = self.advance_to(now);
        self.connections = self.connections.wrapping_add(1);
        let (link, hello) = DeviceLink::start(self.device, self.key.clone(), nonce);
        self.conn = Some(Connection {
            link,
            hello: Some(hello),
            ready_due: false,
            phase: Phase::AwaitChallenge,
            number: self.connections,
            since: now,
            last_rx: now,
            last_tx: now,
            failed: false,
        });
        self.refused = None;
    }

    /// The socket closed (or the shell closed it after `Failed`).
    pub fn disconnected(&mut self, now: Uptime) {
        self.advance_to(now);
        self.conn = None;
    }

    pub fn status(&self) -> LinkStatus {
        match &self.conn {
            None => LinkStatus::Offline,
            Some(c) if c.failed => LinkStatus::Failed,
            Some(c) if matches!(c.phase, Phase::Live { .. }) => LinkStatus::Online,
            Some(_) => LinkStatus::Connecting,
        }
    }

    /// Why the edge last refused this kiosk (until the next connection).
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused
    }

    /// Actions waiting for the edge's answer.
    pub fn pending(&self) -> usize {
        self.actions.len()
    }

    /// Bytes the socket read. Ignored unless a connection is up.
    pub fn receive(&mut self, now: Uptime, mut bytes: &[u8]) {
        let now = self.advance_to(now);
        loop {
            let event = match self.conn.as_mut() {
                Some(c) if !c.failed => {
                    let taken = c.link.push(bytes);
                    bytes = &bytes[taken..];
                    c.link.poll_event()
                }
                _ => return,
            };
            match event {
                Some(event) => self.on_event(now, event),
                None => {
                    // The reader takes every byte it can before it waits
                    // for more, so nothing is left here.
                    debug_assert!(bytes.is_empty(), "the frame reader stalled");
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Uptime, event: Result<DeviceEvent, KioskError>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.last_rx = now;
        match event {
            Err(_) => conn.failed = true,
            Ok(DeviceEvent::Opened) => {
                conn.phase = Phase::AwaitWelcome;
                conn.ready_due = true;
            }
            Ok(DeviceEvent::Refused(r)) => self.refuse(r),
            Ok(DeviceEvent::Down(msg)) => self.on_down(now, msg),
        }
    }

    fn refuse(&mut self, r: Refusal) {
        self.refused = Some(r);
        self.fail();
    }

    fn fail(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.failed = true;
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.conn.as_ref().map(|c| c.phase)
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(c) = self.conn.as_mut() {
            c.phase = phase;
        }
    }

    fn on_down(&mut self, now: Uptime, msg: Down) {
        let phase = self.phase();
        match msg {
            // Sealed: the edge knows this kiosk but will not serve it now.
            Down::Refused(r) => self.refuse(r),
            Down::Welcome {
                recipient,
                time,
                utc_offset_minutes,
                open,
            } if phase == Some(Phase::AwaitWelcome) => {
                self.recipient = Some(recipient);
                self.utc_offset_minutes = utc_offset_minutes;
                self.sync(now, &time);
                self.cards.begin_snapshot();
                self.set_phase(Phase::Live {
                    snapshot_left: open,
                });
                if open == 0 {
                    self.cards.end_snapshot();
                }
            }
            // Anything but a Welcome first (or a second one) is a protocol error.
            _ if !matches!(phase, Some(Phase::Live { .. })) => self.fail(),
            Down::Welcome { .. } => self.fail(),
            Down::Card(card) => self.on_card(card),
            Down::Withdrawn { surplus, reason } => {
                if self.cards.remove(surplus).is_some() {
                    self.say(now, Text::Withdrawn(reason));
                }
            }
            Down::Result { id, outcome } => self.on_result(now, id, outcome),
            Down::Time(sync) => self.sync(now, &sync),
        }
        self.expire(now);
    }

    fn on_card(&mut self, card: sync_protocol::kiosk::Card) {
        // A full list drops the new card; the edge never sends more than
        // MAX_CARDS, so this only guards against an edge that did.
        let _ = self.cards.upsert(card);
        if let Some(Phase::Live { snapshot_left }) = self.phase()
            && snapshot_left > 0
        {
            self.set_phase(Phase::Live {
                snapshot_left: snapshot_left - 1,
            });
            if snapshot_left == 1 {
                self.cards.end_snapshot();
            }
        }
    }

    fn sync(&mut self, now: Uptime, sync: &TimeSync) {
        if let Some(clock) = EdgeClock::from_sync(now, sync) {
            self.clock = Some(clock);
        }
    }

    fn on_result(&mut self, now: Uptime, id: ActionId, outcome: Outcome) {
        if let Outcome::Busy { retry_after_ms } = outcome {
            self.actions
                .retry_at(id, now.plus_ms(u64::from(retry_after_ms)));
            return;
        }
        // An answer to nothing pending (a repeat): nothing to do.
        let Some(action) = self.actions.answer(id) else {
            return;
        };
        let surplus = action.surplus();
        match (outcome, action) {
            (Outcome::Done, Action::Accept { .. }) => {
                self.cards.advance(surplus, Stage::Offered, Stage::Claimed);
            }
            (Outcome::Done, Action::PickedUp { .. }) => {
                self.cards.advance(surplus, Stage::Claimed, Stage::PickedUp);
            }
            (Outcome::Done, Action::Decline { .. }) => {
                self.cards.remove(surplus);
                self.say(now, Text::Outcome(Outcome::Done));
            }
            (Outcome::Done, Action::Delivered { .. }) => {
                self.cards.remove(surplus);
                self.say(now, Text::Thanks);
            }
            // Refused: the card goes; the edge sends it again if it is
            // still this recipient's to act on.
            (refused, _) => {
                self.cards.remove(surplus);
                self.say(now, Text::Outcome(refused));
            }
        }
    }

    pub(crate) fn say(&mut self, now: Uptime, text: Text) {
        self.notice = Some((text, now.plus_ms(NOTICE_MS)));
    }

    /// What time alone changes: deadlines passing, notices ending, the link
    /// timing out, views of cards that are gone.
    fn expire(&mut self, now: Uptime) {
        if let Some(clock) = self.clock {
            let actions = &self.actions;
            self.cards
                .prune(clock.at(now), ACTION_MARGIN_MS, |s| actions.on(s).is_some());
        }
        if self.notice.is_some_and(|(_, until)| now >= until) {
            self.notice = None;
        }
        if let Some(c) = self.conn.as_mut().filter(|c| !c.failed) {
            c.failed = match c.phase {
                Phase::Live { .. } => now.since(c.last_rx) > LINK_TIMEOUT_MS,
                _ => now.since(c.since) > HANDSHAKE_TIMEOUT_MS,
            };
        }
        let keep_view = match self.view {
            View::Browse => true,
            View::AskDecline(s) => self.step(s, now) == Some(Stage::Offered),
            View::Amount { surplus, .. } => self.step(surplus, now) == Some(Stage::PickedUp),
        };
        if !keep_view {
            self.view = View::Browse;
        }
        self.pin_shown(now);
    }

    /// Keeps the card on screen where it is when others come and go; when it
    /// goes (or the first arrives), guards the buttons for a moment.
    fn pin_shown(&mut self, now: Uptime) {
        let here = self.selected.filter(|s| self.cards.find(*s).is_some());
        if here.is_none() {
            let first = self.cards.get(0).map(|c| c.surplus);
            if first.is_some() {
                self.guard_until = Some(now.plus_ms(CHANGE_GUARD_MS));
            }
            self.selected = first;
        }
    }

    /// Time passed: call at [`Kiosk::poll_timeout`] (or more often).
    pub fn tick(&mut self, now: Uptime) {
        self.advance_to(now);
    }

    /// The next frame to write to the socket, if any. Call until `None`
    /// after every other call.
    pub fn poll_transmit(&mut self, now: Uptime) -> Option<Frame> {
        let now = self.advance_to(now);
        let conn = self.conn.as_mut().filter(|c| !c.failed)?;
        if let Some(hello) = conn.hello.take() {
            conn.last_tx = now;
            return Some(hello);
        }
        let msg = if conn.ready_due {
            conn.ready_due = false;
            Up::Ready {
                firmware: self.firmware,
                device_ms: now.ms(),
            }
        } else if !matches!(conn.phase, Phase::Live { .. }) {
            return None;
        } else if let Some((id, action)) = self.actions.next_to_send(conn.number, now) {
            Up::Act { id, action }
        } else if now.since(conn.last_tx) >= HEARTBEAT_MS {
            Up::Heartbeat {
                device_ms: now.ms(),
            }
        } else {
            return None;
        };
        match conn.link.seal(&msg) {
            Ok(frame) => {
                conn.last_tx = now;
                Some(frame)
            }
            Err(_) => {
                conn.failed = true;
                None
            }
        }
    }

    /// When to call [`Kiosk::tick`] and [`Kiosk::poll_transmit`] next.
    /// With cards on screen, every second (the countdown).
    pub fn poll_timeout(&self) -> Option<Uptime> {
        let mut next: Option<Uptime> = None;
        let mut consider = |t: Uptime| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(c) = self.conn.as_ref().filter(|c| !c.failed) {
            if matches!(c.phase, Phase::Live { .. }) {
                consider(c.last_tx.plus_ms(HEARTBEAT_MS));
                consider(c.last_rx.plus_ms(LINK_TIMEOUT_MS + 1));
                // A retry is sent only on a live link.
                if let Some(t) = self.actions.next_retry() {
                    consider(t);
                }
            } else {
                consider(c.since.plus_ms(HANDSHAKE_TIMEOUT_MS + 1));
            }
        }
        if let Some((_, until)) = self.notice {
            consider(until);
        }
        if !self.cards.is_empty() {
            consider(self.now.plus_ms(1_000 - self.now.ms() % 1_000));
        }
        next
    }

    /// A button was pressed. It does what the screen shows for it.
    pub fn button(&mut self, now: Uptime, button: Button) {
        let now = self.advance_to(now);
        let (ok, back) = self.intents(now);
        match button {
            Button::Language => self.lang = self.lang.other(),
            Button::Ok => ok.into_iter().for_each(|i| self.run(now, i)),
            Button::Back => back.into_iter().for_each(|i| self.run(now, i)),
            Button::Up => self.scroll(true),
            Button::Down => self.scroll(false),
        }
    }

    fn run(&mut self, now: Uptime, intent: Intent) {
        self.view = match intent {
            Intent::AskDecline(s) => View::AskDecline(s),
            Intent::EnterAmount(s) => View::Amount {
                surplus: s,
                grams: self.cards.find(s).map_or(0, |c| c.quantity.grams()),
            },
            _ => View::Browse,
        };
        if let Some(action) = intent.action()
            && self.actions.push(action).is_err()
        {
            self.say(now, Text::QueueFull);
        }
    }

    fn scroll(&mut self, up: bool) {
        match &mut self.view {
            View::Amount { surplus, grams } => {
                let max = self.cards.find(*surplus).map_or(0, |c| c.quantity.grams());
                *grams = if up {
                    grams.saturating_add(KG_STEP_GRAMS).min(max)
                } else {
                    grams.saturating_sub(KG_STEP_GRAMS)
                };
            }
            View::AskDecline(_) => {}
            View::Browse => {
                let n = self.cards.len();
                if n == 0 {
                    return;
                }
                let i = self.shown_index();
                let j = if up { (i + n - 1) % n } else { (i + 1) % n };
                self.selected = self.cards.get(j).map(|c| c.surplus);
            }
        }
    }
}
