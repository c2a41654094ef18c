//! Exit codes, one mapping for every verb: an error carries its class
//! ([`Class`]) anywhere in its chain, and `main` turns it into the code.
//! Documented in `--help` and the README.

use std::process::ExitCode;

/// What kind of failure ended the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Anything else: the edge refused, a file is not what it should be, …
    Failure,
    /// The command line is wrong: a missing or malformed argument.
    Usage,
    /// The edge or hub could not be reached (refused, timed out, no route).
    Unreachable,
    /// Credentials were missing, refused (401) or not enough (403).
    Auth,
}

impl Class {
    pub const fn code(self) -> u8 {
        match self {
            Class::Failure => 1,
            Class::Usage => 2,
            Class::Unreachable => 3,
            Class::Auth => 4,
        }
    }
}

/// The exit codes as `--help` and the README state them.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  \
    0  success\n  \
    1  failure (the edge refused, a file is not what it should be, …)\n  \
    2  usage (a missing or malformed argument)\n  \
    3  not reachable (the edge or hub did not answer)\n  \
    4  credentials missing or refused (401/403)";

/// An error of a known class; its message is the error's.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Classified {
    pub class: Class,
    pub message: String,
}

fn classified(class: Class, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        class,
        message: message.into(),
    })
}

/// A bad argument (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    classified(Class::Usage, message)
}

/// The peer did not answer (exit 3).
pub fn unreachable(message: impl Into<String>) -> anyhow::Error {
    classified(Class::Unreachable, message)
}

/// No usable credentials (exit 4).
pub fn auth(message: impl Into<String>) -> anyhow::Error {
    classified(Class::Auth, message)
}

/// The class of `e`: the first [`Classified`] in its chain, else `Failure`.
pub fn class_of(e: &anyhow::Error) -> Class {
    e.chain()
        .find_map(|c| c.downcast_ref::<Classified>())
        .map_or(Class::Failure, |c| c.class)
}

/// The error and its causes on one line, skipping causes a message already
/// quotes (typed errors often embed their source).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out.replace('\n', " ")
}

/// Prints `error: …` on stderr and gives the exit code of its class.
pub fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(e));
    ExitCode::from(class_of(e).code())
}

/// A clap parse failure as one line (exit 2); `--help` and `--version` print
/// as clap does (exit 0).
pub fn report_parse(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(Class::Usage.code())
        } else {
            ExitCode::SUCCESS
        };
    }
    // clap's message runs to the usage lines: keep what comes before, on one line.
    let text = e.render().to_string();
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let joined = said.join(" ");
    let first = joined.strip_prefix("error: ").unwrap_or(&joined);
    let first = if first.is_empty() {
        "invalid arguments"
    } else {
        first
    };
    eprintln!("error: {first} (see --help)");
    ExitCode::from(Class::Usage.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_anywhere_in_the_chain_decides_the_code() {
        let e = unreachable("no answer").context("status");
        assert_eq!(class_of(&e), Class::Unreachable);
        assert_eq!(class_of(&anyhow::anyhow!("plain")), Class::Failure);
        assert_eq!(one_line(&e), "status: no answer");
        let codes: Vec<u8> = [
            Class::Failure,
            Class::Usage,
            Class::Unreachable,
            Class::Auth,
        ]
        .map(Class::code)
        .into();
        assert_eq!(codes, [1, 2, 3, 4]);
    }
}
