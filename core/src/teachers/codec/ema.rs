//! Training the residual vector quantiser: encodec's `EuclideanCodebook` in training mode
//! (`encodec/quantization/core_vq.py`), one codebook after the other on the residual.
//!
//! Per codebook and batch (rows `x`, the residual it sees):
//! 1. k-means initialisation on the first batch (`kmeans`: centroids sampled from the batch,
//!    `kmeans_iters` Lloyd iterations; an empty cluster keeps its centroid), `inited = 1`,
//!    `cluster_size` = the clusters' sizes;
//! 2. dead codes (EMA cluster size below `dead_code_threshold`) are replaced by random rows of
//!    the batch;
//! 3. codes = nearest code by squared distance, quantised rows = those codes' vectors;
//! 4. EMA: `cluster_size ← decay·cluster_size + (1 - decay)·counts`,
//!    `embed_avg ← decay·embed_avg + (1 - decay)·Σ rows per code`,
//!    `embed = embed_avg / laplace(cluster_size)` with `laplace(n) = (n + ε) / (Σn + K ε) · Σn`.
//!
//! Deviations, on purpose, both to keep `embed_avg = embed · cluster_size` (the invariant the
//! EMA step relies on): encodec's k-means init sets `embed_avg` to the centroids themselves,
//! so the first EMA step divides them by the cluster sizes and the codebooks collapse towards
//! zero for about `1 / (1 - decay)` steps; here `embed_avg = centroid · size`. And encodec's
//! `replace_` writes new vectors into `embed` only, so the EMA step right after recomputes
//! `embed` from `embed_avg` and erases the replacement (dead codes stay dead); here a replaced
//! code also gets `cluster_size = threshold` and `embed_avg = threshold · row`, so it survives
//! the EMA step as the sampled row. encodec also replaces after the search, so a new code
//! first serves the next batch, by when a fast-moving encoder has left it behind (a small run
//! then collapsed to one code per batch); here codes are replaced before the search, on the
//! rows they are drawn from.
//!
//! The quantiser's output to the decoder is the straight-through sum of the chosen vectors
//! (`x + (q - x).detach()`); the commitment loss is encodec's: the mean over codebooks of
//! `mse(q_l, r_l)`, of which only the first codebook's (`r_0 = x`) has a gradient, because
//! encodec's residuals are built from detached differences. The codebooks are not parameters.
//!
//! Random draws come from a [`StepRng`] the caller derives from `(seed, step)`, so a resumed
//! run replaces the same codes as an unbroken one.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::rvq::embed_key;
use crate::error::{MertError, Result};
use crate::load::tensors::{HostTensor, TensorMap};
use crate::pretrain::StepRng;

/// EMA settings (encodec's `ResidualVectorQuantizer` defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    pub decay: f64,
    pub epsilon: f64,
    /// Codes whose EMA cluster size falls below this are replaced (0 = never). Keep it below
    /// the rows per batch divided by the codebook size, or every code counts as dead.
    pub dead_code_threshold: f64,
    pub kmeans_iters: usize,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.99,
            epsilon: 1e-5,
            dead_code_threshold: 2.0,
            kmeans_iters: 50,
        }
    }
}

/// One codebook's state (encodec's buffers).
#[derive(Debug, Clone, PartialEq)]
pub struct EmaCodebook {
    /// `[bins, dim]`
    pub embed: Vec<f32>,
    pub embed_avg: Vec<f32>,
    /// `[bins]`
    pub cluster_size: Vec<f32>,
    pub inited: bool,
}

/// The `n_q` codebooks being trained.
#[derive(Debug, Clone, PartialEq)]
pub struct EmaRvq {
    pub config: EmaConfig,
    pub bins: usize,
    pub dim: usize,
    pub books: Vec<EmaCodebook>,
}

/// What one training pass of the quantiser gives back (host rows `[N, dim]`).
#[derive(Debug, Clone)]
pub struct RvqStep {
    /// Sum of the chosen code vectors over codebooks.
    pub quantized: Vec<f32>,
    /// The first codebook's chosen vectors (the target of the commitment gradient).
    pub first: Vec<f32>,
    /// encodec's commitment loss: mean over codebooks of `mse(q_l, r_l)`.
    pub commitment: f64,
    /// Codes `[N, n_q]`.
    pub codes: Vec<i64>,
    /// Distinct codes used by the first codebook in this batch.
    pub used_first: usize,
    /// Codes replaced as dead, over all codebooks.
    pub replaced: usize,
}

impl EmaRvq {
    /// `n_q` zero codebooks, not initialised (the first batch initialises them).
    pub fn new(n_q: usize, bins: usize, dim: usize, config: EmaConfig) -> Self {
        let book = EmaCodebook {
            embed: vec![0.0; bins * dim],
            embed_avg: vec![0.0; bins * dim],
            cluster_size: vec![0.0; bins],
            inited: false,
        };
        Self {
            config,
            bins,
            dim,
            books: vec![book; n_q],
        }
    }

