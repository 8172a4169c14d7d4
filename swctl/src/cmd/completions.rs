//! `swctl completions SHELL` and `swctl man`.

use std::io::Write;

use clap::CommandFactory;

use crate::Error;
use crate::cli::Cli;

/// Print completions for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "swctl", &mut std::io::stdout());
    Ok(())
}

/// Print the man page on stdout.
pub fn man(dir: Option<&std::path::Path>) -> Result<(), Error> {
    if let Some(dir) = dir {
        clap_mangen::generate_to(Cli::command(), dir)
            .map_err(|e| Error::InvalidFile(format!("{}: {e}", dir.display())))?;
        println!("man pages written to {}", dir.display());
        return Ok(());
    }
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
        .render(&mut buf)
        .map_err(anyhow::Error::from)?;
    std::io::stdout()
        .write_all(&buf)
        .map_err(anyhow::Error::from)?;
    Ok(())
}
