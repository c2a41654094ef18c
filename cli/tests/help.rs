//! `--help` of every command, compared with `tests/golden/<path>.txt`
//! (`PAHLAWAN_UPDATE_GOLDEN=1` rewrites them): a change to the interface
//! shows in review. Every leaf command's help carries an example; the
//! top-level help documents the exit codes. Completions and the man page
//! are generated from the same definitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn pahlawan(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pahlawan"))
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("PAHLAWAN_TOKEN")
        .env_remove("PAHLAWAN_CA_CERT")
        .output()
        .expect("run pahlawan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path, depth first, with its help text.
fn walk(path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let (code, help) = pahlawan(&args);
    assert_eq!(code, 0, "pahlawan {args:?}");
    let children = subcommands(&help);
    out.push((path.clone(), help));
    for child in children {
        let mut p = path.clone();
        p.push(child);
        walk(p, out);
    }
}

#[test]
fn every_help_text_matches_its_golden_file_and_has_an_example() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("PAHLAWAN_UPDATE_GOLDEN").is_some();
    let mut all = Vec::new();
    walk(Vec::new(), &mut all);
    assert!(all.len() > 40, "found only {} commands", all.len());
    let mut stale = Vec::new();
    for (path, help) in &all {
        let name = if path.is_empty() {
            "pahlawan".to_string()
        } else {
            format!("pahlawan-{}", path.join("-"))
        };
        let file = golden.join(format!("{name}.txt"));
        let leaf = subcommands(help).is_empty();
        if leaf {
            assert!(
                help.contains("Example"),
                "{name}: no example in its help:\n{help}"
            );
        }
        if update {
            std::fs::write(&file, help).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(help.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "help changed for {stale:?}: review, then run with PAHLAWAN_UPDATE_GOLDEN=1"
    );
    let top = &all[0].1;
    for code in [
        "0  success",
        "2  usage",
        "3  not reachable",
        "4  credentials",
    ] {
        assert!(
            top.contains(code),
            "top-level help documents exit code {code}:\n{top}"
        );
    }
    // No golden file without a command (a removed verb leaves none behind).
    let names: Vec<String> = all
        .iter()
        .map(|(p, _)| {
            if p.is_empty() {
                "pahlawan.txt".into()
            } else {
                format!("pahlawan-{}.txt", p.join("-"))
            }
        })
        .collect();
    for entry in std::fs::read_dir(&golden).unwrap() {
        let n = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(names.contains(&n), "tests/golden/{n} belongs to no command");
    }
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script) = pahlawan(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        for verb in ["recipients", "backup", "restore", "dlq", "status"] {
            assert!(script.contains(verb), "{shell} completion lacks {verb}");
        }
    }
    let (code, page) = pahlawan(&["man"]);
    assert_eq!(code, 0);
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "roff: {}",
        &page[..80.min(page.len())]
    );
    assert!(page.contains("restore"));
    let dir = tempfile::tempdir().unwrap();
    let (code, _) = pahlawan(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    for page in [
        "pahlawan.1",
        "pahlawan-status.1",
        "pahlawan-recipients-list.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
    let (code, _) = pahlawan(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error");
}
