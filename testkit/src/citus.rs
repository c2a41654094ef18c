//! A fresh database on a Citus cluster — a coordinator and two workers, each
//! its own PostgreSQL on a loopback port. The cluster is the one the test
//! command started (`PAHLAWAN_CITUS_COORDINATOR`, `PAHLAWAN_CITUS_WORKERS`,
//! see `scripts/lib/citus.sh`), or else one this process starts from the
//! installed Citus and removes when the last handle drops. A test that stops
//! nodes starts a [`CitusCluster`] of its own.
//!
//! Each fresh database exists on all three nodes with the `citus` extension,
//! the workers added from the coordinator, and `citus.shard_count` set to
//! [`TEST_SHARD_COUNT`] so that distributing the schema stays quick; it is
//! dropped from every node when its handle drops.
//!
//! With `PAHLAWAN_TEST_DB=citus`, [`crate::pg::fresh_database`] gives these
//! databases, so the hub's tests run unchanged on the cluster.

use std::sync::{Arc, Mutex, Weak};

use crate::pg::{Cluster, TestDb};

/// Shards per distributed table in test databases (Citus's default is 32).
pub const TEST_SHARD_COUNT: u32 = 4;

/// An arbitrary constant: the advisory lock test databases take turns on
/// while adding their nodes.
const ADD_NODE_LOCK: i64 = 0x6369_7475_735f_6164;

/// Settings every node of a throwaway cluster gets.
pub fn node_settings() -> Vec<String> {
    [
        "shared_preload_libraries=citus",
        "max_prepared_transactions=200",
        "max_worker_processes=64",
        // After a node is killed, its in-doubt prepared transactions (which
        // hold row locks) are resolved within a second, not a minute.
        "citus.recover_2pc_interval=1s",
    ]
    .map(String::from)
    .to_vec()
}

/// Whether the hub's tests are to run on Citus (`PAHLAWAN_TEST_DB=citus`).
pub fn wanted() -> bool {
    std::env::var("PAHLAWAN_TEST_DB").is_ok_and(|v| v == "citus")
}

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.host, self.port
        )
    }
}

/// A coordinator and its workers.
pub struct CitusCluster {
    pub coordinator: NodeAddr,
    pub workers: Vec<NodeAddr>,
    /// The servers, when this process started them: coordinator first.
    servers: Vec<Cluster>,
}

impl CitusCluster {
    /// Starts three servers of this process's own (the installed Citus).
    pub fn start() -> Result<CitusCluster, String> {
        let lib = std::path::Path::new("/usr/lib/postgresql");
        let installed = std::fs::read_dir(lib)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("lib").join("citus.so").exists());
        if !installed {
            return Err(
                "Citus is not installed: `./scripts/test` builds and installs it \
                        (scripts/lib/citus.sh, from third_party/citus)"
                    .into(),
            );
        }
        let servers = (0..3)
            .map(|_| Cluster::start(&node_settings()))
            .collect::<Result<Vec<_>, _>>()?;
        let addr = |c: &Cluster| NodeAddr {
            host: "127.0.0.1".into(),
            port: c.port(),
        };
        Ok(CitusCluster {
            coordinator: addr(&servers[0]),
            workers: servers[1..].iter().map(addr).collect(),
            servers,
        })
    }

    /// The cluster the test command started, if it did.
    pub fn from_env() -> Option<Result<CitusCluster, String>> {
        let coordinator = std::env::var("PAHLAWAN_CITUS_COORDINATOR").ok()?;
        let workers = std::env::var("PAHLAWAN_CITUS_WORKERS").unwrap_or_default();
        Some(parse_env(&coordinator, &workers))
    }

    /// Node `i` of a cluster this process started: 0 is the coordinator.
    pub fn server(&self, i: usize) -> Option<&Cluster> {
        self.servers.get(i)
    }

    fn nodes(&self) -> impl Iterator<Item = &NodeAddr> {
        std::iter::once(&self.coordinator).chain(&self.workers)
    }

    /// A new database on every node, the workers added from the coordinator.
    pub async fn fresh_database(self: &Arc<Self>) -> TestDb {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let created = futures::future::join_all(self.nodes().map(|n| create_on(n, &name))).await;
        for (node, result) in self.nodes().zip(created) {
            if let Err(e) = result {
                panic!("creating {name} on {}:{}: {e:?}", node.host, node.port);
            }
        }
        let url = self.coordinator.url(&name);
        let c = crate::pg::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {name} on the coordinator: {e}"));
        // Adding a node also syncs roles, which live in a catalog shared by
        // every database: two tests adding nodes at once would collide
        // ("tuple concurrently updated"). An advisory lock in the
        // coordinator's `postgres` database takes turns.
        let turns = crate::pg::connect(&self.coordinator.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connecting to the coordinator: {e}"));
        turns
            .execute("SELECT pg_advisory_lock($1)", &[&ADD_NODE_LOCK])
            .await
            .unwrap_or_else(|e| panic!("taking the add-node lock: {e:?}"));
        c.execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            &[&self.coordinator.host, &i32::from(self.coordinator.port)],
        )
        .await
        .unwrap_or_else(|e| panic!("citus_set_coordinator_host: {e:?}"));
        for w in &self.workers {
            c.execute(
                "SELECT citus_add_node($1, $2)",
                &[&w.host, &i32::from(w.port)],
            )
            .await
            .unwrap_or_else(|e| panic!("citus_add_node {}:{}: {e:?}", w.host, w.port));
        }
        turns
            .execute("SELECT pg_advisory_unlock($1)", &[&ADD_NODE_LOCK])
            .await
            .unwrap_or_else(|e| panic!("releasing the add-node lock: {e:?}"));
        c.batch_execute(&format!(
            "ALTER DATABASE {name} SET citus.shard_count = {TEST_SHARD_COUNT}"
        ))
        .await
        .unwrap_or_else(|e| panic!("setting citus.shard_count: {e}"));
        TestDb {
            url,
            admin_url: self.coordinator.url("postgres"),
            worker_urls: self.workers.iter().map(|w| w.url(&name)).collect(),
            _keep: Some(Arc::new(Dropper {
                cluster: self.clone(),
                name: name.clone(),
            })),
            name,
        }
    }
}

