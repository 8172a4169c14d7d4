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
pub fn man() -> Result<(), Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(anyhow::Error::from)?;
    std::io::stdout()
        .write_all(&buf)
        .map_err(anyhow::Error::from)?;
    Ok(())
}
