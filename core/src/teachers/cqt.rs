//! The musical teacher: a constant-Q transform whose magnitudes MERT regresses on masked frames.
//!
//! Mirrors nnAudio 0.3.x `CQT1992v2` with MERT's arguments (`features.cqt.CQT(sr=24000,
//! hop_length=320, fmin=32.7, n_bins=336, bins_per_octave=48, filter_scale=1, norm=1,
//! window='hann', center=True, pad_mode='constant', output_format='Magnitude')`): time-domain
//! kernels `w[n] * exp(2πi f_k n / sr) / l_k` (periodic Hann of length `l_k = ceil(Q sr / f_k)`,
//! L1-normalised) centred in a power-of-two width, correlated with the zero-padded signal at
//! stride `hop`, scaled by `sqrt(l_k)`, magnitude taken.
//!
//! Frames: `1 + floor(L / hop)`; frame `t` is centred on sample `t * hop`. The model's frame `t`
//! spans samples `[320 t, 320 t + 400)`, so CQT frame `t` pairs with model frame `t`: the first
//! `floor((L - 400) / 320) + 1` CQT frames are the targets, the one or two after are unused.
//!
//! Each kernel is non-zero only on its `l_k` taps, so the CPU path multiplies by those taps
//! alone ("sparse kernel multiplication"): about 7 M multiply-adds per frame for MERT's
//! parameters, against 44 M for the dense 65 536-wide correlation the reference runs.
//! [`cqt_tensor`] is the same transform as a strided conv for use inside a Burn graph.

use serde::{Deserialize, Serialize};

use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{MertError, Result};

/// CQT parameters; defaults are MERT's (nnAudio argument names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CqtConfig {
    pub sample_rate: u32,
    pub hop_length: usize,
    pub fmin: f64,
    pub n_bins: usize,
    pub bins_per_octave: usize,
    pub filter_scale: f64,
}

impl Default for CqtConfig {
    fn default() -> Self {
        Self {
            sample_rate: 24_000,
            hop_length: 320,
            fmin: 32.7,
            n_bins: 336,
            bins_per_octave: 48,
            filter_scale: 1.0,
        }
    }
}

impl CqtConfig {
    /// Check the parameters, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(MertError::config(field, msg));
        if self.sample_rate == 0 {
            return bad("sample_rate", "must be positive");
        }
        if self.hop_length == 0 {
            return bad("hop_length", "must be positive");
        }
        if self.n_bins == 0 {
            return bad("n_bins", "must be positive");
        }
        if self.bins_per_octave == 0 {
            return bad("bins_per_octave", "must be positive");
        }
        if !(self.fmin.is_finite() && self.fmin > 0.0) {
            return bad("fmin", "must be a positive frequency");
        }
        if !(self.filter_scale.is_finite() && self.filter_scale > 0.0) {
            return bad("filter_scale", "must be positive");
        }
        let top = self.fmin * 2f64.powf((self.n_bins - 1) as f64 / self.bins_per_octave as f64);
        if top > self.sample_rate as f64 / 2.0 {
            return bad(
                "n_bins",
                &format!(
                    "the top bin ({top:.1} Hz) is above the Nyquist frequency; use fewer bins"
                ),
            );
        }
        Ok(())
    }

    /// Output frames for `samples` input samples (`1 + floor(L / hop)`, centred frames).
    pub fn frames_for(&self, samples: usize) -> usize {
        1 + samples / self.hop_length
    }
}

/// One bin's kernel: its non-zero taps and where they sit in the centred kernel window.
#[derive(Debug, Clone)]
struct BinKernel {
    /// Offset of the first tap relative to the frame centre (negative: before it).
    offset: isize,
    re: Vec<f32>,
    /// Imaginary parts, negated so that `im = Σ x · im_neg` (the reference takes `-conv(x, imag)`).
    im_neg: Vec<f32>,
    /// `sqrt(l_k)`, the reference's "librosa" output scaling.
    scale: f32,
}

