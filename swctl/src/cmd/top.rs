//! `swctl top`: see [`crate::tui`].

use super::Targets;
use crate::Error;

/// Run the TUI.
pub async fn run(targets: Targets, stats_interval_ms: u32) -> Result<(), Error> {
    crate::tui::run(targets, stats_interval_ms)
        .await
        .map_err(Error::Other)
}
