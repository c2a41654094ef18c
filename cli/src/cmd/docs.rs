//! `pahlawan completions SHELL` and `pahlawan man`: generated from the
//! clap definitions, so they never disagree with `--help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  pahlawan completions bash > /etc/bash_completion.d/pahlawan\n  pahlawan completions zsh > \"${fpath[1]}/_pahlawan\""
)]
pub struct CompletionsArgs {
    /// bash, elvish, fish, powershell or zsh.
    shell: clap_complete::Shell,
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  pahlawan man | man -l -\n  pahlawan man --dir /usr/local/share/man/man1"
)]
pub struct ManArgs {
    /// Write one page per command (pahlawan.1, pahlawan-status.1, …) into
    /// this directory instead of printing the top page.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pahlawan", &mut std::io::stdout());
}

pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = crate::Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("{}", dir.display());
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("writing the man page")?,
    }
    Ok(())
}
