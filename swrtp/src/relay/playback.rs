//! Playback on the media task: sending the packets of a running
//! [`Playback`](crate::player::Playback) when they are due.

use rtp_types::RtpPacketBuilder;
use switchboard_proto::media::v1 as pb;
use tokio::time::Instant;

use super::{Leg, Relay};
use crate::stats::now_ms;

impl Relay {
    /// Send every playback (and DTMF) packet that is due.
    pub(super) fn play_due(&mut self) {
        self.dtmf_due();
        let now = Instant::now();
        for leg in &mut self.legs {
            // Catch up if we were late, so the stream never drifts.
            while let Some(p) = leg.playback.as_ref()
                && p.deadline(leg.media.ptime).is_some_and(|d| d <= now)
            {
                play_one(leg, &mut self.buf);
            }
        }
    }
}

/// Build and send one playback packet on `leg`.
fn play_one(leg: &mut Leg, buf: &mut [u8]) {
    let samples = (leg.media.ptime * 8) as usize;
    let Some(playback) = leg.playback.as_mut() else {
        return;
    };
    let first = playback.packets == 0;
    let (head, rest) = buf.split_at_mut(12.min(buf.len()));
    let Some(frame) = rest.get_mut(..samples) else {
        return;
    };
    if !playback.next_frame(frame) {
        return finish(leg);
    }
    let (seq, ts) = leg.tx.next_local(samples as u32);
    let header = RtpPacketBuilder::<&[u8], &[u8]>::new()
        .payload_type(leg.media.pt)
        .sequence_number(seq)
        .timestamp(ts)
        .ssrc(leg.tx.ssrc)
        .marker_bit(first);
    if header.write_into(head).is_ok()
        && let Some(dest) = leg.rtp_dest()
        && let Some(data) = buf.get(..12 + samples)
        && leg.ports.rtp.try_send_to(data, dest).is_ok()
    {
        leg.shared.tx.count(samples, now_ms());
    }
    let Some(playback) = leg.playback.as_ref() else {
        return;
    };
    if playback.packets % 50 == 0 {
        playback.emit(pb::play_event::Event::Progress(pb::PlaybackProgress {
            position: Some(switchboard_proto::duration(playback.position())),
            packets_sent: playback.packets,
        }));
    }
    if playback.finished() {
        finish(leg);
    }
}

fn finish(leg: &mut Leg) {
    if let Some(p) = leg.playback.take() {
        p.emit(pb::play_event::Event::Completed(pb::PlaybackCompleted {
            packets_sent: p.packets,
        }));
        leg.shared.edit(|v| v.playing.clear());
    }
}
