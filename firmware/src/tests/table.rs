//! Table tests of the kiosk: scripted steps against the simulated edge, the
//! screen after each, and what the edge received.

use sync_protocol::kiosk::{ActionKind, Outcome, Refusal, Withdrawal};
use sync_protocol::{FoodType, Mass};

use super::sim::Sim;
use crate::screen::{ClockTime, Countdown, OneDecimal};
use crate::text::{Language, Text};
use crate::{Button, COLUMNS, Intent, LinkStatus, MAX_PENDING};

/// One step of a script.
#[derive(Debug, Clone, Copy)]
enum Do {
    Connect,
    /// An offer answerable for this many ms, of this many grams.
    Offer(u64, u64),
    Press(Button),
    Wait(u64),
    /// Deliver everything in flight.
    Settle,
}

/// Runs `(step, expected screen)` rows; `None` skips the check.
fn script(sim: &mut Sim, rows: &[(Do, Option<[&str; 4]>)]) {
    for (i, (step, want)) in rows.iter().enumerate() {
        match *step {
            Do::Connect => sim.connect(),
            Do::Offer(ms, g) => {
                sim.offer(ms, g);
            }
            Do::Press(b) => sim.press(b),
            Do::Wait(ms) => sim.wait(ms),
            Do::Settle => sim.settle(),
        }
        if let Some(want) = want {
            assert_eq!(sim.lines(), want.map(String::from), "row {i}: {step:?}");
        }
    }
}

/// A kiosk online with one offer of `grams` on screen, answerable for
/// `respond_ms` (the button guard still up).
fn one_offer(respond_ms: u64, grams: u64) -> Sim {
    let mut sim = Sim::new();
    sim.connect();
    sim.settle();
    sim.offer(respond_ms, grams);
    sim.settle();
    sim
}

/// Edge time 2026-11-24T17:00:01Z at uptime 1 s: 00:00 in Jakarta (UTC+7).
#[test]
fn an_offer_goes_from_shown_to_delivered() {
    let mut sim = Sim::new();
    script(
        &mut sim,
        &[
            (
                Do::Wait(0),
                Some([
                    "PAHLAWAN PANGAN",
                    "Not connected yet",
                    "No offers yet",
                    "Offline",
                ]),
            ),
            (
                Do::Connect,
                Some([
                    "PAHLAWAN PANGAN",
                    "Not connected yet",
                    "No offers yet",
                    "Connecting...",
                ]),
            ),
            (
                Do::Settle,
                Some([
                    "PAHLAWAN PANGAN",
                    "Bank Pangan Bandung",
                    "No offers yet",
                    "Online  00:00",
                ]),
            ),
            (Do::Offer(300_000, 12_480), None),
            (
                Do::Settle,
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Reply 4:55  2.3km",
                    "OK=Accept X=Decline",
                ]),
            ),
            // The guard: a press within a second of the card appearing does nothing.
            (
                Do::Press(Button::Ok),
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Reply 4:55  2.3km",
                    "OK=Accept X=Decline",
                ]),
            ),
            (
                Do::Wait(1_000),
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Reply 4:54  2.3km",
                    "OK=Accept X=Decline",
                ]),
            ),
            (
                Do::Press(Button::Ok),
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Accepting...",
                    "Sending...",
                ]),
            ),
            (
                Do::Settle,
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Pick up by 01:05",
                    "OK=Picked up",
                ]),
            ),
            (
                Do::Press(Button::Ok),
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Saving pick-up...",
                    "Sending...",
                ]),
            ),
            (
                Do::Settle,
                Some([
                    "1/1 Bakery 12.5kg",
                    "Warung 1",
                    "Picked up",
                    "OK=Record delivery",
                ]),
            ),
            (
                Do::Press(Button::Ok),
                Some([
                    "Amount delivered:",
                    "  12.5 kg",
                    "^v max 12.5kg",
                    "OK=Send X=Cancel",
                ]),
            ),
            (
                Do::Press(Button::Up),
                Some([
                    "Amount delivered:",
                    "  12.5 kg",
                    "^v max 12.5kg",
                    "OK=Send X=Cancel",
                ]),
            ),
            (Do::Press(Button::Down), None),
            (
                Do::Press(Button::Down),
                Some([
                    "Amount delivered:",
                    "  11.5 kg",
                    "^v max 12.5kg",
                    "OK=Send X=Cancel",
                ]),
            ),
            (
                Do::Press(Button::Language),
                Some([
                    "Jumlah diantar:",
                    "  11.5 kg",
                    "^v maks 12.5kg",
                    "OK=Kirim X=Batal",
                ]),
            ),
            (
                Do::Press(Button::Ok),
                Some([
                    "1/1 Roti 12.5kg",
                    "Warung 1",
                    "Mencatat kirim...",
                    "Mengirim...",
                ]),
            ),
            (
                Do::Settle,
                Some([
                    "PAHLAWAN PANGAN",
                    "Bank Pangan Bandung",
                    "Terima kasih!",
                    "Daring  00:00",
                ]),
            ),
            (
                Do::Wait(5_000),
                Some([
                    "PAHLAWAN PANGAN",
                    "Bank Pangan Bandung",
                    "Belum ada tawaran",
                    "Daring  00:00",
                ]),
            ),
        ],
    );
    let s = sim.held.keys().next().copied().expect("one surplus");
    assert_eq!(
        sim.applied,
        [
            (s, ActionKind::Accept),
            (s, ActionKind::PickedUp),
            (s, ActionKind::Delivered)
        ]
    );
    let delivered = sim.received.iter().find_map(|r| match r.action {
        sync_protocol::kiosk::Action::Delivered { delivered, .. } => Some(delivered),
        _ => None,
    });
    assert_eq!(
        delivered,
        Some(Mass::from_grams(11_480)),
        "12.48 kg less two steps of 0.5 kg"
    );
    assert_eq!(sim.kiosk.pending(), 0);
}

