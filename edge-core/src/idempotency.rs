//! `Idempotency-Key` replay: a post retried with the same key gets the
//! surplus the first one made, never a duplicate; the same key with a
//! different request is refused. I/O-free: the shell looks the key up (and
//! stores it after a fresh post, in the same transaction) and asks
//! [`decide`] what to answer.

use sync_protocol::SurplusId;

/// A key as stored with the first request that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredKey {
    /// [`Fingerprint`] of the first request's body.
    pub fingerprint: u64,
    /// The surplus the first request made.
    pub surplus_id: SurplusId,
}

/// What to do with a post carrying an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The key is new: post, and store the key with the surplus made.
    Fresh,
    /// The same request again: answer with this surplus as it stands now.
    Replay(SurplusId),
    /// The key was used before with a different request: refuse (422).
    KeyReused,
}

/// The answer to a post whose key was stored as `stored` (if at all) and
/// whose body has fingerprint `fingerprint`.
pub fn decide(stored: Option<StoredKey>, fingerprint: u64) -> Replay {
    match stored {
        None => Replay::Fresh,
        Some(k) if k.fingerprint == fingerprint => Replay::Replay(k.surplus_id),
        Some(_) => Replay::KeyReused,
    }
}

/// A stable 64-bit fingerprint of a request (FNV-1a over its fields, fed in
/// a fixed order), so a key reused with a different body is caught. Stored
/// with the key: changing the function would make every stored key look
/// reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Fingerprint {
        Fingerprint::new()
    }
}

impl Fingerprint {
    pub const fn new() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds one field's bytes.
    #[must_use]
    pub fn feed(mut self, bytes: &[u8]) -> Fingerprint {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: SurplusId = SurplusId::from_bytes([1; 16]);

    #[test]
    fn a_new_key_posts_the_same_request_replays_another_is_refused() {
        let stored = StoredKey {
            fingerprint: 42,
            surplus_id: S1,
        };
        for (stored, fingerprint, want) in [
            (None, 42, Replay::Fresh),
            (Some(stored), 42, Replay::Replay(S1)),
            (Some(stored), 43, Replay::KeyReused),
        ] {
            assert_eq!(
                decide(stored, fingerprint),
                want,
                "{stored:?} {fingerprint}"
            );
        }
    }

    #[test]
    fn the_fingerprint_is_fnv1a_and_order_matters() {
        // FNV-1a's published test vectors: "" and "a".
        assert_eq!(Fingerprint::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            Fingerprint::new().feed(b"a").finish(),
            0xaf63_dc4c_8601_ec8c
        );
        let ab = Fingerprint::new().feed(b"a").feed(b"b").finish();
        let ba = Fingerprint::new().feed(b"b").feed(b"a").finish();
        assert_ne!(ab, ba);
        assert_eq!(
            ab,
            Fingerprint::new().feed(b"ab").finish(),
            "fields are concatenated"
        );
    }
}
