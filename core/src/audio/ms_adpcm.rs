//! Microsoft ADPCM (WAV format tag 2), decoded as Microsoft's codec and libsndfile decode it:
//! the predictor `(s1·c1 + s2·c2) >> 8` is an arithmetic shift (rounding down). symphonia 0.6.1
//! divides by 256 instead (rounding toward zero), which drifts from what the encoder assumed
//! over each block: its decode of a libsndfile-written file was only 20 dB from libsndfile's.

use super::adpcm::BlockCodec;

/// The standard predictor coefficient pairs (every encoder writes these seven).
const COEF1: [i32; 7] = [256, 512, 0, 192, 240, 460, 392];
const COEF2: [i32; 7] = [0, -256, 0, 64, 0, -208, -232];
const ADAPT: [i32; 16] = [
    230, 230, 230, 230, 307, 409, 512, 614, 768, 614, 512, 409, 307, 230, 230, 230,
];

pub(crate) struct MsAdpcm {
    channels: usize,
    frames_per_block: usize,
}

#[derive(Clone, Copy)]
struct Channel {
    c1: i32,
    c2: i32,
    delta: i32,
    s1: i32,
    s2: i32,
}

impl Channel {
    fn expand(&mut self, nibble: u8) -> i32 {
        let signed = ((nibble as i8) << 4 >> 4) as i32;
        let predicted = ((self.s1 * self.c1 + self.s2 * self.c2) >> 8) + signed * self.delta;
        let sample = predicted.clamp(-32768, 32767);
        self.s2 = self.s1;
        self.s1 = sample;
        // libsndfile keeps the delta in 16 bits (wrapping, then raised to the floor of 16)
        self.delta = (((ADAPT[nibble as usize] * self.delta) >> 8) as i16 as i32).max(16);
        sample
    }
}

impl MsAdpcm {
    /// One or two channels (what the format defines), `frames_per_block` >= 2.
    pub(crate) fn new(channels: usize, frames_per_block: usize) -> Result<Self, String> {
        if !(1..=2).contains(&channels) {
            return Err(format!(
                "Microsoft ADPCM with {channels} channels: expected 1 or 2"
            ));
        }
        if frames_per_block < 2 {
            return Err(format!(
                "Microsoft ADPCM with {frames_per_block} frames per block: expected at least 2"
            ));
        }
        Ok(Self {
            channels,
            frames_per_block,
        })
    }
}

impl BlockCodec for MsAdpcm {
    fn channels(&self) -> usize {
        self.channels
    }

    /// A 7-byte header per channel, then a nibble per remaining sample.
    fn block_bytes(&self) -> usize {
        7 * self.channels + (self.frames_per_block - 2) * self.channels / 2
    }

    /// `None` when a block names a predictor beyond the seven standard ones.
    fn block(&self, b: &[u8], out: &mut Vec<f32>) -> Option<()> {
        let ch = self.channels;
        let i16_at = |i: usize| i16::from_le_bytes([b[i], b[i + 1]]) as i32;
        let mut state = [Channel {
            c1: 0,
            c2: 0,
            delta: 0,
            s1: 0,
            s2: 0,
        }; 2];
        for (c, s) in state.iter_mut().enumerate().take(ch) {
            let predictor = *b.get(c)? as usize;
            if predictor >= COEF1.len() {
                return None;
            }
            s.c1 = COEF1[predictor];
            s.c2 = COEF2[predictor];
            s.delta = i16_at(ch + 2 * c);
            s.s1 = i16_at(3 * ch + 2 * c);
            s.s2 = i16_at(5 * ch + 2 * c);
        }
        let scale = 1.0 / 32768.0;
        for s in &state[..ch] {
            out.push(s.s2 as f32 * scale);
        }
        for s in &state[..ch] {
            out.push(s.s1 as f32 * scale);
        }
        // nibbles, high first, channels interleaved
        let mut c = 0;
        for &byte in &b[7 * ch..] {
            for nibble in [byte >> 4, byte & 0x0f] {
                let v = state[c].expand(nibble);
                out.push(v as f32 * scale);
                c = (c + 1) % ch;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictor_rounds_down_and_delta_floors_at_16() {
        let mut s = Channel {
            c1: 256,
            c2: 0,
            delta: 16,
            s1: -3,
            s2: 0,
        };
        // (-3 * 256) >> 8 = -3; nibble 0xF = -1: -3 - 16
        assert_eq!(s.expand(0x0f), -19);
        assert_eq!(s.delta, 16);
        let mut s = Channel {
            c1: 460,
            c2: -208,
            delta: 100,
            s1: -7,
            s2: 5,
        };
        // (-3220 - 1040) = -4260; >> 8 = -17 (a division by 256 gives -16)
        assert_eq!(s.expand(0), -17);
        assert_eq!(s.delta, 89);
    }

    #[test]
    fn the_delta_wraps_in_16_bits_as_libsndfile_keeps_it() {
        // a full-scale alternating signal: the delta grows by 768/256 per nibble 8
        let mut s = Channel {
            c1: 256,
            c2: 0,
            delta: 16,
            s1: 0,
            s2: 0,
        };
        for _ in 0..40 {
            s.expand(0x8);
            assert!((16..=32767).contains(&s.delta), "{}", s.delta);
        }
        // 16 * 3^7 = 34992 wraps to -30544 in 16 bits, raised to 16
        let mut s = Channel { delta: 16, ..s };
        for _ in 0..6 {
            s.expand(0x8);
        }
        assert_eq!(s.delta, 16 * 3i32.pow(6));
        s.expand(0x8);
        assert_eq!(s.delta, 16);
    }

    #[test]
    fn bad_blocks_are_refused_not_decoded() {
        let codec = MsAdpcm::new(1, 6).unwrap();
        assert_eq!(codec.block_bytes(), 9);
        let mut d = super::super::adpcm::Adpcm::new(codec);
        assert!(d.decode(&[0u8; 8]).is_none());
        let mut block = [0u8; 9];
        block[0] = 7;
        assert!(d.decode(&block).is_none());
        block[0] = 0;
        assert_eq!(d.decode(&block).map(|s| s.len()), Some(6));
        assert!(MsAdpcm::new(3, 6).is_err());
    }
}
