//! Outside tools the end-to-end checks run (promtool, systemd-analyze,
//! schemathesis): found, or — under `CI=true` — a failed check, since
//! `scripts/test` installs every one of them. Elsewhere a missing tool skips
//! its check, loudly.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// Whether this is a CI run (`CI=true`, as CI services set it), where every
/// tool must be there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.trim(), "true" | "1"))
}

/// `program` if `program --version` runs. If it does not: under CI, a panic
/// naming the tool and how `scripts/test` installs it; elsewhere `None`
/// after a warning on stderr that the check is skipped.
pub fn outside_tool(program: impl Into<OsString>, check: &str, install: &str) -> Option<OsString> {
    match probe(program.into()) {
        Ok(program) => Some(program),
        Err(problem) => missing(check, &problem, install, in_ci()),
    }
}

/// `program`, if `program --version` runs and succeeds; else why not.
pub fn probe(program: OsString) -> Result<OsString, String> {
    let shown = program.to_string_lossy().into_owned();
    match Command::new(&program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(program),
        Ok(out) => Err(format!(
            "`{shown} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{shown} cannot be run: {e}")),
    }
}

/// What a missing tool does to its check: fails it under CI, else skips
/// it loudly.
pub fn missing(check: &str, problem: &str, install: &str, ci: bool) -> Option<OsString> {
    assert!(
        !ci,
        "{check}: {problem}; CI=true, where every tool must be there: {install}"
    );
    eprintln!("\n*** SKIPPED: {check}: {problem}. {install} (under CI=true this fails.) ***\n");
    None
}

/// Schemathesis' `st`: `$PAHLAWAN_SCHEMATHESIS`, else the virtualenv
/// `scripts/test` makes under `${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan`,
/// else `st` on `PATH`.
pub fn schemathesis_program() -> OsString {
    if let Some(p) = std::env::var_os("PAHLAWAN_SCHEMATHESIS") {
        return p;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(st) = cache.map(|c| c.join("pahlawan/venv/bin/st"))
        && st.exists()
    {
        return st.into_os_string();
    }
    OsString::from("st")
}
