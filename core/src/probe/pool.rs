//! Time pooling of hidden states while they stream out of the model: the whole-clip mean per
//! hidden state, and means over fixed-length segments for a tag timeline. Memory: one
//! `[states, dim]` sum per segment, whatever the audio length.

use crate::embed::FrameSink;
use crate::error::Result;

pub struct SegmentMeans {
    /// Frames per segment (0: whole clip only); fractional for a length in seconds that is
    /// not a whole number of frames, so segment `k` starts at frame `ceil(k * segment_frames)`
    /// and the grid does not drift.
    pub segment_frames: f64,
    pub states: usize,
    pub dim: usize,
    total: Vec<f64>,
    frames: usize,
    /// Per segment: sums `[states * dim]`, frame count and first frame.
    segments: Vec<(Vec<f64>, usize, usize)>,
}

impl SegmentMeans {
    pub fn new(segment_frames: usize) -> Self {
        Self {
            segment_frames: segment_frames as f64,
            states: 0,
            dim: 0,
            total: Vec::new(),
            frames: 0,
            segments: Vec::new(),
        }
    }

    /// Segments of `seconds` at `frame_rate` frames per second (`seconds` 0: none).
    pub fn seconds(seconds: f64, frame_rate: f64) -> Self {
        let mut s = Self::new(0);
        if seconds > 0.0 {
            s.segment_frames = (seconds * frame_rate).max(1.0);
        }
        s
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
            .filter(|(_, n, _)| *n > 0)
            .map(|(sums, n, first)| {
                let m = sums.iter().map(|s| (s / *n as f64) as f32).collect();
                (*first, *n, m)
            })
            .collect()
    }

    /// The segment frame `f` falls in.
    fn segment_of(&self, f: usize) -> Option<usize> {
        (self.segment_frames > 0.0).then(|| (f as f64 / self.segment_frames) as usize)
    }
}

impl FrameSink for SegmentMeans {
    fn begin(&mut self, layers: usize, frames: usize, dim: usize) -> Result<()> {
        self.states = layers;
        self.dim = dim;
        self.total = vec![0.0; layers * dim];
        self.frames = 0;
        self.segments = match (frames.checked_sub(1), self.segment_of(0)) {
            (Some(last), Some(_)) => {
                let n = self.segment_of(last).map_or(0, |i| i + 1);
                vec![(vec![0.0; layers * dim], 0, usize::MAX); n]
            }
            _ => Vec::new(),
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
                if let Some(seg) = self
                    .segment_of(dest + f)
                    .and_then(|i| self.segments.get_mut(i))
                {
                    for (s, &v) in seg.0[l * dim..(l + 1) * dim].iter_mut().zip(row) {
                        *s += v as f64;
                    }
                    if l == 0 {
                        seg.1 += 1;
                        seg.2 = seg.2.min(dest + f);
                    }
                }
            }
        }
        self.frames += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments of 0.7 s at 75 frames/s (52.5 frames) start at `ceil(k * 52.5)`: the grid
    /// stays on k * 0.7 s to within a frame however long the clip, and every frame is counted
    /// once.
    #[test]
    fn fractional_segments_do_not_drift() {
        let mut sink = SegmentMeans::seconds(0.7, 75.0);
        let frames = 75 * 600;
        sink.begin(1, frames, 1).unwrap();
        let data: Vec<f32> = (0..frames).map(|f| f as f32).collect();
        sink.write(0, frames, &data).unwrap();
        let segments = sink.segment_means();
        assert_eq!(segments.len(), (600.0f64 / 0.7).ceil() as usize);
        let mut next = 0;
        for (k, (first, n, mean)) in segments.iter().enumerate() {
            assert_eq!(*first, next, "segment {k}");
            assert_eq!(*first, (k as f64 * 52.5).ceil() as usize, "segment {k}");
            let want = (*first as f64 + (*first + *n - 1) as f64) / 2.0;
            assert!((mean[0] as f64 - want).abs() < 1e-3, "segment {k}");
            next = first + n;
        }
        assert_eq!(next, frames);
        // whole frames per segment: every segment equal
        let mut whole = SegmentMeans::seconds(2.0, 75.0);
        whole.begin(1, 400, 1).unwrap();
        whole.write(0, 400, &vec![1.0; 400]).unwrap();
        let lens: Vec<usize> = whole.segment_means().iter().map(|s| s.1).collect();
        assert_eq!(lens, [150, 150, 100]);
    }
}