/// The kernels for one config, built once (in f64, stored f32 like the reference's complex64).
#[derive(Debug, Clone)]
pub struct Cqt {
    config: CqtConfig,
    bins: Vec<BinKernel>,
    /// Power-of-two kernel width (65 536 for MERT); the signal is padded by half of it.
    width: usize,
}

impl Cqt {
    pub fn new(config: CqtConfig) -> Result<Self> {
        config.validate()?;
        let sr = config.sample_rate as f64;
        let bpo = config.bins_per_octave as f64;
        let q = config.filter_scale / (2f64.powf(1.0 / bpo) - 1.0);
        let freqs: Vec<f64> = (0..config.n_bins)
            .map(|k| config.fmin * 2f64.powf(k as f64 / bpo))
            .collect();
        let lengths: Vec<usize> = freqs.iter().map(|f| (q * sr / f).ceil() as usize).collect();
        let max_len = lengths.iter().copied().max().unwrap_or(1).max(1);
        let width = max_len.next_power_of_two();
        let bins = freqs
            .iter()
            .zip(&lengths)
            .map(|(&f, &l)| {
                // Centre the l taps in the width; odd lengths put the extra zero on the right.
                let centred = ((width as f64) / 2.0 - l as f64 / 2.0).ceil() as isize;
                let start = if l % 2 == 1 { centred - 1 } else { centred };
                // Periodic Hann (scipy get_window('hann', l, fftbins=True)); phase index from
                // floor(-l/2) (only a constant phase, irrelevant to magnitudes, kept for parity).
                let n0 = -((l as isize + 1) / 2);
                let (mut re, mut im) = (Vec::with_capacity(l), Vec::with_capacity(l));
                let mut l1 = 0f64;
                for j in 0..l {
                    let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / l as f64).cos();
                    let phase = 2.0 * std::f64::consts::PI * f * (n0 + j as isize) as f64 / sr;
                    let (s, c) = phase.sin_cos();
                    let (r, i) = (w * c / l as f64, w * s / l as f64);
                    l1 += (r * r + i * i).sqrt();
                    re.push(r);
                    im.push(i);
                }
                BinKernel {
                    offset: start - (width / 2) as isize,
                    re: re.iter().map(|r| (r / l1) as f32).collect(),
                    im_neg: im.iter().map(|i| (-i / l1) as f32).collect(),
                    scale: (l as f32).sqrt(),
                }
            })
            .collect();
        Ok(Self {
            config,
            bins,
            width,
        })
    }

    /// MERT's CQT.
    pub fn mert() -> Self {
        // The defaults are valid by construction.
        Self::new(CqtConfig::default())
            .unwrap_or_else(|_| unreachable!("MERT's CQT config is valid"))
    }

    /// The transform for `config`, built once per process and shared (the MERT kernels take
    /// 3.5 M taps to build).
    pub fn cached(config: &CqtConfig) -> Result<std::sync::Arc<Self>> {
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<Vec<Arc<Cqt>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        let mut built = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = built.iter().find(|c| &c.config == config) {
            return Ok(found.clone());
        }
        let cqt = Arc::new(Self::new(config.clone())?);
        built.push(cqt.clone());
        Ok(cqt)
    }

    pub fn config(&self) -> &CqtConfig {
        &self.config
    }

    /// Kernel width in taps (the reference's `kernel_width`).
    pub fn width(&self) -> usize {
        self.width
    }

    /// CQT magnitudes of mono `samples` at the config's rate: `[frames, n_bins]` row-major.
    /// `threads` > 1 splits the bins across scoped threads.
    pub fn magnitudes(&self, samples: &[f32], threads: usize) -> Result<Vec<f32>> {
        if samples.is_empty() {
            return Err(MertError::Invalid("CQT: the audio is empty".into()));
        }
        check_finite(samples)?;
        // the same blocks as a stream's, read from the clip in place
        let frames = self.config.frames_for(samples.len());
        let mut out = Vec::with_capacity(frames * self.bins.len());
        for t0 in (0..frames).step_by(BLOCK) {
            let t1 = (t0 + BLOCK).min(frames);
            out.extend(self.block_of(samples, 0, samples.len(), t0, t1, threads));
        }
        Ok(out)
    }

    /// Rows `[t0, t1)` of a signal whose samples from index `base` on are `buf` (`seen` in all;
    /// zero before 0 and from `seen` on).
    pub(crate) fn block_of(
        &self,
        buf: &[f32],
        base: usize,
        seen: usize,
        t0: usize,
        t1: usize,
        threads: usize,
    ) -> Vec<f32> {
        let hop = self.config.hop_length;
        let first = (t0 * hop) as isize - (self.width / 2) as isize;
        let len = (t1 - 1 - t0) * hop + self.width;
        let padded: Vec<f32> = (0..len as isize)
            .map(|i| {
                let s = first + i;
                if s >= base as isize && (s as usize) < seen {
                    buf[s as usize - base]
                } else {
                    0.0
                }
            })
            .collect();
        self.block(&padded, t1 - t0, threads)
    }

    /// `[frames, n_bins]` for one block; `padded[0]` is the first sample of frame 0's window.
    fn block(&self, padded: &[f32], frames: usize, threads: usize) -> Vec<f32> {
        let n_bins = self.bins.len();
        let mut out = vec![0f32; frames * n_bins];
        let threads = threads.clamp(1, n_bins);
        if threads == 1 {
            let mut col = vec![0f32; frames];
            for (b, kernel) in self.bins.iter().enumerate() {
                self.bin_column(kernel, padded, &mut col);
                for (t, v) in col.iter().enumerate() {
                    out[t * n_bins + b] = *v;
                }
            }
            return out;
        }
        // Bins are handed out longest kernel first (bin 0) through a shared counter.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let columns: Vec<Vec<(usize, Vec<f32>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(kernel) = self.bins.get(b) else {
                                break;
                            };
                            let mut col = vec![0f32; frames];
                            self.bin_column(kernel, padded, &mut col);
                            done.push((b, col));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for (b, col) in columns.into_iter().flatten() {
            for (t, v) in col.iter().enumerate() {
                out[t * n_bins + b] = *v;
            }
        }
        out
    }

    /// One bin over all frames of a block, six frames per pass over the kernel so each kernel
    /// tap is loaded once for six multiply-adds (twelve accumulators fit the AVX2 registers).
    fn bin_column(&self, kernel: &BinKernel, padded: &[f32], col: &mut [f32]) {
        let hop = self.config.hop_length;
        let base = ((self.width / 2) as isize + kernel.offset) as usize;
        let len = kernel.re.len();
        let mut t = 0;
        while t + FRAMES <= col.len() {
            let at = t * hop + base;
            let x = &padded[at..at + (FRAMES - 1) * hop + len];
            let sums = dot2_frames(x, hop, &kernel.re, &kernel.im_neg);
            for (f, (re, im)) in sums.into_iter().enumerate() {
                col[t + f] = (re * kernel.scale).hypot(im * kernel.scale);
            }
            t += FRAMES;
        }
        for (dt, v) in col[t..].iter_mut().enumerate() {
            let at = (t + dt) * hop + base;
            let sums = dot2_frames_generic::<1, false>(
                &padded[at..at + len],
                hop,
                &kernel.re,
                &kernel.im_neg,
            );
            *v = (sums[0].0 * kernel.scale).hypot(sums[0].1 * kernel.scale);
        }
    }
}

