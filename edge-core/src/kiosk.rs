//! Pairing a kiosk page and the life of its device credential, I/O-free.
//! The shells (the edge's HTTP API and its writer) draw the randomness,
//! hash the secrets, read the clock and store the rows; this module decides:
//!
//! - [`PairingCode`]: a short one-time code (8 characters from a 32-letter
//!   alphabet without look-alikes, 40 bits), made from random bytes passed
//!   in, and parsed forgivingly from what a person typed.
//! - [`redeem`]: whether a stored pairing may be traded for a device
//!   credential now (unknown, expired or used codes are refused).
//! - [`AttemptLimiter`]: pairing attempts per peer and per edge in fixed
//!   windows, with a bounded number of peers remembered.
//! - [`check_device`]: whether a device credential is valid now, and
//!   whether it is due for renewal.

use std::collections::BTreeMap;

use sync_protocol::{Duration, RecipientId, Timestamp};

/// Characters of a code: digits and capitals without `0 1 I O` (which are
/// misread for one another). 32 of them: 5 bits a character.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Characters in a code (40 bits: with [`AttemptLimits`] a guess succeeds
/// with odds far below one in a million over a code's life).
pub const CODE_LEN: usize = 8;

/// A pairing code, canonical form (upper case, no separators).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingCode([u8; CODE_LEN]);

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A live code is a secret: never in logs.
        f.write_str("PairingCode(…)")
    }
}

/// Why typed text is not a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// Not [`CODE_LEN`] code characters once spaces and dashes are removed.
    Length,
    /// A character outside [`CODE_ALPHABET`].
    Character,
}

impl PairingCode {
    /// A code from random bytes (one character per byte, its low 5 bits:
    /// uniform when the bytes are).
    pub fn from_random(bytes: [u8; CODE_LEN]) -> PairingCode {
        PairingCode(bytes.map(|b| CODE_ALPHABET[usize::from(b & 31)]))
    }

    /// What a person typed: case, spaces and dashes do not matter.
    pub fn parse(typed: &str) -> Result<PairingCode, CodeError> {
        let mut out = [0u8; CODE_LEN];
        let mut n = 0;
        for c in typed.chars().filter(|c| !matches!(c, ' ' | '-')) {
            let c = c.to_ascii_uppercase();
            if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
                return Err(CodeError::Character);
            }
            if n == CODE_LEN {
                return Err(CodeError::Length);
            }
            out[n] = c as u8;
            n += 1;
        }
        if n == CODE_LEN {
            Ok(PairingCode(out))
        } else {
            Err(CodeError::Length)
        }
    }

    /// The canonical form (`K7QM2XPD`): what is hashed and stored.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("the alphabet is ASCII")
    }

    /// As shown to people: two groups of four (`K7QM-2XPD`).
    pub fn display(&self) -> String {
        let s = self.as_str();
        format!("{}-{}", &s[..4], &s[4..])
    }
}

/// A pairing as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing {
    pub recipient: RecipientId,
    pub expires_at: Timestamp,
    pub used: bool,
}

/// Why a code cannot be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairRefusal {
    /// No such code.
    Unknown,
    /// The code's few minutes are over.
    Expired,
    /// The code paired a device already: codes are one-time.
    Used,
}

/// Whether the stored pairing (if any) may be redeemed at `now`.
pub fn redeem(stored: Option<Pairing>, now: Timestamp) -> Result<RecipientId, PairRefusal> {
    match stored {
        None => Err(PairRefusal::Unknown),
        Some(p) if p.used => Err(PairRefusal::Used),
        Some(p) if now >= p.expires_at => Err(PairRefusal::Expired),
        Some(p) => Ok(p.recipient),
    }
}

/// How many pairing attempts are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// The length of one counting window.
    pub window: Duration,
    /// Attempts one peer may make in a window.
    pub per_peer: u32,
    /// Attempts the whole edge takes in a window (from every peer together).
    pub total: u32,
    /// Peers remembered at once; when full, a new peer counts against
    /// `total` only once the oldest windows have passed.
    pub max_peers: usize,
}