    /// Take `quantizer.vq.layers.{q}._codebook.{embed, embed_avg, cluster_size, inited}` for
    /// `q < n_q` out of `tensors`, checked; a missing or mis-shaped one is named.
    pub fn from_state_dict(
        tensors: &mut TensorMap,
        n_q: usize,
        bins: usize,
        dim: usize,
        config: EmaConfig,
    ) -> Result<Self> {
        let mut rvq = Self::new(n_q, bins, dim, config);
        for (q, book) in rvq.books.iter_mut().enumerate() {
            let base = embed_key(q);
            let base = base.trim_end_matches(".embed");
            let mut take = |field: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let key = format!("{base}.{field}");
                let t = tensors.remove(&key).ok_or_else(|| {
                    MertError::tensor(
                        &tensors.source,
                        &key,
                        format!("missing; expected shape {shape:?}"),
                    )
                })?;
                if t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                    return Err(MertError::tensor(
                        &tensors.source,
                        &key,
                        format!("expected shape {shape:?}, found {:?}", t.shape),
                    ));
                }
                Ok(t.data)
            };
            book.embed = take("embed", &[bins, dim])?;
            book.embed_avg = take("embed_avg", &[bins, dim])?;
            book.cluster_size = take("cluster_size", &[bins])?;
            book.inited = take("inited", &[1])?[0] != 0.0;
        }
        Ok(rvq)
    }

    /// The buffers under encodec's names (`inited` as a one-element float, as torch saves it).
    pub fn to_state_dict(&self, map: &mut TensorMap) {
        for (q, book) in self.books.iter().enumerate() {
            let key = embed_key(q);
            let base = key.trim_end_matches(".embed");
            let (b, d) = (self.bins, self.dim);
            map.insert(
                format!("{base}.embed"),
                HostTensor::new(vec![b, d], book.embed.clone()),
            );
            map.insert(
                format!("{base}.embed_avg"),
                HostTensor::new(vec![b, d], book.embed_avg.clone()),
            );
            map.insert(
                format!("{base}.cluster_size"),
                HostTensor::new(vec![b], book.cluster_size.clone()),
            );
            map.insert(
                format!("{base}.inited"),
                HostTensor::new(vec![1], vec![f32::from(u8::from(book.inited))]),
            );
        }
    }

    /// Nearest code of every row of `x` `[N, dim]` in codebook `q` (`|x|² - 2x·e + |e|²`, on
    /// `device`, the first index among ties).
    fn nearest(
        embed: &[f32],
        bins: usize,
        x: &[f32],
        dim: usize,
        device: &Device,
    ) -> Result<Vec<usize>> {
        let n = x.len() / dim;
        let xt = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, dim]), device);
        let e = Tensor::<2>::from_data(TensorData::new(embed.to_vec(), [bins, dim]), device);
        let ee = e.clone().powi_scalar(2).sum_dim(1).reshape([1, bins]);
        let xx = xt.clone().powi_scalar(2).sum_dim(1);
        let dist = xx - xt.matmul(e.transpose()).mul_scalar(2.0) + ee;
        let idx = dist.argmin(1).reshape([n]);
        let idx = idx.try_into_vec_as::<i64>().map_err(|e| {
            MertError::Invalid(format!("codec quantiser: cannot read codes: {e:?}"))
        })?;
        Ok(idx.into_iter().map(|i| i as usize).collect())
    }

    /// Codes and quantised rows of `x` `[N, dim]` with the current codebooks (no update).
    pub fn quantize(&self, x: &[f32], device: &Device) -> Result<(Vec<f32>, Vec<i64>)> {
        let (dim, n_q) = (self.dim, self.books.len());
        let n = x.len() / dim;
        let mut residual = x.to_vec();
        let mut quantized = vec![0f32; x.len()];
        let mut codes = vec![0i64; n * n_q];
        for (q, book) in self.books.iter().enumerate() {
            let idx = Self::nearest(&book.embed, self.bins, &residual, dim, device)?;
            for (row, &c) in idx.iter().enumerate() {
                codes[row * n_q + q] = c as i64;
                let e = &book.embed[c * dim..(c + 1) * dim];
                for d in 0..dim {
                    residual[row * dim + d] -= e[d];
                    quantized[row * dim + d] += e[d];
                }
            }
        }
        Ok((quantized, codes))
    }

    /// k-means-initialise the codebooks not initialised yet on `x` `[N, dim]` (each on the
    /// residual the codebooks before it leave), without an EMA step: the state a fresh codec
    /// has before its first update (what `mert train-codec` scores as the random baseline).
    pub fn initialize(&mut self, x: &[f32], rng: &mut StepRng, device: &Device) -> Result<()> {
        let (dim, bins, iters) = (self.dim, self.bins, self.config.kmeans_iters);
        if x.is_empty() || !x.len().is_multiple_of(dim) {
            return Err(MertError::Invalid(format!(
                "codec quantiser: {} values are not rows of {dim}",
                x.len()
            )));
        }
        let mut residual = x.to_vec();
        for book in &mut self.books {
            if !book.inited {
                kmeans_init(book, &residual, bins, dim, iters, rng, device)?;
            }
            let idx = Self::nearest(&book.embed, bins, &residual, dim, device)?;
            for (row, &c) in idx.iter().enumerate() {
                for d in 0..dim {
                    residual[row * dim + d] -= book.embed[c * dim + d];
                }
            }
        }
        Ok(())
    }

    /// One training pass over `x` `[N, dim]` (the encoder's output, detached): quantise and
    /// update every codebook.
    pub fn train_step(&mut self, x: &[f32], rng: &mut StepRng, device: &Device) -> Result<RvqStep> {
        let (dim, bins, n_q) = (self.dim, self.bins, self.books.len());
        let n = x.len() / dim;
        if n == 0 || x.len() != n * dim {
            return Err(MertError::Invalid(format!(
                "codec quantiser: {} values are not rows of {dim}",
                x.len()
            )));
        }
        let cfg = self.config.clone();
        let mut residual = x.to_vec();
        let mut step = RvqStep {
            quantized: vec![0f32; x.len()],
            first: Vec::new(),
            commitment: 0.0,
            codes: vec![0i64; n * n_q],
            used_first: 0,
            replaced: 0,
        };
        for (q, book) in self.books.iter_mut().enumerate() {
            if !book.inited {
                kmeans_init(book, &residual, bins, dim, cfg.kmeans_iters, rng, device)?;
            }
            // dead codes: a random row of this batch each, before the search (so each is used at
            // once) and kept through the EMA step below
            let threshold = cfg.dead_code_threshold as f32;
            if threshold > 0.0 {
                for code in 0..bins {
                    if book.cluster_size[code] < threshold {
                        let row = rng.range(0, n - 1);
                        let r = &residual[row * dim..(row + 1) * dim];
                        book.embed[code * dim..(code + 1) * dim].copy_from_slice(r);
                        for (a, v) in book.embed_avg[code * dim..(code + 1) * dim]
                            .iter_mut()
                            .zip(r)
                        {
                            *a = v * threshold;
                        }
                        book.cluster_size[code] = threshold;
                        step.replaced += 1;
                    }
                }
            }
            let idx = Self::nearest(&book.embed, bins, &residual, dim, device)?;
            let mut chosen = vec![0f32; n * dim];
            let mut counts = vec![0f32; bins];
            let mut sums = vec![0f32; bins * dim];
            let mut sq = 0f64;
            for (row, &c) in idx.iter().enumerate() {
                step.codes[row * n_q + q] = c as i64;
                counts[c] += 1.0;
                let e = &book.embed[c * dim..(c + 1) * dim];
                let r = &residual[row * dim..(row + 1) * dim];
                for d in 0..dim {
                    chosen[row * dim + d] = e[d];
                    sums[c * dim + d] += r[d];
                    sq += ((e[d] - r[d]) as f64).powi(2);
                }
            }
            step.commitment += sq / (n * dim) as f64 / n_q as f64;
            if q == 0 {
                step.used_first = counts.iter().filter(|&&c| c > 0.0).count();
            }
            let decay = cfg.decay as f32;
            for (cs, c) in book.cluster_size.iter_mut().zip(&counts) {
                *cs = *cs * decay + c * (1.0 - decay);
            }
            for (a, s) in book.embed_avg.iter_mut().zip(&sums) {
                *a = *a * decay + s * (1.0 - decay);
            }
            let total: f64 = book.cluster_size.iter().map(|&c| c as f64).sum();
            let eps = cfg.epsilon;
            for code in 0..bins {
                let smoothed =
                    (book.cluster_size[code] as f64 + eps) / (total + bins as f64 * eps) * total;
                for d in 0..dim {
                    book.embed[code * dim + d] =
                        (book.embed_avg[code * dim + d] as f64 / smoothed) as f32;
                }
            }
            for i in 0..n * dim {
                residual[i] -= chosen[i];
                step.quantized[i] += chosen[i];
            }
            if q == 0 {
                step.first = chosen;
            }
        }
        Ok(step)
    }
}

