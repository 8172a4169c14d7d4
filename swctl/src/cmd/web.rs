//! `swctl web`: see [`crate::web`].

use super::Targets;
use crate::Error;
use crate::web::WebOptions;

/// Serve the page until Ctrl-C.
pub async fn run(targets: Targets, opts: &WebOptions) -> Result<(), Error> {
    crate::web::serve(targets, opts).await
}