#[test]
fn declining_asks_first_and_x_takes_it_back() {
    let mut sim = one_offer(300_000, 5_000);
    script(
        &mut sim,
        &[
            (Do::Wait(1_000), None),
            (
                Do::Press(Button::Back),
                Some([
                    "Decline this offer?",
                    "Warung 1",
                    "Bakery 5.0kg",
                    "OK=Yes  X=No",
                ]),
            ),
            (
                Do::Press(Button::Back),
                Some([
                    "1/1 Bakery 5.0kg",
                    "Warung 1",
                    "Reply 4:54  2.3km",
                    "OK=Accept X=Decline",
                ]),
            ),
            (Do::Press(Button::Back), None),
            (
                Do::Press(Button::Ok),
                Some(["1/1 Bakery 5.0kg", "Warung 1", "Declining...", "Sending..."]),
            ),
            (
                Do::Settle,
                Some([
                    "PAHLAWAN PANGAN",
                    "Bank Pangan Bandung",
                    "Recorded",
                    "Online  00:00",
                ]),
            ),
        ],
    );
    let s = sim.held.keys().next().copied().expect("one surplus");
    assert_eq!(sim.applied, [(s, ActionKind::Decline)]);
}

#[test]
fn a_press_while_disconnected_is_sent_once_on_reconnect() {
    let mut sim = one_offer(300_000, 5_000);
    sim.wait(1_000);
    sim.disconnect();
    assert_eq!(sim.lines()[0], "1/1 Bakery 5.0kg   !", "the offline mark");
    assert_eq!(
        sim.screen().ok.map(|i| matches!(i, Intent::Accept(_))),
        Some(true),
        "still actionable offline"
    );
    sim.press(Button::Ok);
    assert_eq!(sim.lines()[2..], ["Accepting...", "Queued: offline"]);
    sim.press(Button::Ok);
    assert_eq!(
        sim.kiosk.pending(),
        1,
        "a second press makes no second action"
    );
    sim.wait(30_000);
    sim.connect();
    sim.settle();
    assert_eq!(sim.received.len(), 1, "sent once: {:?}", sim.received);
    assert_eq!(sim.received[0].outcome, Outcome::Done);
    assert_eq!(sim.lines()[2], "Pick up by 01:05");
}

