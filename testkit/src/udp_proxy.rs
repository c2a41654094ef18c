//! A UDP proxy on loopback that injects faults between an edge and the hub:
//! drop, delay, reorder, and full partitions, changeable while it runs.
//! Each client address gets its own upstream socket, so replies find their way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

/// What the proxy does to each datagram, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Drop this fraction of datagrams.
    pub drop: f64,
    /// Delay each datagram by a uniform random time in this range (ms).
    pub delay_ms: (u64, u64),
    /// Delay this fraction further (0–50 ms), so they arrive out of order.
    pub reorder: f64,
    /// Drop everything.
    pub partitioned: bool,
}

pub struct UdpProxy {
    addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<UdpProxy> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = socket.local_addr()?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let task = tokio::spawn(pump(socket, upstream, faults.clone(), seed));
        Ok(UdpProxy { addr, faults, task })
    }

    /// Where the edge should send its packets.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, f: Faults) {
        *self.faults.lock() = f;
    }

    pub fn partition(&self, on: bool) {
        self.faults.lock().partitioned = on;
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `buf` to `to` from `via`, after the faults have had their say.
fn forward(via: Arc<UdpSocket>, to: SocketAddr, buf: Vec<u8>, f: Faults, rng: &mut SmallRng) {
    if f.partitioned || rng.random_bool(f.drop.clamp(0.0, 1.0)) {
        return;
    }
    let mut delay = if f.delay_ms.1 > f.delay_ms.0 {
        rng.random_range(f.delay_ms.0..f.delay_ms.1)
    } else {
        f.delay_ms.0
    };
    if rng.random_bool(f.reorder.clamp(0.0, 1.0)) {
        delay += rng.random_range(0..50);
    }
    if delay == 0 {
        let _ = via.try_send_to(&buf, to);
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        let _ = via.send_to(&buf, to).await;
    });
}

async fn pump(front: Arc<UdpSocket>, upstream: SocketAddr, faults: Arc<Mutex<Faults>>, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut routes: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let back = match routes.get(&client) {
            Some(s) => s.clone(),
            None => {
                let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let s = Arc::new(s);
                routes.insert(client, s.clone());
                tokio::spawn(reverse(
                    s.clone(),
                    front.clone(),
                    client,
                    faults.clone(),
                    seed ^ 0x5eed,
                ));
                s
            }
        };
        let f = *faults.lock();
        forward(back, upstream, buf[..n].to_vec(), f, &mut rng);
    }
}

/// Upstream → client for one client.
async fn reverse(
    back: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, _)) = back.recv_from(&mut buf).await else {
            return;
        };
        let f = *faults.lock();
        forward(front.clone(), client, buf[..n].to_vec(), f, &mut rng);
    }
}
