//! Verified tokens, remembered until they expire, so an RS256 verification
//! (tens of microseconds) is paid once per token, not once per request.
//! Keyed by the token's SHA-256 (collision-resistant: no token can borrow
//! another's entry); bounded in entries.

use std::collections::HashMap;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use sync_protocol::Timestamp;

use super::FromClaims;

#[derive(Debug)]
pub struct TokenCache<P> {
    max: usize,
    map: Mutex<HashMap<[u8; 32], P>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl<P: FromClaims> TokenCache<P> {
    pub fn new(max: usize) -> TokenCache<P> {
        TokenCache {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The principal of a token verified before and not yet expired.
    pub fn get(&self, token: &str, now: Timestamp) -> Option<P> {
        if self.max == 0 {
            return None;
        }
        let k = key(token);
        let mut map = self.map.lock();
        match map.get(&k) {
            Some(p) if p.expires_at() > now => Some(p.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token. At the bound, expired entries go first;
    /// if that is not enough, everything goes (it is only a cache).
    pub fn insert(&self, token: &str, principal: P, now: Timestamp) {
        if self.max == 0 {
            return;
        }
        let mut map = self.map.lock();
        if map.len() >= self.max {
            map.retain(|_, p| p.expires_at() > now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key(token), principal);
    }

    pub fn clear(&self) {
        self.map.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthError, Claims};

    #[derive(Debug, Clone)]
    struct Expiring(Timestamp);

    impl FromClaims for Expiring {
        fn from_claims(c: Claims) -> Result<Expiring, AuthError> {
            Ok(Expiring(c.expires_at))
        }
        fn expires_at(&self) -> Timestamp {
            self.0
        }
    }

    fn p(exp_ms: i64) -> Expiring {
        Expiring(Timestamp::from_unix_ms(exp_ms))
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let c = TokenCache::new(3);
        let now = Timestamp::from_unix_ms(1_000);
        c.insert("t1", p(2_000), now);
        assert!(c.get("t1", now).is_some());
        assert!(
            c.get("t1", Timestamp::from_unix_ms(2_000)).is_none(),
            "expired at exp"
        );
        for i in 0..10 {
            c.insert(&format!("x{i}"), p(5_000), now);
            assert!(c.len() <= 3);
        }
        assert!(c.get("never", now).is_none());
    }
}
