//! `swctl web`: see [`crate::web`].

use super::Targets;
use crate::Error;

/// Serve the page until Ctrl-C.
pub async fn run(targets: Targets, listen: &str) -> Result<(), Error> {
    crate::web::serve(targets, listen).await
}