#[test]
fn an_answer_lost_with_the_link_is_asked_again_with_the_same_id() {
    let mut sim = one_offer(300_000, 5_000);
    sim.wait(1_000);
    sim.press(Button::Ok);
    sim.deliver(1, 0); // the edge applies the accept; its answer is lost
    assert_eq!(sim.applied.len(), 1);
    sim.disconnect();
    assert_eq!(sim.lines()[2], "Accepting...");
    sim.connect();
    sim.settle();
    assert_eq!(sim.received.len(), 2);
    assert_eq!(sim.received[0].id, sim.received[1].id, "the same id");
    assert_eq!(
        sim.received[1].outcome,
        Outcome::Done,
        "the dedupe's first answer"
    );
    assert_eq!(sim.applied.len(), 1, "applied once");
    assert_eq!(sim.lines()[3], "OK=Picked up");
}

#[test]
fn busy_is_retried_with_the_same_id_after_the_delay() {
    let mut sim = one_offer(300_000, 5_000);
    sim.wait(1_000);
    sim.busy = 1;
    sim.press(Button::Ok);
    sim.settle();
    assert_eq!(sim.received.len(), 1);
    assert!(matches!(sim.received[0].outcome, Outcome::Busy { .. }));
    sim.wait(1_000);
    sim.settle();
    assert_eq!(sim.received.len(), 1, "not before the delay");
    sim.wait(500);
    sim.settle();
    assert_eq!(sim.received.len(), 2);
    assert_eq!(
        (sim.received[1].id, sim.received[1].outcome),
        (sim.received[0].id, Outcome::Done)
    );
}

#[test]
fn an_offer_stops_being_actionable_before_its_deadline_even_offline() {
    let mut sim = one_offer(20_000, 5_000);
    sim.disconnect();
    sim.wait(14_000);
    assert_eq!(sim.lines()[2], "Reply 0:01  2.3km");
    sim.wait(999);
    assert_eq!(sim.lines()[2], "Reply 0:00  2.3km");
    assert!(sim.screen().ok.is_some(), "1 ms left");
    sim.wait(1);
    // 15 s left of 20: inside the margin. No Withdrawn came (offline); the
    // kiosk's own estimate of the edge's clock takes it away.
    assert_eq!(
        sim.lines(),
        [
            "PAHLAWAN PANGAN",
            "Bank Pangan Bandung",
            "No offers yet",
            "Offline"
        ]
        .map(String::from)
    );
    assert_eq!(sim.screen().ok, None);
}

#[test]
fn withdrawals_take_the_card_away_with_the_reason() {
    let table = [
        (Withdrawal::TimedOut, "Time to reply over"),
        (Withdrawal::Expired, "Food expired"),
        (Withdrawal::ClaimedByAnother, "Taken by another"),
        (Withdrawal::Cancelled, "Offer cancelled"),
    ];
    for (reason, said) in table {
        let mut sim = one_offer(300_000, 5_000);
        let s = sim.live()[0];
        sim.withdraw(s, reason);
        sim.settle();
        assert_eq!(
            sim.lines()[1..3],
            ["Bank Pangan Bandung", said],
            "{reason:?}"
        );
        assert_eq!(sim.screen().ok, None);
    }
}

#[test]
fn a_refused_answer_removes_the_card_and_says_why() {
    let table = [
        (Withdrawal::ClaimedByAnother, "Someone was faster"),
        (Withdrawal::TimedOut, "Already expired"),
        (Withdrawal::Cancelled, "Not yours"),
    ];
    for (gone, said) in table {
        let mut sim = one_offer(300_000, 5_000);
        sim.wait(1_000);
        sim.disconnect();
        sim.press(Button::Ok);
        // Gone at the edge while the kiosk was away; the snapshot drops the
        // card, the queued accept still goes and is answered.
        let s = sim.live()[0];
        sim.held.get_mut(&s).expect("held").gone = Some(gone);
        sim.connect();
        sim.settle();
        assert_eq!(sim.received.len(), 1);
        assert_eq!(sim.lines()[2], said, "{gone:?}");
        assert_eq!(sim.kiosk.pending(), 0);
    }
}

