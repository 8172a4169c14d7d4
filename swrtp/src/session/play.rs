//! Playback control: resolving an audio file under the audio directory,
//! loading it and handing it to the session's media task ([`Node::play`],
//! [`Node::stop_playback`]).

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use switchboard_proto::media::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use super::Node;
use crate::error::{Error, Result};
use crate::player::{self, Playback};
use crate::relay::Cmd;
use crate::sdp::AudioCodec;

/// Resolve `file` under `dir`, refusing absolute paths and `..`.
pub fn resolve_audio_path(dir: &Path, file: &str) -> Result<PathBuf> {
    let rel = Path::new(file);
    if file.is_empty() {
        return Err(Error::BadPath {
            file: file.into(),
            reason: "empty file name",
        });
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::BadPath {
                    file: file.into(),
                    reason: "\"..\" would escape the audio directory",
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::BadPath {
                    file: file.into(),
                    reason: "absolute paths are refused; give a path relative to the audio directory",
                });
            }
        }
    }
    Ok(dir.join(rel))
}

impl Node {
    /// Start playing `file` into a session. Problems with the file itself
    /// arrive as a `PlaybackError` event on the returned stream.
    pub async fn play(
        &self,
        id: &str,
        file: &str,
        looped: bool,
    ) -> Result<mpsc::Receiver<pb::PlayEvent>> {
        let path = resolve_audio_path(&self.inner.settings.audio_dir, file)?;
        let _ops = self.inner.ops.lock().await;
        let (worker, codec) = {
            let table = self.table();
            let e = table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?;
            if let Some(peer) = &e.peer {
                return Err(Error::PlayWhileBridged {
                    session: id.into(),
                    peer: peer.clone(),
                });
            }
            if e.shared.timed_out.load(Ordering::Relaxed) {
                return Err(Error::TimedOut(id.into()));
            }
            let codec = e
                .sdp
                .negotiated
                .map(|n| n.codec)
                .ok_or_else(|| Error::NotNegotiated(id.into()))?;
            (e.worker.clone(), codec)
        };
        let playback_id = format!(
            "p{}",
            self.inner.playback_ids.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = mpsc::channel(64);
        let law = AudioCodec::law(codec);
        let loaded = tokio::task::spawn_blocking(move || player::load(&path, law)).await;
        let audio = match loaded {
            Ok(Ok(audio)) => audio,
            Ok(Err(e)) => {
                let _ = tx.try_send(player::error_event(&playback_id, &e.to_string()));
                return Ok(rx);
            }
            Err(_) => {
                let _ = tx.try_send(player::error_event(&playback_id, "decoder task failed"));
                return Ok(rx);
            }
        };
        let playback = Playback::new(
            playback_id.clone(),
            file.to_string(),
            audio,
            looped,
            tx.clone(),
        );
        let (reply, done) = oneshot::channel();
        let sent = worker
            .send(Cmd::Play {
                id: id.into(),
                playback: Box::new(playback),
                reply,
            })
            .await;
        if sent.is_err() || !done.await.unwrap_or(false) {
            let _ = tx.try_send(player::error_event(
                &playback_id,
                "session is gone (timed out or destroyed)",
            ));
        }
        Ok(rx)
    }

    /// Stop the playback of a session; whether one was running.
    pub async fn stop_playback(&self, id: &str) -> Result<bool> {
        let worker = {
            let table = self.table();
            table
                .sessions
                .get(id)
                .ok_or_else(|| Error::NotFound(id.into()))?
                .worker
                .clone()
        };
        let (reply, done) = oneshot::channel();
        if worker
            .send(Cmd::Stop {
                id: id.into(),
                reason: "requested",
                reply,
            })
            .await
            .is_err()
        {
            return Ok(false);
        }
        Ok(done.await.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_paths_cannot_escape() {
        let dir = Path::new("/srv/audio");
        assert_eq!(
            resolve_audio_path(dir, "prompts/hello.wav").ok(),
            Some(PathBuf::from("/srv/audio/prompts/hello.wav"))
        );
        for bad in ["../etc/passwd", "a/../../b.wav", "/etc/passwd", ""] {
            assert!(resolve_audio_path(dir, bad).is_err(), "{bad}");
        }
    }
}
