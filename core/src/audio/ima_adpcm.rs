//! IMA ADPCM in WAV (format tag 0x11), decoded as libsndfile and the IMA reference decode it:
//! the difference is built by shifts and adds (`step>>3`, `+step>>2`, `+step>>1`, `+step`).
//! symphonia 0.6.1 computes `((2n+1)·step)>>3`, which rounds differently (about -60 dB off).

use super::adpcm::BlockCodec;

const INDEX_ADJUST: [i32; 16] = [-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8];
const STEPS: [i32; 89] = [
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60, 66,
    73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371, 408, 449,
    494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066, 2272,
    2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845, 8630, 9493,
    10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086, 29794, 32767,
];

pub(crate) struct ImaAdpcm {
    channels: usize,
    frames_per_block: usize,
}

#[derive(Clone, Copy, Default)]
struct Channel {
    sample: i32,
    index: i32,
}

impl Channel {
    fn expand(&mut self, nibble: u8) -> i32 {
        let step = STEPS[self.index as usize];
        let mut diff = step >> 3;
        if nibble & 1 != 0 {
            diff += step >> 2;
        }
        if nibble & 2 != 0 {
            diff += step >> 1;
        }
        if nibble & 4 != 0 {
            diff += step;
        }
        if nibble & 8 != 0 {
            diff = -diff;
        }
        self.sample = (self.sample + diff).clamp(-32768, 32767);
        self.index = (self.index + INDEX_ADJUST[nibble as usize]).clamp(0, 88);
        self.sample
    }
}

impl ImaAdpcm {
    /// `frames_per_block - 1` must fill whole 4-byte groups (8 samples) per channel, as every
    /// encoder writes them; mono needs whole bytes.
    pub(crate) fn new(channels: usize, frames_per_block: usize) -> Result<Self, String> {
        let samples = frames_per_block.saturating_sub(1);
        let whole = if channels == 1 {
            samples.is_multiple_of(2)
        } else {
            samples.is_multiple_of(8)
        };
        if !(1..=8).contains(&channels) || samples == 0 || !whole {
            return Err(format!(
                "IMA ADPCM with {channels} channels and {frames_per_block} frames per block: expected 1 to 8 channels and whole 4-byte groups"
            ));
        }
        Ok(Self {
            channels,
            frames_per_block,
        })
    }
}

impl BlockCodec for ImaAdpcm {
    fn channels(&self) -> usize {
        self.channels
    }

    /// A 4-byte header per channel (first sample, step index), then a nibble per sample.
    fn block_bytes(&self) -> usize {
        4 * self.channels + (self.frames_per_block - 1) * self.channels / 2
    }

    /// `None` when a header's step index is beyond the table.
    fn block(&self, b: &[u8], out: &mut Vec<f32>) -> Option<()> {
        let ch = self.channels;
        let mut state = [Channel::default(); 8];
        for (c, s) in state.iter_mut().enumerate().take(ch) {
            s.sample = i16::from_le_bytes([b[4 * c], b[4 * c + 1]]) as i32;
            s.index = b[4 * c + 2] as i32;
            if s.index > 88 {
                return None;
            }
        }
        let frames = self.frames_per_block;
        let start = out.len();
        out.resize(start + frames * ch, 0.0);
        let scale = 1.0 / 32768.0;
        for (slot, s) in out[start..start + ch].iter_mut().zip(&state) {
            *slot = s.sample as f32 * scale;
        }
        // per channel in turn, 4 bytes (8 samples, low nibble first) at a time
        let data = &b[4 * ch..];
        let bytes = if ch == 1 { data.len() } else { 4 };
        for (g, group) in data.chunks(bytes).enumerate() {
            let c = g % ch;
            let first = if ch == 1 { 1 } else { 1 + (g / ch) * 8 };
            for (i, &byte) in group.iter().enumerate() {
                for (k, nibble) in [byte & 0x0f, byte >> 4].into_iter().enumerate() {
                    let t = first + 2 * i + k;
                    out[start + t * ch + c] = state[c].expand(nibble) as f32 * scale;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_built_by_shifts() {
        // step 7 (index 0), nibble 7: 0 + 1 + 3 + 7 = 11 (the product form gives 15*7>>3 = 13)
        let mut s = Channel::default();
        assert_eq!(s.expand(7), 11);
        assert_eq!(s.index, 8);
        let mut s = Channel::default();
        assert_eq!(s.expand(0xf), -11);
    }

    #[test]
    fn stereo_groups_interleave_and_bad_blocks_are_refused() {
        let codec = ImaAdpcm::new(2, 9).unwrap();
        assert_eq!(codec.block_bytes(), 16);
        let mut d = super::super::adpcm::Adpcm::new(codec);
        let mut block = [0u8; 16];
        block[0..2].copy_from_slice(&100i16.to_le_bytes());
        block[4..6].copy_from_slice(&(-100i16).to_le_bytes());
        let out = d.decode(&block).unwrap().to_vec();
        assert_eq!(out.len(), 18);
        assert_eq!(out[0], 100.0 / 32768.0);
        assert_eq!(out[1], -100.0 / 32768.0);
        // nibble 0 adds step >> 3 = 0 at index 0: both channels hold their first sample
        assert!(out.chunks(2).all(|f| f[0] == out[0] && f[1] == out[1]));
        block[2] = 89;
        assert!(d.decode(&block).is_none());
        assert!(d.decode(&block[..15]).is_none());
        assert!(ImaAdpcm::new(2, 10).is_err());
        assert!(ImaAdpcm::new(1, 10).is_err());
        assert!(ImaAdpcm::new(1, 9).is_ok());
    }
}
