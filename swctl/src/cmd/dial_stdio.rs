//! `swctl dial-stdio [--socket PATH]` (hidden): the remote end of `ssh://`.
//! Pipes stdin/stdout to a local admin socket (swbd's by default), like
//! `docker system dial-stdio`. Errors go to stderr, which ssh carries back to
//! the swctl that started us.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::connect::{ConnectError, Host};

/// Connect to `socket` and copy bytes both ways until either side closes.
pub async fn run(socket: Option<PathBuf>) -> Result<(), Error> {
    let path = match socket {
        Some(p) => p,
        None => {
            let p = switchboard_proto::support::paths::swbd_socket();
            super::check_default_dir(&p)?;
            p
        }
    };
    let stream =
        tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|e| ConnectError::Unreachable {
                what: "the admin socket".into(),
                host: Host::Unix(path.clone()),
                reason: switchboard_proto::support::yaml::io_reason(&e),
                hint: "is the daemon running on this host? see --socket".into(),
            })?;
    let (mut rd, mut wr) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let up = async {
        let _ = tokio::io::copy(&mut stdin, &mut wr).await;
        let _ = wr.shutdown().await;
        // Keep going until the daemon closes its side.
        std::future::pending::<()>().await
    };
    let down = async {
        let r = tokio::io::copy(&mut rd, &mut stdout).await;
        let _ = stdout.flush().await;
        r
    };
    // The daemon closing its end ends the session; stdin closing only half-closes.
    tokio::select! {
        r = down => { r.map_err(anyhow::Error::from)?; }
        () = up => {}
    }
    Ok(())
}