/// Frames computed together in one pass over a kernel.
const FRAMES: usize = 6;

/// For `f` in `0..FRAMES`: `(Σ x[f·hop + j]·a[j], Σ x[f·hop + j]·b[j])`, vectorised where the
/// CPU allows.
fn dot2_frames(x: &[f32], hop: usize, a: &[f32], b: &[f32]) -> [(f32, f32); FRAMES] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dot2_frames_avx2(x, hop, a, b) };
        }
    }
    dot2_frames_generic::<FRAMES, false>(x, hop, a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot2_frames_avx2(x: &[f32], hop: usize, a: &[f32], b: &[f32]) -> [(f32, f32); FRAMES] {
    dot2_frames_generic::<FRAMES, true>(x, hop, a, b)
}

/// Eight lanes per frame and product, so each accumulator is one vector register.
#[inline(always)]
fn dot2_frames_generic<const F: usize, const FMA: bool>(
    x: &[f32],
    hop: usize,
    a: &[f32],
    b: &[f32],
) -> [(f32, f32); F] {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (mut sa, mut sb) = ([[0f32; LANES]; F], [[0f32; LANES]; F]);
    let chunks = n / LANES;
    for c in 0..chunks {
        let j = c * LANES;
        let (ka, kb) = (&a[j..j + LANES], &b[j..j + LANES]);
        for f in 0..F {
            let xs = &x[f * hop + j..f * hop + j + LANES];
            for i in 0..LANES {
                if FMA {
                    sa[f][i] = xs[i].mul_add(ka[i], sa[f][i]);
                    sb[f][i] = xs[i].mul_add(kb[i], sb[f][i]);
                } else {
                    sa[f][i] += xs[i] * ka[i];
                    sb[f][i] += xs[i] * kb[i];
                }
            }
        }
    }
    let mut out = [(0f32, 0f32); F];
    for f in 0..F {
        let (mut ra, mut rb) = (sa[f].iter().sum::<f32>(), sb[f].iter().sum::<f32>());
        for j in chunks * LANES..n {
            ra += x[f * hop + j] * a[j];
            rb += x[f * hop + j] * b[j];
        }
        out[f] = (ra, rb);
    }
    out
}

/// Frames are computed in blocks of this many, so the padded copy of the signal stays bounded
/// (and a stream's blocks fall where a whole clip's do, which keeps the two identical).
pub(crate) const BLOCK: usize = 4096;

pub(crate) fn check_finite(samples: &[f32]) -> Result<()> {
    if samples.iter().any(|x| !x.is_finite()) {
        return Err(MertError::Invalid(
            "CQT: the audio holds NaN or infinite samples".into(),
        ));
    }
    Ok(())
}

impl Cqt {
    /// The kernels as conv weights for [`cqt_tensor`]: `[2 * n_bins, 1, width]`, real parts
    /// then negated imaginary parts, each already scaled by `sqrt(l_k)`.
    pub fn conv_weights(&self, device: &Device) -> Tensor<3> {
        let n = self.bins.len();
        let mut w = vec![0f32; 2 * n * self.width];
        for (b, k) in self.bins.iter().enumerate() {
            let start = (self.width as isize / 2 + k.offset) as usize;
            for (j, (&r, &i)) in k.re.iter().zip(&k.im_neg).enumerate() {
                w[b * self.width + start + j] = r * k.scale;
                w[(n + b) * self.width + start + j] = i * k.scale;
            }
        }
        Tensor::from_data(TensorData::new(w, [2 * n, 1, self.width]), device)
    }
}

/// The same CQT inside a Burn graph: `audio` `[batch, samples]`, `weights` from
/// [`Cqt::conv_weights`] -> magnitudes `[batch, frames, n_bins]`.
pub fn cqt_tensor(audio: Tensor<2>, weights: Tensor<3>, hop: usize) -> Tensor<3> {
    let [_, _, width] = weights.dims();
    let n_bins = weights.dims()[0] / 2;
    let half = width / 2;
    // [batch, 1, samples] -> [batch, 2 * n_bins, frames]; zero padding half a kernel each side
    let y = conv1d(
        audio.unsqueeze_dim(1),
        weights,
        None,
        ConvOptions::new([hop], [half], [1], 1),
    );
    let re = y.clone().narrow(1, 0, n_bins);
    let im = y.narrow(1, n_bins, n_bins);
    (re.clone() * re + im.clone() * im).sqrt().swap_dims(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Cqt {
        // Short kernels (width 1024) so the tests are quick; same construction as MERT's.
        Cqt::new(CqtConfig {
            fmin: 500.0,
            n_bins: 36,
            bins_per_octave: 12,
            ..CqtConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn mert_kernel_geometry_matches_the_reference() {
        let cqt = Cqt::mert();
        assert_eq!(cqt.width(), 65_536);
        assert_eq!(cqt.bins[0].re.len(), 50_460);
        assert_eq!(cqt.bins[335].re.len(), 400);
        assert_eq!(cqt.config.frames_for(48_000), 151);
        assert_eq!(cqt.config.frames_for(120_000), 376);
    }

    #[test]
    fn a_sine_peaks_in_its_bin() {
        let cqt = small();
        let f = 500.0 * 2f64.powf(10.0 / 12.0);
        let x: Vec<f32> = (0..24_000)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / 24_000.0).sin() as f32)
            .collect();
        let m = cqt.magnitudes(&x, 1).unwrap();
        let row = &m[37 * 36..38 * 36];
        let peak = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(peak, 10);
    }

    #[test]
    fn threads_and_the_burn_path_agree_with_the_plain_path() {
        let cqt = small();
        let x: Vec<f32> = (0..9_001)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        let one = cqt.magnitudes(&x, 1).unwrap();
        assert_eq!(one, cqt.magnitudes(&x, 3).unwrap());
        let device = Device::flex();
        let audio = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, x.len()]), &device);
        let y = cqt_tensor(audio, cqt.conv_weights(&device), 320);
        assert_eq!(y.dims(), [1, cqt.config.frames_for(x.len()), 36]);
        let y = y.into_data().try_into_vec::<f32>().unwrap();
        let max = one.iter().cloned().fold(0f32, f32::max);
        let err = y
            .iter()
            .zip(&one)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err / max < 1e-5, "burn vs plain: {}", err / max);
    }

    #[test]
    fn a_stream_in_any_chunks_equals_the_whole_clip() {
        let cqt = small();
        // Three blocks and a bit, so rows come out while samples are still going in.
        let n = 3 * BLOCK * 320 + 12_345;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        let whole = cqt.magnitudes(&x, 2).unwrap();
        assert_eq!(whole.len(), cqt.config.frames_for(n) * 36);
        let (mut stream, mut out, mut at, mut step) = (cqt.stream(1), Vec::new(), 0, 1usize);
        let mut early = 0;
        while at < n {
            step = (step * 48_271 + 11) % 200_003;
            let end = (at + step).min(n);
            out.extend(stream.push(&x[at..end]).unwrap());
            out.extend(stream.push(&[]).unwrap());
            at = end;
            if at < n {
                early = out.len();
            }
        }
        assert!(early >= 2 * BLOCK * 36, "rows held back: {early}");
        out.extend(stream.finish().unwrap());
        assert_eq!(out, whole);
        // One block over the whole clip (the plain definition) agrees to float rounding.
        let plain = cqt.block_of(&x, 0, n, 0, cqt.config.frames_for(n), 1);
        let max = plain.iter().cloned().fold(0f32, f32::max);
        let err = plain
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err / max < 1e-6, "blocks vs one block: {}", err / max);
        assert!(cqt.stream(1).finish().is_err());
        assert!(cqt.stream(1).push(&[f32::INFINITY]).is_err());
    }

    #[test]
    fn kernels_are_built_once_per_config() {
        let config = small().config.clone();
        let a = Cqt::cached(&config).unwrap();
        let b = Cqt::cached(&config).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        let other = Cqt::cached(&CqtConfig {
            hop_length: 160,
            ..config
        })
        .unwrap();
        assert!(!std::sync::Arc::ptr_eq(&a, &other));
    }

    #[test]
    fn bad_input_and_configs_are_errors() {
        let cqt = small();
        assert!(cqt.magnitudes(&[], 1).is_err());
        assert!(cqt.magnitudes(&[0.0, f32::NAN], 1).is_err());
        assert_eq!(cqt.magnitudes(&[0.0; 10], 1).unwrap(), vec![0.0; 36]);
        let e = Cqt::new(CqtConfig {
            n_bins: 500,
            ..CqtConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("n_bins"), "{e}");
        let e = Cqt::new(CqtConfig {
            hop_length: 0,
            ..CqtConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("hop_length"));
    }
}
