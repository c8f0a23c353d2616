//! Window scheduling for a stream whose length is unknown until it ends.
//!
//! One-shot embedding plans its windows with [`plan_windows`] once the clip length is known.
//! A live stream cannot wait for that, so this planner runs each regular window as soon as the
//! next one is certain to exist, keeps the frames that window owns in the final plan whatever
//! the stream's length turns out to be, and at the end plans the tail with [`plan_windows`]
//! itself. The concatenated frames equal the one-shot result for every length
//! (checked against [`plan_windows`] in the tests below), and memory stays a few windows deep.

use std::ops::Range;

use mert_core::embed::{WindowPlan, plan_windows};

/// The stream's windowing, in samples at the model's rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Window length (0: the whole stream in one pass at the end).
    window: usize,
    /// Hop as the caller asked for it (`plan_windows` puts it on the frame grid).
    hop_asked: usize,
    /// Hop on the frame grid, as `plan_windows` uses it.
    hop: usize,
    frame_hop: usize,
    /// Frames kept from regular window 0 and from every later regular window (local indices),
    /// or `None` when the stream can only be planned at its end.
    takes: Option<(Range<usize>, Range<usize>)>,
}

impl StreamPlan {
    /// Plan windows of `window` samples every `hop` samples on a frame grid of `frame_hop`.
    pub fn new(
        window: usize,
        hop: usize,
        frame_hop: usize,
        frames_for: &dyn Fn(usize) -> usize,
    ) -> Self {
        let frame_hop = frame_hop.max(1);
        let frames = frames_for(window);
        let grid = (hop / frame_hop).clamp(1, frames.max(1)) * frame_hop;
        let takes = (window > 0 && frames > 0)
            .then(|| periodic_takes(window, hop, grid, frame_hop, frames_for))
            .flatten();
        Self {
            window,
            hop_asked: hop,
            hop: grid,
            frame_hop,
            takes,
        }
    }

    /// The next regular window, `k`, if `received` samples prove it final: they do once the
    /// stream is known to hold the regular window `k + 1`. Then `k` is in the final plan, and
    /// the frames it owns start where they would in any long clip; if the end of the stream
    /// later drops `k + 1` for the tail window, `k` owns a few more frames, which the tail plan
    /// hands out from the same window. (The test below fails if `k` alone is required.)
    pub fn ready(&self, k: usize, received: usize) -> Option<WindowPlan> {
        let (first, rest) = self.takes.as_ref()?;
        let after = (k + 1).checked_mul(self.hop)?.checked_add(self.window)?;
        if after >= received {
            return None;
        }
        let start = k * self.hop;
        let take = if k == 0 { first.clone() } else { rest.clone() };
        Some(WindowPlan {
            start,
            end: start + self.window,
            dest: start / self.frame_hop + take.start,
            take,
        })
    }

    /// First sample still needed once regular windows `0..done` have run: the start of the
    /// last of them (the tail is planned from there).
    pub fn keep_from(&self, done: usize) -> usize {
        done.saturating_sub(1) * self.hop
    }

    /// The remaining windows once the stream ended at `len` samples, with regular windows
    /// `0..done` already run and `emitted` frames written: the one-shot plan restricted to
    /// frames `emitted..`, found by planning the clip from [`Self::keep_from`] on.
    pub fn tail(
        &self,
        len: usize,
        done: usize,
        emitted: usize,
        frames_for: &dyn Fn(usize) -> usize,
    ) -> Vec<WindowPlan> {
        let offset = self.keep_from(done).min(len);
        let first_frame = offset / self.frame_hop;
        let sub = plan_windows(
            len - offset,
            self.window,
            self.hop_asked,
            self.frame_hop,
            frames_for,
        );
        sub.into_iter()
            .filter_map(|p| {
                let dest = p.dest + first_frame;
                let end = dest + p.take.len();
                if end <= emitted {
                    return None;
                }
                let skip = emitted.saturating_sub(dest);
                Some(WindowPlan {
                    start: p.start + offset,
                    end: p.end + offset,
                    take: p.take.start + skip..p.take.end,
                    dest: dest + skip,
                })
            })
            .collect()
    }
}

