//! Cutting a clip into overlapping windows and choosing, for every output frame, the window in
//! which it is most central.

use std::ops::Range;

/// One model pass: samples `[start, end)` of the clip, of whose output frames `take` are kept
/// and written from global frame `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    pub start: usize,
    pub end: usize,
    pub take: Range<usize>,
    pub dest: usize,
}

/// Cut `len` samples into windows of `window` samples every `hop` samples (`hop` a multiple of
/// the frame hop `frame_hop`, so window frames align with the clip's frames), the last window
/// moved back to end at the clip's end. Each global frame is taken from the window in which it
/// is most central. `frames_for` is the conv length formula.
pub fn plan_windows(
    len: usize,
    window: usize,
    hop: usize,
    frame_hop: usize,
    frames_for: impl Fn(usize) -> usize,
) -> Vec<WindowPlan> {
    let total = frames_for(len);
    if total == 0 {
        return Vec::new();
    }
    if window == 0 || window >= len {
        return vec![WindowPlan {
            start: 0,
            end: len,
            take: 0..total,
            dest: 0,
        }];
    }
    // On the frame grid, and no longer than a window's frame count so windows leave no gap.
    let hop = (hop / frame_hop).clamp(1, frames_for(window).max(1)) * frame_hop;
    let mut starts = Vec::new();
    let mut s = 0;
    while s + window < len {
        starts.push(s);
        s += hop;
    }
    // The last window ends at the clip's end (its start kept on the frame grid); a window that
    // would start less than half a hop before it is replaced by it, if that leaves no gap.
    let last = (len - window) / frame_hop * frame_hop;
    if let [.., before, prev] = starts[..]
        && prev + hop / 2 > last
        && last - before <= frames_for(window) * frame_hop
    {
        starts.pop();
    }
    starts.push(last);
    let spans: Vec<(usize, usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(i, &st)| {
            let end = if i + 1 == starts.len() {
                len
            } else {
                st + window
            };
            (st, end, frames_for(end - st))
        })
        .collect();
    // For each global frame, the window whose centre is nearest (ties to the earlier window).
    let mut owner = vec![0usize; total];
    for (t, o) in owner.iter_mut().enumerate() {
        let mut best = (f64::INFINITY, 0);
        for (i, &(st, _, n)) in spans.iter().enumerate() {
            let first = st / frame_hop;
            if t < first || t >= first + n {
                continue;
            }
            let dist = ((t - first) as f64 - (n as f64 - 1.0) / 2.0).abs();
            if dist < best.0 {
                best = (dist, i);
            }
        }
        debug_assert!(best.0.is_finite(), "frame {t} is in no window");
        *o = best.1;
    }
    let mut plans = Vec::new();
    let mut t = 0;
    while t < total {
        let i = owner[t];
        let mut u = t;
        while u < total && owner[u] == i {
            u += 1;
        }
        let (st, end, _) = spans[i];
        let first = st / frame_hop;
        plans.push(WindowPlan {
            start: st,
            end,
            take: t - first..u - first,
            dest: t,
        });
        t = u;
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> usize {
        if n < 400 { 0 } else { (n - 400) / 320 + 1 }
    }

    #[test]
    fn windows_cover_every_frame_once_with_the_whole_clip_count() {
        for len in [400, 1000, 120_000, 120_001, 200_000, 359_999, 1_000_000] {
            for (window, hop) in [
                (120_000, 60_000),
                (120_000, 120_000),
                (48_000, 16_000),
                (0, 0),
            ] {
                let plans = plan_windows(len, window, hop, 320, frames);
                let total = frames(len);
                let mut next = 0;
                for p in &plans {
                    assert_eq!(p.dest, next, "len {len} window {window}");
                    assert!(
                        p.take.end <= frames(p.end - p.start),
                        "len {len} window {window} hop {hop}: {plans:?}"
                    );
                    assert_eq!(p.start % 320, 0);
                    // frame alignment: local frame i of the window is global frame start/320 + i
                    assert_eq!(p.start / 320 + p.take.start, p.dest);
                    next += p.take.len();
                }
                assert_eq!(next, total, "len {len} window {window} hop {hop}");
            }
        }
    }

    #[test]
    fn frames_come_from_the_window_where_they_are_central() {
        // 10 s at 24 kHz, 5 s windows, 2.5 s hop: windows at 0, 2.5, 5 s.
        let plans = plan_windows(240_000, 120_000, 60_000, 320, frames);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].take.start, 0);
        // the first switch happens near the middle of the overlap (frame ~ 281 of 749)
        assert!((270..=290).contains(&plans[1].dest), "{plans:?}");
    }
}
