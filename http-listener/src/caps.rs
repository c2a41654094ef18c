//! Connection caps, enforced at accept time: a total and a per-address
//! count, one slot per open connection, given back when it closes. And the
//! file-descriptor budget the total cap is derived from.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a connection was refused at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its total cap of connections.
    Total,
    /// This client address holds its cap.
    PerAddress,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total_cap",
            Refusal::PerAddress => "address_cap",
        }
    }
}

/// The key connections are counted under: the IPv4 address, or the /64 of
/// an IPv6 one (a single client is handed a whole /64). An IPv4-mapped IPv6
/// address counts as its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    /// Only addresses holding a connection: at most `open` entries.
    by_key: HashMap<IpAddr, usize>,
}

/// The caps of one server (all its listeners together).
#[derive(Debug)]
pub struct Caps {
    total: usize,
    per_address: usize,
    counts: Mutex<Counts>,
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<Caps>,
    key: IpAddr,
}

impl Caps {
    pub fn new(total: usize, per_address: usize) -> Arc<Caps> {
        Arc::new(Caps {
            total,
            per_address,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn open(&self) -> usize {
        self.counts.lock().open
    }

    /// A slot for a connection from `ip`, or why not.
    pub fn admit(self: &Arc<Caps>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = client_key(ip);
        let mut c = self.counts.lock();
        if c.open >= self.total {
            return Err(Refusal::Total);
        }
        let held = c.by_key.entry(key).or_insert(0);
        if *held >= self.per_address {
            return Err(Refusal::PerAddress);
        }
        *held += 1;
        c.open += 1;
        debug_assert!(c.by_key.len() <= c.open);
        Ok(Slot {
            caps: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.caps.counts.lock();
        c.open -= 1;
        if let Some(held) = c.by_key.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                c.by_key.remove(&self.key);
            }
        }
    }
}

/// The process's open-file limit, before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (idempotent) and says
/// what it is now. An unlimited hard limit is taken as 1,048,576.
pub fn raise_nofile() -> FdLimit {
    use rustix::process::{Resource, getrlimit, setrlimit};
    const UNLIMITED_AS: u64 = 1 << 20;
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(UNLIMITED_AS);
    let soft_before = now.current.unwrap_or(hard);
    let mut soft = soft_before;
    if soft_before < hard {
        let wanted = rustix::process::Rlimit {
            current: Some(hard),
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => soft = hard,
            Err(e) => {
                tracing::warn!(error = %e, soft_before, hard, "could not raise the open-file limit")
            }
        }
    }
    FdLimit {
        soft_before,
        soft,
        hard,
    }
}

/// The total connection cap in effect: the configured one, but never more
/// than the file descriptors left after `reserved` (and at least one).
pub fn effective_total(configured: usize, soft_limit: u64, reserved: u64) -> usize {
    let room = usize::try_from(soft_limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_total_and_per_address_caps_refuse_and_freed_slots_are_reused() {
        let caps = Caps::new(3, 2);
        let a1 = caps.admit(ip("10.0.0.1")).expect("first");
        let _a2 = caps.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(caps.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        let b1 = caps.admit(ip("10.0.0.2")).expect("another address");
        assert_eq!(caps.admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        drop(b1);
        let _c1 = caps.admit(ip("10.0.0.3")).expect("a freed slot is reused");
        drop(a1);
        let _a3 = caps
            .admit(ip("10.0.0.1"))
            .expect("the address's freed slot");
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn forgotten_addresses_leave_no_entry() {
        let caps = Caps::new(10, 10);
        for i in 0..5 {
            drop(caps.admit(ip(&format!("10.0.0.{i}"))).expect("admit"));
        }
        assert_eq!(caps.counts.lock().by_key.len(), 0);
        assert_eq!(caps.open(), 0);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_slash_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        let caps = Caps::new(10, 1);
        let _a = caps.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            caps.admit(ip("2001:db8:1:2::ffff")).err(),
            Some(Refusal::PerAddress)
        );
        caps.admit(ip("2001:db8:1:3::1")).expect("another /64");
    }

    #[test]
    fn the_total_cap_keeps_the_reserve_free() {
        assert_eq!(effective_total(16_384, 1_024, 256), 768);
        assert_eq!(effective_total(500, 1_048_576, 256), 500);
        assert_eq!(effective_total(500, 100, 256), 1, "never zero");
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let l = raise_nofile();
        assert!(l.soft >= l.soft_before);
        assert_eq!(raise_nofile().soft, l.soft, "idempotent");
        assert!(l.soft <= l.hard);
    }
}
