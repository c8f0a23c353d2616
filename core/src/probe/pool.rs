//! Time pooling of hidden states while they stream out of the model: the whole-clip mean per
//! hidden state, and means over fixed-length segments for a tag timeline. Memory: one
//! `[states, dim]` sum per segment, whatever the audio length.

use crate::embed::FrameSink;
use crate::error::Result;

pub struct SegmentMeans {
    /// Frames per segment (0: whole clip only).
    pub segment_frames: usize,
    pub states: usize,
    pub dim: usize,
    total: Vec<f64>,
    frames: usize,
    /// Per segment: sums `[states * dim]` and frame count.
    segments: Vec<(Vec<f64>, usize)>,
}

impl SegmentMeans {
    pub fn new(segment_frames: usize) -> Self {
        Self {
            segment_frames,
            states: 0,
            dim: 0,
            total: Vec::new(),
            frames: 0,
            segments: Vec::new(),
        }
    }

    /// Whole-clip means `[states, dim]`.
    pub fn mean(&self) -> Vec<f32> {
        let n = self.frames.max(1) as f64;
        self.total.iter().map(|s| (s / n) as f32).collect()
    }

    /// Segment means, each `[states, dim]`, with the segment's first frame and frame count.
    pub fn segment_means(&self) -> Vec<(usize, usize, Vec<f32>)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(i, (sums, n))| {
                let m = sums.iter().map(|s| (s / *n as f64) as f32).collect();
                (i * self.segment_frames, *n, m)
            })
            .collect()
    }
}

impl FrameSink for SegmentMeans {
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> Result<()> {
        self.states = layers;
        self.dim = dim;
        self.total = vec![0.0; layers * dim];
        self.frames = 0;
        self.segments = if self.segment_frames > 0 {
            let n = frames.div_ceil(self.segment_frames);
            vec![(vec![0.0; layers * dim], 0); n]
        } else {
            Vec::new()
        };
        Ok(())
    }

    fn write(&mut self, dest: usize, n: usize, data: &[f32]) -> Result<()> {
        let dim = self.dim;
        for l in 0..self.states {
            let rows = &data[l * n * dim..(l + 1) * n * dim];
            for (f, row) in rows.chunks_exact(dim).enumerate() {
                let total = &mut self.total[l * dim..(l + 1) * dim];
                for (s, &v) in total.iter_mut().zip(row) {
                    *s += v as f64;
                }
                if let Some(i) = (dest + f).checked_div(self.segment_frames) {
                    let seg = &mut self.segments[i];
                    for (s, &v) in seg.0[l * dim..(l + 1) * dim].iter_mut().zip(row) {
                        *s += v as f64;
                    }
                    if l == 0 {
                        seg.1 += 1;
                    }
                }
            }
        }
        self.frames += n;
        Ok(())
    }
}
