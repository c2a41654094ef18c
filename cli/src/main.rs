//! `pahlawan`: the command line. This file parses arguments, sets up
//! logging and turns the outcome into one line and an exit code
//! ([`exit`]); the verbs live in [`cmd`], one module per group.

use std::process::ExitCode;

use clap::Parser;
use pahlawan_cli::{client, exit};

mod cmd;
mod fleet_bench;
mod hub_tokens;
mod logging;
mod output;
mod sync_bench;

#[derive(Parser)]
#[command(
    name = "pahlawan",
    version,
    about = "Pahlawan Pangan: real-time food-surplus redistribution",
    after_help = exit::EXIT_CODES_HELP,
)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    /// Print what a reading verb shows as JSON (stable field names: the
    /// edge API's, see its OpenAPI document) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::report_parse(&e),
    };
    let level = if cli.command.is_quiet() {
        "error"
    } else {
        "info"
    };
    let tracer = logging::init_logging(cli.log_format, level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = output::Out { json: cli.json };
    let outcome = runtime.block_on(cmd::run(cli.command, out));
    if let Some(provider) = tracer {
        // Whatever is batched goes out before the process ends.
        let _ = provider.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
