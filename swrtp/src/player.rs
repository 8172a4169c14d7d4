//! Audio playback: WAV decoding (16-bit PCM, any rate and channel count,
//! converted to 8 kHz mono), G.711 encoding, and the playback state the media
//! task paces (see [`crate::relay`]: deadline = start + n * ptime on the
//! monotonic clock, so the stream never drifts).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchboard_proto::media::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::g711::Law;

/// Output sample rate of G.711.
pub const RATE: u32 = 8000;

/// Why a file cannot be played. Leaves as a `PlaybackError` event.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    /// Missing or unreadable.
    #[error("cannot open {file}: {reason}")]
    Open {
        /// File.
        file: String,
        /// Why.
        reason: String,
    },
    /// Not a WAV we understand.
    #[error("cannot decode {file}: {reason}")]
    Decode {
        /// File.
        file: String,
        /// Why.
        reason: String,
    },
    /// A WAV, but not 16-bit PCM.
    #[error("unsupported WAV {file}: {format} (only 16-bit PCM is supported)")]
    Unsupported {
        /// File.
        file: String,
        /// What it is.
        format: String,
    },
    /// No audio in it.
    #[error("{0} contains no audio")]
    Empty(String),
}

/// A decoded, encoded prompt.
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    /// G.711 bytes at 8 kHz, one per sample.
    pub bytes: Arc<[u8]>,
    /// The law they are in.
    pub law: Law,
}

impl EncodedAudio {
    /// Length of the audio.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.bytes.len() as u64 * 1000 / u64::from(RATE))
    }
}

/// Decode `path` and encode it to `law`.
pub fn load(path: &Path, law: Law) -> Result<EncodedAudio, PlayerError> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let handle = std::fs::File::open(path).map_err(|e| PlayerError::Open {
        file: file.clone(),
        reason: switchboard_proto::support::yaml::io_reason(&e),
    })?;
    let reader = hound::WavReader::new(std::io::BufReader::new(handle)).map_err(|e| {
        PlayerError::Decode {
            file: file.clone(),
            reason: e.to_string(),
        }
    })?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(PlayerError::Unsupported {
            file,
            format: format!("{:?} {}-bit", spec.sample_format, spec.bits_per_sample),
        });
    }
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(PlayerError::Decode {
            file,
            reason: "zero channels or sample rate".into(),
        });
    }
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| PlayerError::Decode {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    let mono = downmix(&samples, usize::from(spec.channels));
    let pcm = resample(&mono, spec.sample_rate, RATE);
    if pcm.is_empty() {
        return Err(PlayerError::Empty(file));
    }
    let bytes: Vec<u8> = pcm.iter().map(|s| law.encode(*s)).collect();
    Ok(EncodedAudio {
        bytes: bytes.into(),
        law,
    })
}

/// Average interleaved channels into one.
pub fn downmix(samples: &[i16], channels: usize) -> Vec<i16> {
    if channels <= 1 {
        return samples.to_vec();
    }
    samples
        .chunks_exact(channels)
        .map(|frame| {
            let sum: i32 = frame.iter().map(|s| i32::from(*s)).sum();
            (sum / channels as i32) as i16
        })
        .collect()
}

/// Linear-interpolation resampling (good enough for prompts; swrtp does not
/// low-pass first, so ship prompts at 8 kHz for best quality).
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    let last = input.len() - 1;
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let idx = (pos as usize).min(last);
            let frac = pos - idx as f64;
            let a = f64::from(input.get(idx).copied().unwrap_or(0));
            let b = f64::from(input.get(idx + 1).copied().unwrap_or(input[last]));
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

/// A running playback, owned by the media task of its session.
#[derive(Debug)]
pub struct Playback {
    /// Playback id.
    pub id: String,
    /// File as requested.
    pub file: String,
    /// The audio.
    pub audio: EncodedAudio,
    /// Start again at the end.
    pub looped: bool,
    /// Next byte to send.
    pub pos: usize,
    /// Packets sent.
    pub packets: u64,
    /// Samples sent (across loops).
    pub samples: u64,
    /// When playback started (first packet).
    pub start: Option<Instant>,
    /// Where lifecycle events go.
    pub events: mpsc::Sender<pb::PlayEvent>,
}

impl Playback {
    /// A playback not started yet.
    pub fn new(
        id: String,
        file: String,
        audio: EncodedAudio,
        looped: bool,
        events: mpsc::Sender<pb::PlayEvent>,
    ) -> Self {
        Self {
            id,
            file,
            audio,
            looped,
            pos: 0,
            packets: 0,
            samples: 0,
            start: None,
            events,
        }
    }

