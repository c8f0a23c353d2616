//! Opus audio (`.opus`, Ogg Opus; Opus in Matroska/WebM). symphonia reads these containers
//! but has no Opus decoder, so the packets it hands out are decoded here by `unsafe-libopus`
//! (the reference libopus, transpiled to Rust: no C toolchain, so it builds for the browser
//! and phones too). Output is 48 kHz float, as libopus gives it, with the header's output
//! gain applied and the encoder's pre-skip trimmed; in Ogg the last packet's padding is
//! trimmed too (from the granule positions, as `opusdec` does), while Matroska's end trim
//! (`DiscardPadding`) is not read, so up to one frame of padding stays there.

/// Frames in the longest Opus packet (120 ms at 48 kHz), per channel.
const MAX_FRAMES: usize = 5760;

/// The decoder state: a plain decoder for mono/stereo (mapping family 0), a multistream one
/// for surround layouts.
enum State {
    Single(*mut unsafe_libopus::OpusDecoder),
    Multi(*mut unsafe_libopus::OpusMSDecoder),
}

/// An Opus stream's decoder, set up from its identification header (`OpusHead`).
pub struct OpusStream {
    state: State,
    channels: usize,
    /// Linear gain from the header's `output gain` (Q7.8 dB).
    gain: f32,
    /// Frames of the header's pre-skip not yet dropped.
    skip: usize,
    out: Vec<f32>,
}

// SAFETY: the decoder state is owned by this value alone and libopus keeps no thread-local
// or global state; moving it to another thread is as safe as moving a `Box`.
unsafe impl Send for OpusStream {}

/// MP4's `dOps` box (as symphonia passes it: behind the `OpusHead` magic) rewritten as an
/// `OpusHead` packet: the same fields, but pre-skip, input rate and gain big-endian there.
pub(crate) fn dops_to_opus_head(head: &mut [u8]) {
    if head.len() >= 19 && &head[..8] == b"OpusHead" {
        head[10..12].reverse();
        head[12..16].reverse();
        head[16..18].reverse();
    }
}

impl OpusStream {
    /// A decoder for the stream whose `OpusHead` packet is `head` (the track's extra data).
    pub fn new(head: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| Err(format!("invalid Opus header: {what}"));
        if head.len() < 19 || &head[..8] != b"OpusHead" {
            return bad("no OpusHead identification packet");
        }
        if head[8] & 0xf0 != 0 {
            return bad("unknown version");
        }
        let channels = usize::from(head[9]);
        let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
        let gain_q8 = i16::from_le_bytes([head[16], head[17]]);
        let family = head[18];
        if channels == 0 {
            return bad("zero channels");
        }
        let mut error = 0i32;
        let state = if family == 0 {
            if channels > 2 {
                return bad("mapping family 0 with more than two channels");
            }
            // SAFETY: valid rate and channel count; `error` is a live i32.
            let st =
                unsafe { unsafe_libopus::opus_decoder_create(48_000, channels as i32, &mut error) };
            if st.is_null() || error != unsafe_libopus::OPUS_OK {
                return Err(format!(
                    "cannot start the Opus decoder (libopus error {error})"
                ));
            }
            State::Single(st)
        } else {
            let Some(table) = head.get(19..21 + channels) else {
                return bad("channel mapping table cut short");
            };
            let (streams, coupled, mapping) = (table[0], table[1], &table[2..]);
            if streams == 0 || coupled > streams {
                return bad("stream counts");
            }
            let total = usize::from(streams) + usize::from(coupled);
            if mapping.iter().any(|&m| m != 255 && usize::from(m) >= total) {
                return bad("channel mapping points past the streams");
            }
            // SAFETY: `mapping` holds `channels` entries, each checked above to name a
            // decoded channel (or 255, silence); `error` is a live i32.
            let st = unsafe {
                unsafe_libopus::opus_multistream_decoder_create(
                    48_000,
                    channels as i32,
                    i32::from(streams),
                    i32::from(coupled),
                    mapping.as_ptr(),
                    &mut error,
                )
            };
            if st.is_null() || error != unsafe_libopus::OPUS_OK {
                return Err(format!(
                    "cannot start the Opus decoder for {channels} channels (libopus error {error})"
                ));
            }
            State::Multi(st)
        };
        Ok(Self {
            state,
            channels,
            gain: 10f32.powf(f32::from(gain_q8) / (20.0 * 256.0)),
            skip: pre_skip,
            out: vec![0.0; MAX_FRAMES * channels],
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decode one packet: interleaved 48 kHz samples, or `None` for a packet libopus refuses
    /// (a damaged one; the caller skips it). `trim_start`/`trim_end`: frames the container
    /// says to drop (Ogg: the pre-skip where it tracks it, and the end padding); the pre-skip
    /// is dropped once either way.
    pub fn decode(&mut self, packet: &[u8], trim_start: u64, trim_end: u64) -> Option<&[f32]> {
        // An empty packet carries no audio (and its duration is 0); libopus would conceal a
        // whole 120 ms for it, shifting everything after.
        if packet.is_empty() {
            return Some(&[]);
        }
        let len = i32::try_from(packet.len()).ok()?;
        let (data, out) = (packet.as_ptr(), self.out.as_mut_ptr());
        // SAFETY: `out` holds MAX_FRAMES frames of `channels` samples, the most one packet
        // decodes to, and `frame_size` says so; `data` holds `len` bytes.
        let frames = unsafe {
            match self.state {
                State::Single(st) => {
                    unsafe_libopus::opus_decode_float(st, data, len, out, MAX_FRAMES as i32, 0)
                }
                State::Multi(st) => unsafe_libopus::opus_multistream_decode_float(
                    st,
                    data,
                    len,
                    out,
                    MAX_FRAMES as i32,
                    0,
                ),
            }
        };
        let frames = usize::try_from(frames).ok()?.min(MAX_FRAMES);
        let trim_start = usize::try_from(trim_start).unwrap_or(usize::MAX);
        let start = trim_start.max(self.skip.min(frames)).min(frames);
        self.skip = self.skip.saturating_sub(start);
        let end = frames
            .saturating_sub(usize::try_from(trim_end).unwrap_or(usize::MAX))
            .max(start);
        let c = self.channels;
        let decoded = &mut self.out[start * c..end * c];
        if self.gain != 1.0 {
            decoded.iter_mut().for_each(|v| *v *= self.gain);
        }
        Some(decoded)
    }
}

impl Drop for OpusStream {
    fn drop(&mut self) {
        // SAFETY: created by the matching `*_create`, destroyed once.
        unsafe {
            match self.state {
                State::Single(st) => unsafe_libopus::opus_decoder_destroy(st),
                State::Multi(st) => unsafe_libopus::opus_multistream_decoder_destroy(st),
            }
        }
    }
}
