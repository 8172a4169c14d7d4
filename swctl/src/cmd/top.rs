//! `swctl top`: see [`crate::tui`].

use super::Targets;
use crate::Error;
use crate::connect::Host;

/// Run the TUI. A guessed local default (the swrtp socket) that does not
/// exist is left out rather than shown as "reconnecting" forever.
pub async fn run(mut targets: Targets, stats_interval_ms: u32) -> Result<(), Error> {
    targets
        .backends
        .retain(|b| !(b.optional && matches!(&b.host, Host::Unix(p) if !p.exists())));
    // ratatui needs a terminal on both ends: without one it cannot switch
    // to raw mode and would panic. Say so instead (issue #16).
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "swctl top needs a terminal on stdin and stdout; for scripts use \
             `swctl calls -w`, `swctl status` or `-o json`"
                .into(),
        ));
    }
    if targets.backends.is_empty() {
        return Err(Error::Usage("no daemon to watch: give --host".into()));
    }
    crate::tui::run(targets, stats_interval_ms)
        .await
        .map_err(Error::Other)
}
