//! The edge box's smoke test (issue 17): a real `pahlawan edge run` on its
//! defaults is started, a provider and a recipient are registered, surplus
//! is posted from several tasks at once, offered to the recipient and
//! claimed by it; then the edge is killed with SIGKILL in the middle of a
//! stream of posts and restarted, and every post that got a 201 is there,
//! the claim with it.
//!
//! In the normal run it tests the binary cargo built for this test. The
//! ARM64 phase (scripts/lib/arm64.sh) runs it against the cross-built box
//! binary under qemu-user:
//!
//! - `PAHLAWAN_SMOKE_BIN`: the `pahlawan` binary to run instead;
//! - `PAHLAWAN_SMOKE_RUNNER`: a command prefix it is run through, split on
//!   whitespace (`qemu-aarch64 -L /usr/aarch64-linux-gnu`). qemu-user
//!   emulates the guest in its own process, so killing the child kills the
//!   edge.
//!
//! Emulated, the edge is 5–20 times slower: every wait here polls, with a
//! deadline only a hang reaches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proc, admin_client, client_as, in_minutes, post};
use edge_node::auth::Role;
use serde_json::{Value, json};

mod common;

/// How long a wait may take before the test fails: long, for an emulated
/// edge on a busy machine.
const SLOW: Duration = Duration::from_secs(600);