#[test]
fn the_welcome_snapshot_forgets_what_went_while_away() {
    let mut sim = Sim::new();
    script(
        &mut sim,
        &[
            (Do::Connect, None),
            (Do::Settle, None),
            (Do::Offer(300_000, 5_000), None),
            (Do::Offer(600_000, 7_000), None),
            (Do::Settle, None),
        ],
    );
    assert_eq!(sim.lines()[0], "1/2 Bakery 5.0kg");
    sim.disconnect();
    let first = sim.live()[0];
    sim.held.get_mut(&first).expect("held").gone = Some(Withdrawal::ClaimedByAnother);
    sim.connect();
    sim.settle();
    assert_eq!(sim.lines()[0], "1/1 Produce 7.0kg");
}

#[test]
fn a_full_queue_refuses_the_press_on_screen() {
    let mut sim = Sim::new();
    script(&mut sim, &[(Do::Connect, None), (Do::Settle, None)]);
    for _ in 0..MAX_PENDING {
        sim.offer(600_000, 1_000);
    }
    sim.settle();
    sim.wait(1_000);
    sim.disconnect();
    for _ in 0..MAX_PENDING {
        assert!(
            matches!(sim.screen().ok, Some(Intent::Accept(_))),
            "{:?}",
            sim.screen()
        );
        sim.press(Button::Ok);
        sim.press(Button::Down);
    }
    assert_eq!(sim.kiosk.pending(), MAX_PENDING);
    // A ninth card can only come after one left: the edge withdraws one
    // (its accept stays queued), then offers another.
    sim.connect();
    sim.deliver(0, usize::MAX); // the challenge
    sim.deliver(1, 0); // Hello
    sim.deliver(0, usize::MAX);
    sim.deliver(1, 0); // Ready → Welcome and the snapshot
    sim.deliver(0, usize::MAX);
    let gone = sim.live()[0];
    sim.withdraw(gone, Withdrawal::Cancelled);
    let ninth = sim.offer(600_000, 1_000);
    sim.deliver(0, usize::MAX);
    sim.wait(1_000);
    while sim.screen().ok != Some(Intent::Accept(ninth)) {
        sim.press(Button::Down);
    }
    sim.press(Button::Ok);
    assert_eq!(sim.kiosk.pending(), MAX_PENDING, "no ninth action");
    assert_eq!(sim.lines()[2], "Queue full");
}

#[test]
fn a_time_sync_with_a_slow_round_trip_is_not_trusted() {
    let mut sim = Sim::new();
    sim.connect();
    sim.deliver(1, 0); // Hello
    sim.deliver(0, 1); // the challenge
    sim.deliver(1, 0); // Ready: the edge answers Welcome at once...
    sim.offer(300_000, 5_000);
    sim.wait(2_500); // ...but it reaches the kiosk 2.5 s later
    sim.deliver(0, usize::MAX);
    assert_eq!(sim.kiosk.status(), LinkStatus::Online);
    assert_eq!(
        sim.lines()[2..],
        ["Expired", "Expired"],
        "no clock: nothing actionable"
    );
    assert_eq!(sim.screen().ok, None);
    sim.wait(10_000); // the heartbeat's answer comes straight back
    sim.settle();
    assert!(
        matches!(sim.screen().ok, Some(Intent::Accept(_))),
        "{:?}",
        sim.screen()
    );
}