impl Default for AttemptLimits {
    fn default() -> AttemptLimits {
        AttemptLimits {
            window: Duration::from_mins(1),
            per_peer: 10,
            total: 60,
            max_peers: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Timestamp,
    count: u32,
}

impl Window {
    /// Counts one attempt at `now` if under `max`; otherwise the wait until
    /// the window ends.
    fn take(&mut self, now: Timestamp, window: Duration, max: u32) -> Result<(), Duration> {
        if now.since(self.started) >= window || now < self.started {
            *self = Window {
                started: now,
                count: 0,
            };
        }
        if self.count >= max {
            return Err((self.started + window).since(now));
        }
        self.count += 1;
        Ok(())
    }
}

/// Pairing attempts counted per peer and for the edge, in fixed windows.
#[derive(Debug)]
pub struct AttemptLimiter<K> {
    limits: AttemptLimits,
    peers: BTreeMap<K, Window>,
    total: Window,
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl<K: Ord + Clone> AttemptLimiter<K> {
    pub fn new(limits: AttemptLimits) -> AttemptLimiter<K> {
        AttemptLimiter {
            limits,
            peers: BTreeMap::new(),
            total: Window {
                started: Timestamp::UNIX_EPOCH,
                count: 0,
            },
        }
    }

    /// Counts an attempt by `peer` at `now`, or says how long to wait.
    /// A refused attempt is not counted.
    pub fn attempt(&mut self, peer: &K, now: Timestamp) -> Result<(), RetryAfter> {
        let l = self.limits;
        if !self.peers.contains_key(peer) && self.peers.len() >= l.max_peers {
            self.peers.retain(|_, w| now.since(w.started) < l.window);
        }
        let mut probe = self.total;
        probe.take(now, l.window, l.total).map_err(RetryAfter)?;
        if self.peers.len() >= l.max_peers && !self.peers.contains_key(peer) {
            // Every remembered peer is in its window: a new one waits for
            // the oldest window to end rather than growing the map.
            let oldest = self.peers.values().map(|w| w.started).min();
            let wait = oldest.map_or(l.window, |s| (s + l.window).since(now));
            return Err(RetryAfter(wait));
        }
        let mut window = self.peers.get(peer).copied().unwrap_or(Window {
            started: now,
            count: 0,
        });
        window.take(now, l.window, l.per_peer).map_err(RetryAfter)?;
        self.peers.insert(peer.clone(), window);
        self.total = probe;
        debug_assert!(self.peers.len() <= l.max_peers);
        Ok(())
    }

    /// Peers remembered now.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}

/// A device credential as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub recipient: RecipientId,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

/// What a presented device credential is worth at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCheck {
    /// Acts for this recipient; `renew`: less than half its lifetime is
    /// left, so the shell extends it (and sets the cookie again).
    Valid {
        recipient: RecipientId,
        renew: bool,
    },
    Unknown,
    Expired,
    Revoked,
}

/// Checks a stored device (if the id and secret named one) at `now`.
pub fn check_device(stored: Option<Device>, now: Timestamp, lifetime: Duration) -> DeviceCheck {
    match stored {
        None => DeviceCheck::Unknown,
        Some(d) if d.revoked => DeviceCheck::Revoked,
        Some(d) if now >= d.expires_at => DeviceCheck::Expired,
        Some(d) => DeviceCheck::Valid {
            recipient: d.recipient,
            renew: d.expires_at.since(now).as_ms() < lifetime.as_ms() / 2,
        },
    }
}

/// When a credential issued or renewed at `now` expires.
pub fn device_expiry(now: Timestamp, lifetime: Duration) -> Timestamp {
    now + lifetime
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RecipientId = RecipientId::from_bytes([7; 16]);
    const T0: Timestamp = Timestamp::from_unix_ms(1_800_000_000_000);

    fn at(secs: i64) -> Timestamp {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn codes_come_from_the_alphabet_and_parse_forgivingly() {
        let code = PairingCode::from_random([0, 1, 31, 32, 255, 8, 9, 100]);
        assert_eq!(code.as_str(), "23Z2ZAB6");
        assert_eq!(code.display(), "23Z2-ZAB6");
        for (typed, want) in [
            ("23Z2ZAB6", Ok(code)),
            ("23z2-zab6", Ok(code)),
            (" 23Z2 ZAB6 ", Ok(code)),
            ("23Z2ZAB", Err(CodeError::Length)),
            ("23Z2ZAB66", Err(CodeError::Length)),
            ("", Err(CodeError::Length)),
            ("23Z2ZAB0", Err(CodeError::Character)),
            ("23Z2ZABI", Err(CodeError::Character)),
            ("23Z2ZAB1", Err(CodeError::Character)),
            ("23Z2ZABÉ", Err(CodeError::Character)),
            ("23Z2_ZAB6", Err(CodeError::Character)),
        ] {
            assert_eq!(PairingCode::parse(typed), want, "{typed:?}");
        }
        assert_eq!(format!("{code:?}"), "PairingCode(…)", "never logged");
    }

    #[test]
    fn every_byte_gives_an_alphabet_character_evenly() {
        let mut seen = [0u32; 32];
        for b in 0..=255u8 {
            let c = PairingCode::from_random([b; CODE_LEN]);
            let i = CODE_ALPHABET
                .iter()
                .position(|&a| a == c.as_str().as_bytes()[0])
                .expect("in the alphabet");
            seen[i] += 1;
        }
        assert!(seen.iter().all(|&n| n == 8), "{seen:?}");
    }

    #[test]
    fn a_code_redeems_once_before_it_expires() {
        let live = Pairing {
            recipient: R,
            expires_at: at(600),
            used: false,
        };
        for (stored, now, want) in [
            (None, at(0), Err(PairRefusal::Unknown)),
            (Some(live), at(0), Ok(R)),
            (Some(live), at(599), Ok(R)),
            (Some(live), at(600), Err(PairRefusal::Expired)),
            (
                Some(Pairing { used: true, ..live }),
                at(1),
                Err(PairRefusal::Used),
            ),
        ] {
            assert_eq!(redeem(stored, now), want, "{stored:?} at {now:?}");
        }
    }

    fn limits() -> AttemptLimits {
        AttemptLimits {
            window: Duration::from_secs(60),
            per_peer: 3,
            total: 5,
            max_peers: 2,
        }
    }

    #[test]
    fn a_peer_gets_its_attempts_per_window_then_waits() {
        let mut l = AttemptLimiter::new(limits());
        for s in 0..3 {
            assert_eq!(l.attempt(&"a", at(s)), Ok(()));
        }
        assert_eq!(
            l.attempt(&"a", at(10)),
            Err(RetryAfter(Duration::from_secs(50)))
        );
        // Another peer is not held up by the first…
        assert_eq!(l.attempt(&"b", at(10)), Ok(()));
        // …and the first may try again once its window has passed.
        assert_eq!(l.attempt(&"a", at(60)), Ok(()));
    }

    #[test]
    fn the_edge_takes_a_total_per_window_from_all_peers() {
        let mut l = AttemptLimiter::new(AttemptLimits {
            max_peers: 100,
            ..limits()
        });
        for (i, peer) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(l.attempt(peer, at(i as i64)), Ok(()), "{peer}");
        }
        assert_eq!(
            l.attempt(&"f", at(5)),
            Err(RetryAfter(Duration::from_secs(55)))
        );
        assert_eq!(l.attempt(&"f", at(60)), Ok(()));
    }

    #[test]
    fn the_peers_remembered_stay_bounded() {
        let mut l = AttemptLimiter::new(limits());
        assert_eq!(l.attempt(&"a", at(0)), Ok(()));
        assert_eq!(l.attempt(&"b", at(1)), Ok(()));
        // Full, and both windows open: a third waits for the oldest.
        assert_eq!(
            l.attempt(&"c", at(2)),
            Err(RetryAfter(Duration::from_secs(58)))
        );
        assert_eq!(l.tracked(), 2);
        // Once the windows have passed, the stale peers are forgotten.
        assert_eq!(l.attempt(&"c", at(61)), Ok(()));
        assert!(l.tracked() <= 2);
    }

    #[test]
    fn a_device_is_valid_until_it_expires_or_is_revoked_and_renews_past_half_life() {
        let lifetime = Duration::from_secs(1000);
        let d = Device {
            recipient: R,
            expires_at: at(1000),
            revoked: false,
        };
        for (stored, now, want) in [
            (None, at(0), DeviceCheck::Unknown),
            (
                Some(d),
                at(0),
                DeviceCheck::Valid {
                    recipient: R,
                    renew: false,
                },
            ),
            (
                Some(d),
                at(500),
                DeviceCheck::Valid {
                    recipient: R,
                    renew: false,
                },
            ),
            (
                Some(d),
                at(501),
                DeviceCheck::Valid {
                    recipient: R,
                    renew: true,
                },
            ),
            (Some(d), at(1000), DeviceCheck::Expired),
            (
                Some(Device { revoked: true, ..d }),
                at(1),
                DeviceCheck::Revoked,
            ),
        ] {
            assert_eq!(
                check_device(stored, now, lifetime),
                want,
                "{stored:?} at {now:?}"
            );
        }
        assert_eq!(device_expiry(at(0), lifetime), at(1000));
    }
}
