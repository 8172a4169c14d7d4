//! One module per subcommand, dispatched from here.

mod completions;
mod status;

use crate::Error;
use crate::cli::{Cli, Command};
use crate::connect::Host;

/// Run the command.
pub async fn dispatch(cli: Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Status => status::run(&hosts(&cli)?, cli.output).await,
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man => completions::man(),
        other => Err(Error::Usage(format!(
            "`{}` is not available in this swctl version yet",
            command_name(other)
        ))),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Status => "status",
        Command::Calls(_) => "calls",
        Command::Registrations(_) => "registrations",
        Command::Media(_) => "media",
        Command::Nodes(_) => "nodes",
        Command::Dialplan(_) => "dialplan",
        Command::Top => "top",
        Command::Web { .. } => "web",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
        Command::DialStdio { .. } => "dial-stdio",
    }
}

/// The hosts to talk to: `--host` values, or the local swbd socket.
fn hosts(cli: &Cli) -> Result<Vec<Host>, Error> {
    if cli.hosts.is_empty() {
        return Ok(vec![Host::Unix(
            switchboard_proto::support::paths::swbd_socket(),
        )]);
    }
    cli.hosts
        .iter()
        .map(|h| h.parse::<Host>().map_err(|e| Error::Usage(e.to_string())))
        .collect()
}