#[test]
fn a_silent_edge_or_a_stuck_handshake_fails_the_link() {
    let mut sim = Sim::new();
    sim.connect();
    sim.wait(10_001);
    assert!(!sim.is_connected(), "handshake timed out");
    sim.connect();
    sim.settle();
    sim.wait(10_000); // a heartbeat goes out, nothing comes back
    sim.wait(20_000);
    assert!(sim.is_connected(), "30 s is not yet a timeout");
    sim.wait(1);
    assert!(!sim.is_connected(), "dead link dropped");
}

#[test]
fn a_refused_kiosk_says_why() {
    let table = [
        (Refusal::UnknownDevice, "Unknown kiosk", "Kiosk tak dikenal"),
        (Refusal::Revoked, "Kiosk revoked", "Kiosk dicabut"),
        (Refusal::Version, "Update firmware", "Perbarui firmware"),
        (
            Refusal::RateLimited {
                retry_after_ms: 60_000,
            },
            "Too many attempts",
            "Terlalu sering",
        ),
    ];
    for (r, en, id) in table {
        // Before the keys (in the clear) and after them (sealed).
        for sealed in [false, true] {
            let mut sim = Sim::new();
            if sealed {
                sim.refuse_sealed = Some(r);
            } else {
                sim.refuse = Some(r);
            }
            sim.connect();
            sim.settle();
            assert_eq!(sim.kiosk.refusal(), Some(r), "sealed: {sealed}");
            assert!(!sim.is_connected(), "the shell closed the refused link");
            assert_eq!(sim.lines()[3], en);
            sim.press(Button::Language);
            assert_eq!(sim.lines()[3], id);
        }
    }
}

#[test]
fn the_card_on_screen_stays_when_others_arrive() {
    let mut sim = one_offer(600_000, 5_000);
    sim.wait(1_000);
    let first = sim.live()[0];
    sim.offer(300_000, 9_000); // more urgent: sorted before the first
    sim.settle();
    assert_eq!(
        sim.screen().ok,
        Some(Intent::Accept(first)),
        "no jump, no guard"
    );
    assert_eq!(sim.lines()[0], "2/2 Bakery 5.0kg");
    sim.press(Button::Up);
    assert_eq!(sim.lines()[0], "1/2 Produce 9.0kg");
}

#[test]
fn every_phrase_fits_the_display_in_both_languages() {
    for t in Text::all() {
        for lang in [Language::Indonesian, Language::English] {
            let s = t.get(lang);
            assert!(
                s.len() <= COLUMNS && s.is_ascii() && !s.is_empty(),
                "{t:?} in {lang:?}: {s:?}"
            );
        }
        assert_ne!(t.get(Language::Indonesian), "", "{t:?}");
    }
    assert_eq!(
        Text::Food(FoodType::DryGoods).get(Language::Indonesian),
        "Sembako"
    );
}

#[test]
fn numbers_and_times_are_formatted_for_the_display() {
    let table: [(std::string::String, &str); 9] = [
        (OneDecimal(12_480).to_string(), "12.5"),
        (OneDecimal(12_449).to_string(), "12.4"),
        (OneDecimal(999_960).to_string(), "1000.0"),
        (OneDecimal(0).to_string(), "0.0"),
        (Countdown(295_999).to_string(), "4:55"),
        (Countdown(3_725_000).to_string(), "1:02:05"),
        (
            ClockTime(
                sync_protocol::Timestamp::from_unix_ms(super::sim::EDGE_EPOCH_MS),
                420,
            )
            .to_string(),
            "00:00",
        ),
        (
            ClockTime(
                sync_protocol::Timestamp::from_unix_ms(super::sim::EDGE_EPOCH_MS),
                -300,
            )
            .to_string(),
            "12:00",
        ),
        (
            ClockTime(sync_protocol::Timestamp::from_unix_ms(-60_000), 0).to_string(),
            "23:59",
        ),
    ];
    for (got, want) in table {
        assert_eq!(got, want);
    }
}

#[test]
fn a_name_beyond_ascii_is_shown_with_question_marks() {
    let l = crate::screen::line(format_args!("Kedai Bú 咖啡 and a very long tail"));
    assert_eq!(&l.bytes(), b"Kedai B? ?? and a ve");
}
