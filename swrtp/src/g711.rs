//! G.711 (ITU-T G.711) mu-law and A-law, after the public-domain Sun
//! reference (`g711.c`) that ITU-T G.191 ships. Every function is a `const fn`
//! so the mu-law <-> A-law transcoding tables are built at compile time.

/// Encode one 16-bit linear sample to mu-law.
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut pcm = sample as i32;
    let sign: u8 = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    if pcm > CLIP {
        pcm = CLIP;
    }
    pcm += BIAS;
    let mut exponent: u8 = 7;
    let mut mask: i32 = 0x4000;
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = ((pcm >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Decode one mu-law byte to a 16-bit linear sample.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encode one 16-bit linear sample to A-law.
pub const fn linear_to_alaw(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let mut seg = 0;
    while seg < 8 && pcm > SEG_END[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut aval = (seg as u8) << 4;
    if seg < 2 {
        aval |= ((pcm >> 1) & 0x0F) as u8;
    } else {
        aval |= ((pcm >> seg) & 0x0F) as u8;
    }
    aval ^ mask
}

/// Decode one A-law byte to a 16-bit linear sample.
pub const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn build_u2a() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = linear_to_alaw(ulaw_to_linear(i as u8));
        i += 1;
    }
    table
}

const fn build_a2u() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = linear_to_ulaw(alaw_to_linear(i as u8));
        i += 1;
    }
    table
}

/// mu-law byte -> A-law byte, for bridging a PCMU leg to a PCMA leg in place.
pub static ULAW_TO_ALAW: [u8; 256] = build_u2a();
/// A-law byte -> mu-law byte.
pub static ALAW_TO_ULAW: [u8; 256] = build_a2u();

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// mu-law (PCMU).
    Ulaw,
    /// A-law (PCMA).
    Alaw,
}

impl Law {
    /// Encode one sample.
    pub const fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => linear_to_ulaw(sample),
            Law::Alaw => linear_to_alaw(sample),
        }
    }

    /// Decode one byte.
    pub const fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_to_linear(code),
            Law::Alaw => alaw_to_linear(code),
        }
    }

    /// The code of digital silence.
    pub const fn silence(self) -> u8 {
        self.encode(0)
    }

    /// Encode a slice of samples into `out` (same length; extra is ignored).
    pub fn encode_into(self, samples: &[i16], out: &mut [u8]) {
        for (o, s) in out.iter_mut().zip(samples) {
            *o = self.encode(*s);
        }
    }

    /// Rewrite `payload` from `self` into `to`, in place.
    pub fn transcode_in_place(self, to: Law, payload: &mut [u8]) {
        let table = match (self, to) {
            (Law::Ulaw, Law::Alaw) => &ULAW_TO_ALAW,
            (Law::Alaw, Law::Ulaw) => &ALAW_TO_ULAW,
            _ => return,
        };
        for b in payload {
            *b = table[usize::from(*b)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of the G.711 tables as printed in ITU-T G.711 / G.191 and the
    /// Sun reference: (linear input, mu-law code).
    #[test]
    fn ulaw_encoder_vectors() {
        let vectors: [(i16, u8); 10] = [
            (0, 0xFF),
            (-1, 0x7F),
            (1, 0xFF),
            (32767, 0x80),
            (-32768, 0x00),
            (32124, 0x80),
            (-32124, 0x00),
            (1000, 0xCE),
            (-1000, 0x4E),
            (8, 0xFE),
        ];
        for (pcm, code) in vectors {
            assert_eq!(linear_to_ulaw(pcm), code, "ulaw({pcm})");
        }
    }

    #[test]
    fn ulaw_decoder_vectors() {
        let vectors: [(u8, i16); 6] = [
            (0xFF, 0),
            (0x7F, 0),
            (0x80, 32124),
            (0x00, -32124),
            (0xCE, 988),
            (0xFE, 8),
        ];
        for (code, pcm) in vectors {
            assert_eq!(ulaw_to_linear(code), pcm, "ulaw^-1({code:#04x})");
        }
    }

    #[test]
    fn alaw_encoder_vectors() {
        let vectors: [(i16, u8); 8] = [
            (0, 0xD5),
            (-1, 0x55),
            (32767, 0xAA),
            (-32768, 0x2A),
            (16, 0xD4),
            (5504, 0x80),
            (-5504, 0x00),
            (1000, 0xFA),
        ];
        for (pcm, code) in vectors {
            assert_eq!(linear_to_alaw(pcm), code, "alaw({pcm})");
        }
    }

    #[test]
    fn alaw_decoder_vectors() {
        let vectors: [(u8, i16); 5] = [
            (0xD5, 8),
            (0x55, -8),
            (0xAA, 32256),
            (0x2A, -32256),
            (0x80, 5504),
        ];
        for (code, pcm) in vectors {
            assert_eq!(alaw_to_linear(code), pcm, "alaw^-1({code:#04x})");
        }
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "alaw {code:#04x}"
            );
            // 0x7F (negative zero) re-encodes as 0xFF (positive zero).
            if code != 0x7F {
                assert_eq!(
                    linear_to_ulaw(ulaw_to_linear(code)),
                    code,
                    "ulaw {code:#04x}"
                );
            }
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = i16::MIN;
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            let back = ulaw_to_linear(linear_to_ulaw(s));
            assert!(back >= last, "{s} -> {back} after {last}");
            last = back;
            let err = (i32::from(back) - i32::from(s)).abs();
            assert!(err <= 1024, "ulaw error {err} at {s}");
            let aerr = (i32::from(alaw_to_linear(linear_to_alaw(s))) - i32::from(s)).abs();
            assert!(aerr <= 1024, "alaw error {aerr} at {s}");
        }
    }

    #[test]
    fn transcoding_preserves_silence_and_peaks() {
        let mut p = [0xFFu8, 0x80, 0x00];
        Law::Ulaw.transcode_in_place(Law::Alaw, &mut p);
        assert_eq!(p, [0xD5, 0xAA, 0x2A]);
        Law::Alaw.transcode_in_place(Law::Ulaw, &mut p);
        // A-law has no exact zero: 0xD5 is +8, which is mu-law 0xFE.
        assert_eq!(p, [0xFE, 0x80, 0x00]);
    }
}
