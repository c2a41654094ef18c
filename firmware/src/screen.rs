//! What the kiosk shows: four lines of twenty ASCII characters, and what
//! the OK and X buttons would do right now — one value, so the buttons do
//! exactly what the screen says.

use core::fmt::{self, Write};

use sync_protocol::kiosk::Action;
use sync_protocol::{Mass, SurplusId, Timestamp};

pub const COLUMNS: usize = 20;
pub const ROWS: usize = 4;

/// What a button would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Accept(SurplusId),
    /// Ask "decline this offer?" first: one slip must not lose food.
    AskDecline(SurplusId),
    Decline(SurplusId),
    PickedUp(SurplusId),
    /// Open the delivered-amount entry.
    EnterAmount(SurplusId),
    Deliver(SurplusId, Mass),
    /// Back to the cards.
    Cancel,
}

impl Intent {
    /// The action it makes, if it makes one.
    pub const fn action(self) -> Option<Action> {
        match self {
            Intent::Accept(surplus) => Some(Action::Accept { surplus }),
            Intent::Decline(surplus) => Some(Action::Decline { surplus }),
            Intent::PickedUp(surplus) => Some(Action::PickedUp { surplus }),
            Intent::Deliver(surplus, delivered) => Some(Action::Delivered { surplus, delivered }),
            Intent::AskDecline(_) | Intent::EnterAmount(_) | Intent::Cancel => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Screen {
    pub lines: [[u8; COLUMNS]; ROWS],
    /// What OK does now (`None`: nothing).
    pub ok: Option<Intent>,
    /// What X does now.
    pub back: Option<Intent>,
}

impl Screen {
    /// Line `i` as text (always ASCII, padded with spaces).
    pub fn line(&self, i: usize) -> &str {
        core::str::from_utf8(&self.lines[i]).unwrap_or("")
    }
}

impl fmt::Debug for Screen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Screen")
            .field(
                "lines",
                &[self.line(0), self.line(1), self.line(2), self.line(3)],
            )
            .field("ok", &self.ok)
            .field("back", &self.back)
            .finish()
    }
}

/// One display line being written: cut at [`COLUMNS`], anything but
/// printable ASCII shown as `?`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    buf: [u8; COLUMNS],
    len: usize,
}

impl Line {
    pub const fn new() -> Line {
        Line {
            buf: [b' '; COLUMNS],
            len: 0,
        }
    }

    /// Puts `c` in the last column (the link mark).
    pub fn mark(mut self, c: u8) -> Line {
        self.buf[COLUMNS - 1] = c;
        self
    }

    pub const fn bytes(self) -> [u8; COLUMNS] {
        self.buf
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.len == COLUMNS {
                break;
            }
            self.buf[self.len] = if c.is_ascii_graphic() || c == ' ' {
                c as u8
            } else {
                b'?'
            };
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes formatted text into a fresh line (the `format!` of a display).
pub(crate) fn line(args: fmt::Arguments<'_>) -> Line {
    let mut l = Line::new();
    // Writing to a `Line` never fails; it cuts instead.
    let _ = l.write_fmt(args);
    l
}

/// Thousandths shown in units with one decimal, rounded: 12_480 grams as
/// `12.5` (kg), 2_300 metres as `2.3` (km).
pub(crate) struct OneDecimal(pub u64);

impl fmt::Display for OneDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0.saturating_add(50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// A countdown: `4:59`, or `1:04:59` from an hour.
pub(crate) struct Countdown(pub u64);

impl fmt::Display for Countdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0 / 1_000;
        match s / 3_600 {
            0 => write!(f, "{}:{:02}", s / 60, s % 60),
            h => write!(f, "{}:{:02}:{:02}", h, s / 60 % 60, s % 60),
        }
    }
}

/// A wall-clock time `16:30` in the edge's zone.
pub(crate) struct ClockTime(pub Timestamp, pub i16);

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.0.unix_ms().saturating_add(i64::from(self.1) * 60_000);
        let minutes = local.div_euclid(60_000).rem_euclid(24 * 60);
        write!(f, "{:02}:{:02}", minutes / 60, minutes % 60)
    }
}