/// The program that runs the edge: `PAHLAWAN_SMOKE_BIN` (else the test's
/// own binary), behind `PAHLAWAN_SMOKE_RUNNER` when it is set.
fn program() -> Command {
    let bin = std::env::var_os("PAHLAWAN_SMOKE_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_pahlawan")),
            PathBuf::from,
        );
    let runner = std::env::var("PAHLAWAN_SMOKE_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    match runner.next() {
        Some(first) => {
            let mut c = Command::new(first);
            c.args(runner).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// The edge in `data_dir` on a free port, once it answers `/readyz` 200.
async fn start_edge(data_dir: &Path) -> (Proc, String) {
    let (proc, base) = common::edge_in_program(program(), data_dir, &[]);
    let url = format!("{base}/readyz");
    testkit::eventually_within("the edge to be ready", SLOW, || async {
        let r = reqwest::get(&url).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    (proc, base)
}

fn surplus_body(provider: &str, task: u32, i: u32) -> Value {
    json!({"provider_id": provider, "lat": -6.2 + f64::from(task) * 0.001,
        "lon": 106.816 + f64::from(i % 100) * 0.0005, "quantity_kg": 3.5,
        "food_type": "bakery", "expires_at": in_minutes(240),
        "description": format!("t{task} #{i}")})
}

/// Posts from `tasks` tasks at once, `per_task` each (or, with `None`,
/// until the edge stops answering); the ids that got a 201.
async fn post_from_tasks(
    c: &reqwest::Client,
    base: &str,
    provider: &str,
    tasks: u32,
    per_task: Option<u32>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let (c, url, provider, acked) = (
                c.clone(),
                format!("{base}/api/v1/surplus"),
                provider.to_string(),
                acked.clone(),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    if per_task.is_some_and(|n| i >= n) {
                        break;
                    }
                    match post(&c, url.clone(), surplus_body(&provider, t, i)).await {
                        // (A 201 whose body the kill cut off names no id
                        // to check.)
                        Ok((201, v)) => acked
                            .lock()
                            .unwrap()
                            .extend(v["id"].as_str().map(str::to_string)),
                        // Back-pressure is an answer, not an acknowledgement.
                        Ok((503 | 429, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Ok((s, v)) => panic!("a post got {s}: {v}"),
                        // The edge died: this task is done.
                        Err(_) if per_task.is_none() => break,
                        Err(e) => panic!("a post failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a posting task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_box_starts_matches_claims_and_keeps_every_acknowledged_post_across_kill_9() {
    eprintln!("box smoke: the edge is {:?}", program());
    let dir = tempfile::tempdir().unwrap();
    let (mut edge, base) = start_edge(dir.path()).await;
    let admin = admin_client(dir.path());

    // Register a provider and a recipient as the operator.
    let (s, p) = post(
        &admin,
        format!("{base}/api/v1/providers"),
        json!({"name": "Toko Roti", "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}),
    )
    .await
    .expect("register the provider");
    assert_eq!(s, 201, "{p}");
    let provider = p["id"].as_str().expect("a provider id").to_string();
    let (s, r) = post(
        &admin,
        format!("{base}/api/v1/recipients"),
        json!({"name": "Panti", "lat": -6.21, "lon": 106.82,
        "capacity_kg_per_day": 1_000_000.0, "accepted_food_types": ["bakery"],
        "contact_phone": "+62 21 555 0000", "contact_email": "panti@example.org"}),
    )
    .await
    .expect("register the recipient");
    assert_eq!(s, 201, "{r}");
    let recipient = r["id"].as_str().expect("a recipient id").to_string();

    // Post as the provider, from 8 tasks at once.
    let as_provider = client_as(dir.path(), Role::Provider, &provider);
    let acked = Arc::new(Mutex::new(Vec::new()));
    post_from_tasks(&as_provider, &base, &provider, 8, Some(5), acked.clone()).await;
    let first: Vec<String> = std::mem::take(&mut *acked.lock().unwrap());
    assert_eq!(first.len(), 40, "every post acknowledged");

    // Matched: each is offered to the one recipient that takes bakery.
    let as_recipient = client_as(dir.path(), Role::Ngo, &recipient);
    let offers_url = format!("{base}/api/v1/recipients/{recipient}/offers");
    let offered = testkit::eventually_within("the offers", SLOW, || async {
        let v: Value = as_recipient
            .get(&offers_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let ids: HashSet<String> = v["items"]
            .as_array()?
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_string))
            .collect();
        first.iter().all(|id| ids.contains(id)).then_some(ids)
    })
    .await;
    assert!(offered.len() >= first.len());

    // Claimed by the recipient, accepting the offer.
    let claimed = &first[0];
    let (s, v) = post(
        &as_recipient,
        format!("{base}/api/v1/offers/{claimed}/accept"),
        json!({"recipient_id": recipient}),
    )
    .await
    .expect("accept the offer");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "claimed", "{v}");
    assert_eq!(v["claimed_by"], recipient.as_str(), "{v}");

    // Kill -9 in the middle of a stream of posts.
    let stream = {
        let (c, base, provider, acked) = (
            as_provider.clone(),
            base.clone(),
            provider.clone(),
            acked.clone(),
        );
        tokio::spawn(async move { post_from_tasks(&c, &base, &provider, 8, None, acked).await })
    };
    testkit::eventually_within("posts streaming before the kill", SLOW, || async {
        (acked.lock().unwrap().len() >= 60).then_some(())
    })
    .await;
    edge.kill9();
    stream.await.expect("the stream ends when the edge dies");
    let during: Vec<String> = std::mem::take(&mut *acked.lock().unwrap());
    assert!(during.len() >= 60, "{} posts acknowledged", during.len());

    // Restarted on the same data: every acknowledged post is there...
    let (_edge, base) = start_edge(dir.path()).await;
    for id in first.iter().chain(&during) {
        let r = admin
            .get(format!("{base}/api/v1/surplus/{id}"))
            .send()
            .await
            .expect("get a surplus");
        assert_eq!(r.status(), 200, "acknowledged surplus {id} was lost");
    }
    // ...the claim with it...
    let v: Value = admin
        .get(format!("{base}/api/v1/surplus/{claimed}"))
        .send()
        .await
        .expect("get the claimed surplus")
        .json()
        .await
        .expect("a surplus");
    assert_eq!(v["status"], "claimed", "{v}");
    assert_eq!(v["claimed_by"], recipient.as_str(), "{v}");
    // ...and the edge takes posts again.
    let (s, v) = post(
        &as_provider,
        format!("{base}/api/v1/surplus"),
        surplus_body(&provider, 99, 0),
    )
    .await
    .expect("post after the restart");
    assert_eq!(s, 201, "{v}");
    eprintln!(
        "box smoke: {} posts acknowledged ({} before, {} during the kill -9), all present after the restart",
        first.len() + during.len(),
        first.len(),
        during.len()
    );
}
