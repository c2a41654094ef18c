//! UUID v7 generation: time-ordered ids from the edge's clock plus random
//! bits. Seeded for `simulate`, so the same seed gives the same ids.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use sync_protocol::Timestamp;
use uuid::{Builder, Uuid};

#[derive(Debug)]
pub struct IdGen {
    rng: SmallRng,
}

impl IdGen {
    pub fn from_entropy() -> IdGen {
        IdGen {
            rng: SmallRng::from_os_rng(),
        }
    }

    pub fn seeded(seed: u64) -> IdGen {
        IdGen {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn next(&mut self, now: Timestamp) -> Uuid {
        let mut random = [0u8; 10];
        self.rng.fill_bytes(&mut random);
        let ms = u64::try_from(now.unix_ms()).unwrap_or(0);
        Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_and_carry_the_time() {
        let t = Timestamp::from_unix_ms(1_795_539_600_000);
        let (mut a, mut b) = (IdGen::seeded(7), IdGen::seeded(7));
        let (x, y) = (a.next(t), b.next(t));
        assert_eq!(x, y);
        assert_eq!(x.get_version_num(), 7);
        let (secs, _) = x.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(secs, 1_795_539_600);
        assert_ne!(a.next(t), x);
    }
}
