//! The edge's layering, checked from its source: each module of `src/` may
//! use (`crate::…`) only modules of a lower layer, so there are no module
//! cycles and no lower layer reaches up; and the core crate depends only on
//! pure crates. ARCHITECTURE.md draws the same table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, lowest first. A module may use modules of lower layers only.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &["keyfiles", "clock", "ids", "cells", "commands", "pool"],
    ),
    (
        "keys and routing",
        &["pii", "routing", "twilio", "web_push"],
    ),
    (
        "auth and configuration",
        &["auth", "config", "standard_webhooks"],
    ),
    ("sizing", &["budget"]),
    ("admission", &["ratelimit"]),
    ("store", &["store", "read_model"]),
    ("telemetry", &["metrics"]),
    ("ports and publishing", &["ports", "publish"]),
    ("outer shells", &["api", "sync", "notify", "systemd"]),
    ("chores", &["housekeeping"]),
    ("wiring", &["service"]),
];

/// The module a source file belongs to (`src/store/writer/mod.rs` → `store`).
fn module_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::x` paths used outside test modules, by module.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let module = module_of(rel);
            if module == "lib" || rel.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Code only: not test modules, not comments (doc links name
            // modules they do not use).
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            let used = out.entry(module.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != module {
                    used.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn each_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, ms))| ms.iter().map(move |m| (*m, i)))
        .collect();
    let mut wrong = Vec::new();
    for (module, used) in uses(&src) {
        let Some(&mine) = rank.get(module.as_str()) else {
            wrong.push(format!(
                "`{module}` is in no layer: add it to LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for other in used {
            match rank.get(other.as_str()) {
                Some(&theirs) if theirs < mine => {}
                Some(&theirs) => wrong.push(format!(
                    "`{module}` ({}) uses `{other}` ({}), which is not below it",
                    LAYERS[mine].0, LAYERS[theirs].0
                )),
                None => wrong.push(format!("`{module}` uses `{other}`, which is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_core_crate_depends_only_on_pure_crates() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-core/Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let deps = text
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let names: BTreeSet<&str> = deps
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    let pure = BTreeSet::from(["sync-protocol", "rstar", "serde"]);
    assert!(
        names.is_subset(&pure),
        "edge-core depends on {names:?}; only {pure:?} keep it free of I/O"
    );
}