/// The frames regular windows own in a long clip: window 0's and an interior window's, read
/// off [`plan_windows`] itself. `None` if they do not tile the frames exactly (then nothing is
/// emitted before the end: still correct, only later).
fn periodic_takes(
    window: usize,
    hop: usize,
    grid: usize,
    frame_hop: usize,
    frames_for: &dyn Fn(usize) -> usize,
) -> Option<(Range<usize>, Range<usize>)> {
    let len = window.checked_add(grid.checked_mul(8)?)?.checked_add(1)?;
    let plans = plan_windows(len, window, hop, frame_hop, frames_for);
    let g = grid / frame_hop;
    let first = plans.first().filter(|p| p.start == 0)?.take.clone();
    let second = &plans.iter().find(|p| p.start == grid)?.take;
    let third = &plans.iter().find(|p| p.start == 2 * grid)?.take;
    let tiles =
        first.start == 0 && second == third && first.end == g + second.start && second.len() == g;
    let rest = second.clone();
    tiles.then_some((first, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> usize {
        if n < 400 { 0 } else { (n - 400) / 320 + 1 }
    }

    /// Stream `len` samples in chunks of `chunk`, collecting the windows as a session would.
    fn streamed(plan: &StreamPlan, len: usize, chunk: usize) -> Vec<WindowPlan> {
        let (mut out, mut received, mut done, mut emitted) = (Vec::new(), 0, 0, 0);
        while received < len {
            received = (received + chunk).min(len);
            while let Some(p) = plan.ready(done, received) {
                assert_eq!(p.dest, emitted, "gap before window {done}");
                assert!(p.end <= received);
                assert!(p.start >= plan.keep_from(done), "needs dropped samples");
                emitted += p.take.len();
                out.push(p);
                done += 1;
            }
        }
        for p in plan.tail(len, done, emitted, &frames) {
            assert!(
                p.start >= plan.keep_from(done),
                "tail needs dropped samples"
            );
            out.push(p);
        }
        out
    }

    /// The frames each plan writes, as (global frame, window start, window end, local frame).
    fn frame_sources(plans: &[WindowPlan]) -> Vec<(usize, usize, usize, usize)> {
        plans
            .iter()
            .flat_map(|p| {
                p.take
                    .clone()
                    .map(move |t| (p.dest + t - p.take.start, p.start, p.end, t))
            })
            .collect()
    }

    #[test]
    fn streamed_windows_give_every_frame_as_the_one_shot_plan_does() {
        for (window, hop) in [
            (120_000, 60_000),
            (120_000, 120_000),
            (48_000, 16_000),
            (48_000, 100),
            (24_000, 7_000),
            (0, 0),
        ] {
            let plan = StreamPlan::new(window, hop, 320, &frames);
            if window > 0 {
                assert!(plan.takes.is_some(), "window {window} hop {hop}");
            }
            let mut lens: Vec<usize> = vec![0, 399, 400, 401, 1_000, 23_999, 24_000, 120_001];
            lens.extend((0..200).map(|i| 100_000 + i * 2_371));
            lens.extend((0..40).map(|i| window + 2 * hop + i * 160));
            // every length on a fine grid over the first few windows, where the end matters
            lens.extend((0..(window + 5 * hop.max(320)) / 53).map(|i| i * 53));
            for len in lens {
                let want = frame_sources(&plan_windows(len, window, hop, 320, frames));
                for chunk in [1_000, 4_410, 77_777, 1_000_000] {
                    let got = frame_sources(&streamed(&plan, len, chunk));
                    assert_eq!(
                        got, want,
                        "window {window} hop {hop} len {len} chunk {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn memory_stays_a_few_windows_deep() {
        let plan = StreamPlan::new(120_000, 60_000, 320, &frames);
        // after 100 s of audio the oldest sample kept is at most a window and two hops back
        let received = 2_400_000;
        let mut done = 0;
        while plan.ready(done, received).is_some() {
            done += 1;
        }
        assert!(received - plan.keep_from(done) <= 120_000 + 2 * 60_000);
        assert!(done > 30);
    }
}