/// encodec's `kmeans` on the rows `x`, written into `book` (with the cluster sizes).
fn kmeans_init(
    book: &mut EmaCodebook,
    x: &[f32],
    bins: usize,
    dim: usize,
    iters: usize,
    rng: &mut StepRng,
    device: &Device,
) -> Result<()> {
    let n = x.len() / dim;
    // sample_vectors: a permutation when the batch is large enough, else with replacement
    let picks: Vec<usize> = if n >= bins {
        rng.choose(n, bins)
    } else {
        (0..bins).map(|_| rng.range(0, n - 1)).collect()
    };
    let mut means: Vec<f32> = picks
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let mut counts = vec![0f32; bins];
    for _ in 0..iters {
        let idx = EmaRvq::nearest(&means, bins, x, dim, device)?;
        counts = vec![0f32; bins];
        let mut sums = vec![0f32; bins * dim];
        for (row, &c) in idx.iter().enumerate() {
            counts[c] += 1.0;
            for d in 0..dim {
                sums[c * dim + d] += x[row * dim + d];
            }
        }
        for c in 0..bins {
            if counts[c] > 0.0 {
                for d in 0..dim {
                    means[c * dim + d] = sums[c * dim + d] / counts[c];
                }
            }
        }
    }
    book.embed_avg = means
        .chunks_exact(dim)
        .zip(&counts)
        .flat_map(|(m, &c)| m.iter().map(move |v| v * c))
        .collect();
    book.embed = means;
    book.cluster_size = counts;
    book.inited = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters in 2-d: k-means finds them, the codes follow, EMA keeps the centroids.
    #[test]
    fn learns_two_clusters_and_replaces_dead_codes() {
        let device = Device::flex();
        let mut rng = StepRng::new(5);
        let mut x = Vec::new();
        for i in 0..64 {
            let (cx, cy) = if i % 2 == 0 { (3.0, 0.0) } else { (-3.0, 1.0) };
            x.push(cx + 0.01 * (i as f32).sin());
            x.push(cy + 0.01 * (i as f32).cos());
        }
        let config = EmaConfig {
            dead_code_threshold: 0.0,
            kmeans_iters: 10,
            ..EmaConfig::default()
        };
        let mut rvq = EmaRvq::new(1, 2, 2, config);
        let step = rvq.train_step(&x, &mut rng, &device).unwrap();
        assert!(rvq.books[0].inited);
        assert_eq!(step.used_first, 2);
        // every row is quantised to its own cluster's centre
        for (row, q) in step.quantized.chunks(2).enumerate() {
            let want = if row % 2 == 0 { 3.0 } else { -3.0 };
            assert!((q[0] - want).abs() < 0.05, "row {row}: {q:?}");
        }
        assert!(step.commitment < 1e-3, "{}", step.commitment);
        let (again, codes) = rvq.quantize(&x, &device).unwrap();
        assert_ne!(codes[0], codes[1]);
        assert!((again[0] - 3.0).abs() < 0.05, "{again:?}");

        // a codebook of 4 for the same data: two codes share a cluster; one of them made
        // unused is re-seeded from a batch row before the search and stays on the data
        let config = EmaConfig {
            dead_code_threshold: 1.0,
            kmeans_iters: 10,
            ..EmaConfig::default()
        };
        let mut rvq = EmaRvq::new(1, 4, 2, config);
        rvq.train_step(&x, &mut rng, &device).unwrap();
        let e = rvq.books[0].embed.clone();
        let near = |a: usize, b: usize| {
            (e[2 * a] - e[2 * b]).abs() + (e[2 * a + 1] - e[2 * b + 1]).abs() < 0.5
        };
        let dead = (0..4)
            .find(|&a| (0..4).any(|b| b != a && near(a, b)))
            .expect("4 codes on 2 clusters: two share one");
        rvq.books[0].embed[2 * dead..2 * dead + 2].copy_from_slice(&[100.0, 100.0]);
        rvq.books[0].embed_avg[2 * dead..2 * dead + 2].copy_from_slice(&[0.0, 0.0]);
        rvq.books[0].cluster_size[dead] = 0.0;
        let step = rvq.train_step(&x, &mut rng, &device).unwrap();
        assert!(step.replaced >= 1);
        let e = &rvq.books[0].embed[2 * dead..2 * dead + 2];
        assert!(
            (e[0].abs() - 3.0).abs() < 0.1,
            "replaced code {e:?} is a batch row"
        );
        // every row still quantised to its own cluster
        for (row, q) in step.quantized.chunks(2).enumerate() {
            let want = if row % 2 == 0 { 3.0 } else { -3.0 };
            assert!((q[0] - want).abs() < 0.1, "row {row}: {q:?}");
        }

        // state dict round trip
        let mut map = TensorMap::new("test");
        rvq.to_state_dict(&mut map);
        let back = EmaRvq::from_state_dict(&mut map, 1, 4, 2, rvq.config.clone()).unwrap();
        assert_eq!(back, rvq);
    }
}
