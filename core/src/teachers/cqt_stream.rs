//! The constant-Q transform fed in chunks ([`Cqt::stream`]): rows come out as soon as their
//! samples are in, on the same block grid as [`Cqt::magnitudes`], so a long file's labels are
//! identical to the whole clip's without the clip ever being held.

use super::cqt::{BLOCK, Cqt, check_finite};
use crate::error::{MertError, Result};

impl Cqt {
    /// The same transform fed in chunks of any size (a long file never held whole): rows come
    /// out as soon as their samples are in, identical to [`Cqt::magnitudes`] on the whole clip.
    pub fn stream(&self, threads: usize) -> CqtStream<'_> {
        CqtStream {
            cqt: self,
            threads,
            buf: Vec::new(),
            base: 0,
            seen: 0,
            next: 0,
        }
    }
}

/// [`Cqt::stream`]: push samples, take rows; [`CqtStream::finish`] gives the rows that needed
/// the end of the signal. Memory stays one block (4096 frames) deep.
pub struct CqtStream<'a> {
    cqt: &'a Cqt,
    threads: usize,
    /// Signal samples from index `base` on.
    buf: Vec<f32>,
    base: usize,
    /// Samples pushed so far.
    seen: usize,
    /// The next frame to compute.
    next: usize,
}

impl CqtStream<'_> {
    /// Feed samples; returns the rows `[frames, n_bins]` now complete (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
        check_finite(samples)?;
        self.buf.extend_from_slice(samples);
        self.seen += samples.len();
        let (hop, half, width) = (
            self.cqt.config().hop_length,
            self.cqt.width() / 2,
            self.cqt.width(),
        );
        let mut out = Vec::new();
        // A whole block is ready once its last window's samples are in (so the end of the
        // signal, which decides the last frame, cannot fall inside it).
        while (self.next + BLOCK - 1) * hop + width <= self.seen + half {
            let t1 = self.next + BLOCK;
            self.emit(t1, &mut out);
        }
        Ok(out)
    }

    /// The remaining rows, the signal ending with the samples pushed so far.
    pub fn finish(mut self) -> Result<Vec<f32>> {
        if self.seen == 0 {
            return Err(MertError::Invalid("CQT: the audio is empty".into()));
        }
        let frames = self.cqt.config().frames_for(self.seen);
        let mut out =
            Vec::with_capacity((frames - self.next.min(frames)) * self.cqt.config().n_bins);
        while self.next < frames {
            let t1 = (self.next + BLOCK).min(frames);
            self.emit(t1, &mut out);
        }
        Ok(out)
    }

    /// Rows up to frame `t1` appended to `out`, then the samples no later block reads dropped.
    fn emit(&mut self, t1: usize, out: &mut Vec<f32>) {
        let (buf, base, seen) = (&self.buf, self.base, self.seen);
        out.extend(
            self.cqt
                .block_of(buf, base, seen, self.next, t1, self.threads),
        );
        self.next = t1;
        self.drop_consumed();
    }

    /// Forget the samples before the next block's first window.
    fn drop_consumed(&mut self) {
        let keep_from =
            (self.next * self.cqt.config().hop_length).saturating_sub(self.cqt.width() / 2);
        if keep_from > self.base {
            let n = (keep_from - self.base).min(self.buf.len());
            self.buf.drain(..n);
            self.base += n;
        }
    }
}