fn parse_env(coordinator: &str, workers: &str) -> Result<CitusCluster, String> {
    let cfg: tokio_postgres::Config = coordinator
        .parse()
        .map_err(|e| format!("PAHLAWAN_CITUS_COORDINATOR: {e}"))?;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("PAHLAWAN_CITUS_COORDINATOR names no TCP host".into()),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let workers = workers
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (h, p) = w
                .rsplit_once(':')
                .ok_or_else(|| format!("PAHLAWAN_CITUS_WORKERS: {w:?} is not host:port"))?;
            let port = p
                .parse()
                .map_err(|_| format!("PAHLAWAN_CITUS_WORKERS: bad port in {w:?}"))?;
            Ok(NodeAddr {
                host: h.to_string(),
                port,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if workers.is_empty() {
        return Err("PAHLAWAN_CITUS_WORKERS names no worker".into());
    }
    Ok(CitusCluster {
        coordinator: NodeAddr { host, port },
        workers,
        servers: Vec::new(),
    })
}

async fn create_on(node: &NodeAddr, name: &str) -> Result<(), tokio_postgres::Error> {
    let admin = crate::pg::connect(&node.url("postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let db = crate::pg::connect(&node.url(name)).await?;
    db.batch_execute("CREATE EXTENSION citus").await?;
    Ok(())
}

/// Drops a test database from every node (its maintenance daemons would
/// otherwise pile up on a long-lived cluster).
struct Dropper {
    cluster: Arc<CitusCluster>,
    name: String,
}

impl Drop for Dropper {
    fn drop(&mut self) {
        let nodes: Vec<NodeAddr> = self.cluster.nodes().cloned().collect();
        let name = self.name.clone();
        // Drop may run inside a runtime or outside one: a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for n in nodes {
                    if let Ok(c) = crate::pg::connect(&n.url("postgres")).await {
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

static SHARED: Mutex<Weak<CitusCluster>> = Mutex::new(Weak::new());

fn shared_cluster() -> Result<Arc<CitusCluster>, String> {
    let mut slot = SHARED.lock().map_err(|_| "poisoned".to_string())?;
    if let Some(c) = slot.upgrade() {
        return Ok(c);
    }
    let c = Arc::new(match CitusCluster::from_env() {
        Some(from_env) => from_env?,
        None => CitusCluster::start()?,
    });
    *slot = Arc::downgrade(&c);
    Ok(c)
}

/// A fresh database on the shared cluster (the test command's, or this
/// process's own).
pub async fn fresh_database() -> TestDb {
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .expect("cluster task")
        .unwrap_or_else(|e| panic!("no Citus cluster: {e}"));
    cluster.fresh_database().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_commands_cluster_is_read_from_the_environment() {
        let c = parse_env(
            "postgres://postgres@127.0.0.1:5433/postgres",
            "127.0.0.1:5434,localhost:5435",
        )
        .unwrap();
        assert_eq!(c.coordinator.port, 5433);
        assert_eq!(
            c.workers,
            vec![
                NodeAddr {
                    host: "127.0.0.1".into(),
                    port: 5434
                },
                NodeAddr {
                    host: "localhost".into(),
                    port: 5435
                }
            ]
        );
        for (coordinator, workers, needle) in [
            ("postgres://h:5433/p", "", "no worker"),
            ("postgres://h:5433/p", "h", "not host:port"),
            ("postgres://h:5433/p", "h:x", "bad port"),
            ("host=/tmp port=5", "h:1", "no TCP host"),
        ] {
            match parse_env(coordinator, workers) {
                Ok(_) => panic!("{coordinator} {workers} accepted"),
                Err(e) => assert!(e.contains(needle), "{e}"),
            }
        }
    }
}
