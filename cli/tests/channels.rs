//! `pahlawan recipients channels add|list|remove` against a real
//! `pahlawan edge run`: a webhook with its secret shown once, the listing
//! as a table and as the API's JSON, the edge's refusals (no SMS gateway,
//! no such channel) and bad command lines, each one line on stderr with its
//! documented exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// (exit code, stdout, stderr) of `pahlawan ARGS`.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("PAHLAWAN_TOKEN")
        .env_remove("PAHLAWAN_CA_CERT")
        // The test is about an edge without an SMS/WhatsApp gateway.
        .env_remove("PAHLAWAN_EDGE_NOTIFY__SMS__AUTH_TOKEN")
        .output()
        .expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> (String, String) {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "pahlawan {args:?}: {err}");
    (out, err)
}

fn json_of(args: &[&str]) -> Value {
    let (out, _) = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// Exit `code`, nothing on stdout, and one line on stderr starting
/// `error: ` that mentions every needle.
fn assert_refused(args: &[&str], code: i32, needles: &[&str]) {
    let (got, out, err) = run(args);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err:?}");
    for n in needles {
        assert!(lines[0].contains(n), "{args:?}: {err:?} should mention {n}");
    }
    assert!(out.is_empty(), "{args:?}: nothing on stdout, got {out:?}");
    assert_eq!(got, code, "{args:?}: exit code ({err})");
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn channels_are_added_listed_and_removed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let edge = Proc::spawn(&["edge", "run", "--data-dir", data, "--listen", "127.0.0.1:0"]);
    let base = edge
        .banner
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let at = |args: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        v.extend([
            "--url".into(),
            base.clone(),
            "--data-dir".into(),
            data.into(),
        ]);
        v
    };

    // A food bank, registered through the CLI too.
    let mut add_recipient = at(&[
        "recipients",
        "add",
        "--name",
        "Bank Makanan",
        "--lat",
        "-6.21",
        "--lon",
        "106.82",
        "--capacity-kg-per-day",
        "500",
        "--food-types",
        "bakery",
        "--phone",
        "+62 21 555 9876",
        "--email",
        "b@example.org",
    ]);
    add_recipient.push("--json".into());
    let recipient = json_of(&refs(&add_recipient));
    let rid = recipient["id"].as_str().unwrap().to_string();
    let with = |head: &[&'static str], tail: &[&str]| -> Vec<String> {
        let mut v = at(head);
        v.extend(tail.iter().map(|t| (*t).to_string()));
        v
    };

    // A webhook: the channel and its secret on stdout, "shown once" on stderr.
    let hook = "http://127.0.0.1:9/pahlawan/hook";
    let (out, err) = ok(&refs(&with(
        &["recipients", "channels", "add"],
        &[&rid, "--webhook", hook],
    )));
    let secret_line = out
        .lines()
        .find(|l| l.starts_with("secret "))
        .unwrap_or_else(|| panic!("no secret in {out}"));
    let secret = secret_line.split_whitespace().nth(1).unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("kind ") && l.ends_with(" webhook")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("url ") && l.ends_with(hook)),
        "{out}"
    );
    assert!(out.contains(&rid), "{out}");
    assert!(err.contains("shown this once"), "{err}");
    let hook_id = out
        .lines()
        .find(|l| l.starts_with("id "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::try_parse(&hook_id).is_ok(), "{out}");

    // With --json: the API's fields, the secret among them.
    let mut add_json = with(
        &["recipients", "channels", "add"],
        &[&rid, "--webhook", "http://localhost:9/second"],
    );
    add_json.push("--json".into());
    let second = json_of(&refs(&add_json));
    assert_eq!(second["kind"], "webhook");
    assert_eq!(second["recipient_id"], rid.as_str());
    assert!(
        second["secret"].as_str().unwrap().starts_with("whsec_"),
        "{second}"
    );
    assert_ne!(
        second["secret"].as_str().unwrap(),
        secret,
        "a secret per channel"
    );
    let second_id = second["id"].as_str().unwrap().to_string();

    // The listing: a header and a row each, never a secret.
    let (table, _) = ok(&refs(&with(&["recipients", "channels", "list"], &[&rid])));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("KIND"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&hook_id) && lines[1].ends_with(hook),
        "{table}"
    );
    assert!(lines[2].starts_with(&second_id), "{table}");
    assert!(!table.contains("whsec_"), "{table}");
    let mut list_json = with(&["recipients", "channels", "list"], &[&rid]);
    list_json.push("--json".into());
    let listed = json_of(&refs(&list_json));
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert_eq!(items[0]["id"], hook_id.as_str());
    assert_eq!(items[0]["url"], hook);
    assert_eq!(items[0].get("secret"), None, "{listed}");

    // SMS and WhatsApp: this edge has no gateway, and says so in one line.
    for (flag, phone) in [
        ("--sms", "+6281234567890"),
        ("--whatsapp", "+6281234567891"),
    ] {
        assert_refused(
            &refs(&with(
                &["recipients", "channels", "add"],
                &[&rid, flag, phone],
            )),
            1,
            &["422", "gateway_not_configured"],
        );
    }
    // The edge's other refusals: a bad URL, an unknown recipient.
    assert_refused(
        &refs(&with(
            &["recipients", "channels", "add"],
            &[&rid, "--webhook", "ftp://foodbank.example/x"],
        )),
        1,
        &["422", "invalid_url"],
    );
    let nobody = "0190c3e2-0000-7c3d-9e4f-5a6b7c8d9e0f";
    assert_refused(
        &refs(&with(&["recipients", "channels", "list"], &[nobody])),
        1,
        &["404", "not_found"],
    );

    // Remove both; the listing is empty; removing again is the edge's 404.
    for id in [&hook_id, &second_id] {
        let (out, _) = ok(&refs(&with(
            &["recipients", "channels", "remove"],
            &[&rid, id],
        )));
        assert_eq!(out, format!("removed {id}\n"));
    }
    let (table, _) = ok(&refs(&with(&["recipients", "channels", "list"], &[&rid])));
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
    let listed = json_of(&refs(&list_json));
    assert_eq!(listed["items"], Value::Array(vec![]), "{listed}");
    assert_refused(
        &refs(&with(
            &["recipients", "channels", "remove"],
            &[&rid, &hook_id],
        )),
        1,
        &["404", "not_found", "channel"],
    );

    // Bad command lines are usage errors (2), refused before any request:
    // the edge named here does not listen, and the data directory has no key.
    let nowhere = dir.path().join("nowhere");
    let nowhere = nowhere.to_str().unwrap();
    let offline = |tail: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = tail.iter().map(|t| (*t).to_string()).collect();
        v.extend([
            "--url".into(),
            "http://127.0.0.1:1".into(),
            "--data-dir".into(),
            nowhere.into(),
        ]);
        v
    };
    for (cmd, needles) in [
        (
            vec![
                "recipients",
                "channels",
                "add",
                "not-a-uuid",
                "--webhook",
                hook,
            ],
            vec!["not-a-uuid", "UUID"],
        ),
        (
            vec!["recipients", "channels", "list", "12345"],
            vec!["12345", "UUID"],
        ),
        (
            vec!["recipients", "channels", "remove", "nope", &hook_id],
            vec!["nope", "UUID"],
        ),
        (
            vec!["recipients", "channels", "remove", &rid, "nope"],
            vec!["nope", "channel id"],
        ),
        (
            vec![
                "recipients",
                "channels",
                "add",
                &rid,
                "--webhook",
                hook,
                "--sms",
                "+6281234567890",
            ],
            vec!["--webhook", "--sms", "cannot be used with"],
        ),
        (
            vec!["recipients", "channels", "add", &rid],
            vec!["--webhook", "--sms", "--whatsapp"],
        ),
    ] {
        assert_refused(&refs(&offline(&cmd)), 2, &needles);
    }
    assert!(
        !std::path::Path::new(nowhere).exists(),
        "nothing was made for the refused command lines"
    );

    // Channels are the recipients' only: providers have no such verb.
    let (code, _, err) = run(&["providers", "channels", "list", &rid]);
    assert_eq!(code, 2, "{err}");
    drop(edge);
}