    /// Deadline of packet `n`: `start + n * ptime` (no drift).
    pub fn deadline(&self, ptime_ms: u32) -> Option<Instant> {
        let start = self.start?;
        let n = u32::try_from(self.packets).unwrap_or(u32::MAX);
        Some(start + Duration::from_millis(u64::from(ptime_ms)) * n)
    }

    /// Fill `out` with the next frame; returns false when the file ended
    /// (and not looping) before this frame.
    pub fn next_frame(&mut self, out: &mut [u8]) -> bool {
        let data = &self.audio.bytes;
        if self.pos >= data.len() && !self.looped {
            return false;
        }
        let silence = self.audio.law.silence();
        for b in out.iter_mut() {
            if self.pos >= data.len() {
                if self.looped {
                    self.pos = 0;
                } else {
                    *b = silence;
                    continue;
                }
            }
            *b = data.get(self.pos).copied().unwrap_or(silence);
            self.pos += 1;
        }
        self.packets += 1;
        self.samples += out.len() as u64;
        true
    }

    /// Whether the last frame has been sent.
    pub fn finished(&self) -> bool {
        !self.looped && self.pos >= self.audio.bytes.len()
    }

    /// Send an event without ever blocking the media task.
    pub fn emit(&self, event: pb::play_event::Event) {
        let _ = self.events.try_send(event_of(&self.id, event));
    }

    /// Audio sent so far.
    pub fn position(&self) -> Duration {
        Duration::from_millis(self.samples * 1000 / u64::from(RATE))
    }
}

fn event_of(id: &str, event: pb::play_event::Event) -> pb::PlayEvent {
    pb::PlayEvent {
        playback_id: id.into(),
        at: Some(switchboard_proto::timestamp(SystemTime::now())),
        event: Some(event),
    }
}

/// A `PlaybackError` event.
pub fn error_event(id: &str, message: &str) -> pb::PlayEvent {
    event_of(
        id,
        pb::play_event::Event::Error(pb::PlaybackError {
            message: message.into(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create");
        for s in samples {
            w.write_sample(*s).expect("write");
        }
        w.finalize().expect("finalize");
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("swrtp-player-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        dir.join(name)
    }

    #[test]
    fn stereo_16k_becomes_8k_mono() {
        let p = tmp("s16.wav");
        let frames: Vec<i16> = (0..1600).flat_map(|_| [1000i16, 3000]).collect();
        write_wav(&p, 16000, 2, &frames);
        let a = load(&p, Law::Ulaw).expect("load");
        assert_eq!(a.bytes.len(), 800);
        assert!(a.bytes.iter().all(|b| *b == Law::Ulaw.encode(2000)));
        assert_eq!(a.duration(), Duration::from_millis(100));
    }

    #[test]
    fn missing_and_corrupt_files_are_errors() {
        assert!(matches!(
            load(Path::new("/nonexistent/x.wav"), Law::Ulaw),
            Err(PlayerError::Open { .. })
        ));
        let p = tmp("junk.wav");
        std::fs::write(&p, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").expect("write");
        assert!(matches!(
            load(&p, Law::Alaw),
            Err(PlayerError::Decode { .. })
        ));
    }

    #[test]
    fn frames_pad_the_tail_with_silence_and_loop() {
        let audio = EncodedAudio {
            bytes: vec![1u8, 2, 3].into(),
            law: Law::Ulaw,
        };
        let (tx, _rx) = mpsc::channel(4);
        let mut p = Playback::new("p".into(), "f".into(), audio.clone(), false, tx.clone());
        let mut f = [0u8; 2];
        assert!(p.next_frame(&mut f));
        assert_eq!(f, [1, 2]);
        assert!(p.next_frame(&mut f));
        assert_eq!(f, [3, 0xFF]);
        assert!(p.finished());
        assert!(!p.next_frame(&mut f));
        let mut l = Playback::new("l".into(), "f".into(), audio, true, tx);
        let mut f = [0u8; 4];
        assert!(l.next_frame(&mut f));
        assert_eq!(f, [1, 2, 3, 1]);
        assert!(!l.finished());
    }

    #[test]
    fn resample_keeps_length_ratio() {
        let x: Vec<i16> = (0..441).map(|i| i as i16).collect();
        assert_eq!(resample(&x, 44100, 8000).len(), 80);
    }
}
