//! Symmetric block quantization of row-major weights, the numeric core of the q8 and q4
//! schemes.
//!
//! A weight of shape `[out, ...]` is read as `out` rows (one per output channel; a Linear's
//! row is its input dimension, a conv's row is `in / groups * kernel`). Each row is cut into
//! blocks of `block` consecutive values (the last block of a row may be shorter); each block
//! has one f32 scale and no zero point, so a value is `q * scale`. Blocks never cross rows, so
//! a block size at least the row length gives one scale per output channel.
//!
//! - q8: `q` in `[-127, 127]`, `scale = max|x| / 127` (round to nearest).
//! - q4: `q` in `[-8, 7]`, stored offset by 8 as a nibble, two per byte (element `2j` of a row
//!   in the low nibble, `2j + 1` in the high one; an odd row ends with a zero nibble `8`).
//!   The scale is the one, among a few candidates around `max|x| / 7`, with the least squared
//!   error after a least-squares refit for the chosen `q` (4 bits leave too few levels for
//!   the plain `max|x|` rule to be near the best).

/// Largest q8 magnitude; `-128` is not used, so the range is symmetric.
pub const Q8_MAX: f32 = 127.0;
/// q4 range: `[-8, 7]`.
pub const Q4_MIN: i8 = -8;
pub const Q4_MAX: i8 = 7;

/// Number of scales of one row of `row_len` values.
pub fn blocks_per_row(row_len: usize, block: usize) -> usize {
    row_len.div_ceil(block.max(1))
}

/// Bytes of one q4-packed row of `row_len` values.
pub fn packed_row_len(row_len: usize) -> usize {
    row_len.div_ceil(2)
}

/// The blocks of `data` (rows of `row_len`, cut into `block`), in storage order.
fn blocks(data: &[f32], row_len: usize, block: usize) -> impl Iterator<Item = &[f32]> {
    data.chunks(row_len.max(1))
        .flat_map(move |row| row.chunks(block.max(1)))
}

fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// q8: one `i8` per value and one scale per block.
pub fn quantize_q8(data: &[f32], row_len: usize, block: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(data.len().div_ceil(block.max(1)));
    for b in blocks(data, row_len, block) {
        let scale = abs_max(b) / Q8_MAX;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(
            b.iter()
                .map(|&x| round_i32(x * inv).clamp(-(Q8_MAX as i32), Q8_MAX as i32) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

/// The inverse of [`quantize_q8`]: `q.len()` values. The caller checks that `scales` holds
/// [`blocks_per_row`] entries per row.
pub fn dequantize_q8(q: &[i8], scales: &[f32], row_len: usize, block: usize) -> Vec<f32> {
    let per_row = blocks_per_row(row_len, block);
    let mut out = Vec::with_capacity(q.len());
    for (r, row) in q.chunks(row_len.max(1)).enumerate() {
        for (j, b) in row.chunks(block.max(1)).enumerate() {
            let s = scales[r * per_row + j];
            out.extend(b.iter().map(|&v| v as f32 * s));
        }
    }
    out
}

/// Partial sums per candidate in [`q4_block`].
const LANES: usize = 8;

/// Round half away from zero to an integer (a truncating conversion, which vectorises).
fn round_i32(x: f32) -> i32 {
    (x + 0.5f32.copysign(x)) as i32
}

/// q4 code of `v` at `inv = 1 / scale`, as a float: round to nearest (even) by adding and
/// taking away 1.5 * 2^23, plain float arithmetic that vectorises, then clamp.
fn q4_code(v: f32, inv: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    ((v * inv + ROUND) - ROUND).clamp(Q4_MIN as f32, Q4_MAX as f32)
}

/// The q4 codes and scale of one block: among candidate scales around `max|x| / 7`, the
/// codes with the least squared error once the scale is refit to them by least squares.
fn q4_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = abs_max(x);
    if amax == 0.0 || !amax.is_finite() {
        q.fill(0);
        return 0.0;
    }
    // For codes `c`, the best scale is `s = Σxc / Σc²` and the error left is
    // `Σx² - (Σxc)² / Σc²`: the best candidate has the largest `(Σxc)² / Σc²`.
    // Divisors 5.0 ..= 9.0 in steps of 0.25: at 7 the largest value maps to the top level;
    // larger divisors trade a clipped extreme for finer steps, smaller ones the reverse.
    let mut best = (f32::NEG_INFINITY, 7.0f32, 0f32);
    for step in 0..=16 {
        let d = 5.0 + 0.25 * step as f32;
        let inv = d / amax;
        // Eight partial sums, so the loop vectorises (a float sum in order does not).
        let (mut xcs, mut ccs) = ([0f32; LANES], [0f32; LANES]);
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for ch in chunks {
            for i in 0..LANES {
                let c = q4_code(ch[i], inv);
                xcs[i] += ch[i] * c;
                ccs[i] += c * c;
            }
        }
        for &v in rest {
            let c = q4_code(v, inv);
            xcs[0] += v * c;
            ccs[0] += c * c;
        }
        let (xc, cc): (f32, f32) = (xcs.iter().sum(), ccs.iter().sum());
        if cc > 0.0 && xc * xc / cc > best.0 {
            best = (xc * xc / cc, d, xc / cc);
        }
    }
    let inv = best.1 / amax;
    for (c, &v) in q.iter_mut().zip(x) {
        *c = q4_code(v, inv) as i8;
    }
    best.2
}

/// q4: packed codes (`[rows, ceil(row_len / 2)]` bytes) and one scale per block.
pub fn quantize_q4(data: &[f32], row_len: usize, block: usize) -> (Vec<u8>, Vec<f32>) {
    let row_len = row_len.max(1);
    let mut packed = Vec::with_capacity(data.len() / row_len * packed_row_len(row_len));
    let mut scales = Vec::with_capacity(data.len().div_ceil(block.max(1)));
    let mut codes = vec![0i8; row_len];
    for row in data.chunks(row_len) {
        for (b, c) in row.chunks(block.max(1)).zip(codes.chunks_mut(block.max(1))) {
            scales.push(q4_block(b, c));
        }
        packed.extend(pack_nibbles(&codes[..row.len()]));
    }
    (packed, scales)
}

/// The inverse of [`quantize_q4`]. The caller checks `packed` holds [`packed_row_len`] bytes
/// per row and `scales` [`blocks_per_row`] entries per row.
pub fn dequantize_q4(
    packed: &[u8],
    scales: &[f32],
    rows: usize,
    row_len: usize,
    block: usize,
) -> Vec<f32> {
    let per_row = blocks_per_row(row_len, block);
    let bytes = packed_row_len(row_len);
    let mut out = Vec::with_capacity(rows * row_len);
    for r in 0..rows {
        let codes = unpack_nibbles(&packed[r * bytes..(r + 1) * bytes], row_len);
        for (j, b) in codes.chunks(block.max(1)).enumerate() {
            let s = scales[r * per_row + j];
            out.extend(b.iter().map(|&v| v as f32 * s));
        }
    }
    out
}

/// Two codes in `[-8, 7]` per byte, offset by 8: element `2j` in the low nibble, `2j + 1` in
/// the high one; an odd count ends with the zero code.
pub fn pack_nibbles(codes: &[i8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|pair| {
            let lo = (pair[0] + 8) as u8 & 0x0f;
            let hi = (pair.get(1).copied().unwrap_or(0) + 8) as u8 & 0x0f;
            lo | (hi << 4)
        })
        .collect()
}

/// The first `n` codes of packed bytes (the inverse of [`pack_nibbles`]).
pub fn unpack_nibbles(bytes: &[u8], n: usize) -> Vec<i8> {
    bytes
        .iter()
        .flat_map(|b| [(b & 0x0f) as i8 - 8, (b >> 4) as i8 - 8])
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [-1, 1].
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn nibbles_round_trip_in_order() {
        let codes: Vec<i8> = (-8..=7).chain([3, -8, 7]).collect();
        let packed = pack_nibbles(&codes);
        assert_eq!(packed.len(), codes.len().div_ceil(2));
        // -8 -> 0 (low), -7 -> 1 (high).
        assert_eq!(packed[0], 0x10);
        assert_eq!(unpack_nibbles(&packed, codes.len()), codes);
        // An odd count pads with the zero code (8).
        assert_eq!(pack_nibbles(&[7]), vec![0x8f]);
        assert_eq!(unpack_nibbles(&[0x8f], 1), vec![7]);
    }

    #[test]
    fn block_and_row_counts() {
        assert_eq!(blocks_per_row(64, 32), 2);
        assert_eq!(blocks_per_row(70, 32), 3);
        assert_eq!(blocks_per_row(70, 1 << 20), 1);
        assert_eq!(packed_row_len(7), 4);
    }

    #[test]
    fn q8_error_is_at_most_half_a_step_per_block() {
        // 3 rows of 70: blocks of 32, 32, 6 per row.
        let x = values(210, 1);
        let (q, s) = quantize_q8(&x, 70, 32);
        assert_eq!((q.len(), s.len()), (210, 9));
        let y = dequantize_q8(&q, &s, 70, 32);
        for (i, (a, b)) in x.iter().zip(&y).enumerate() {
            let scale = s[(i / 70) * 3 + (i % 70) / 32];
            assert!((a - b).abs() <= 0.5 * scale + 1e-7, "{i}: {a} vs {b}");
        }
        // The largest value of each block is exact up to rounding of the scale.
        let m = x[..32].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((q[..32].iter().map(|v| v.unsigned_abs()).max().unwrap()) == 127);
        assert!((s[0] * 127.0 - m).abs() <= 1e-6);
    }

    #[test]
    fn q8_zero_block_and_per_channel() {
        let mut x = values(128, 2);
        x[..32].fill(0.0);
        let (q, s) = quantize_q8(&x, 64, 32);
        assert_eq!(s[0], 0.0);
        assert!(q[..32].iter().all(|&v| v == 0));
        let y = dequantize_q8(&q, &s, 64, 32);
        assert!(y[..32].iter().all(|&v| v == 0.0));
        // A block as long as the row: one scale per output channel.
        let (_, s) = quantize_q8(&x, 64, 64);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn q4_round_trips_with_bounded_error() {
        // 4 rows of 33 (odd: the packed rows end with a pad nibble).
        let x = values(132, 3);
        let (p, s) = quantize_q4(&x, 33, 16);
        assert_eq!(p.len(), 4 * 17);
        assert_eq!(s.len(), 4 * 3);
        let y = dequantize_q4(&p, &s, 4, 33, 16);
        assert_eq!(y.len(), x.len());
        let rms = |v: &[f32]| (v.iter().map(|a| a * a).sum::<f32>() / v.len() as f32).sqrt();
        let diff: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        // 16 levels over [-1, 1]: a uniform step of ~0.14, RMS error ~0.04.
        assert!(rms(&diff) < 0.06, "{} (signal {})", rms(&diff), rms(&x));
        // Codes decoded from the bytes match a re-quantization of the decoded values.
        let (p2, _) = quantize_q4(&y, 33, 16);
        assert_eq!(p, p2);
    }

    #[test]
    fn q4_beats_the_plain_max_rule() {
        let x = values(4096, 4);
        let (p, s) = quantize_q4(&x, 4096, 32);
        let y = dequantize_q4(&p, &s, 1, 4096, 32);
        let searched: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
        let plain: f32 = x
            .chunks(32)
            .map(|b| {
                let s = abs_max(b) / 7.0;
                b.iter()
                    .map(|&v| {
                        let e = v - (v / s).round().clamp(-8.0, 7.0) * s;
                        e * e
                    })
                    .sum::<f32>()
            })
            .sum();
        assert!(searched < 0.9 * plain, "{searched} vs {plain}");
    }

    #[test]
    fn blocks_contain_an_outlier_that_per_channel_scales_spread() {
        // Trained transformers have a few large weights per channel; one such value sets
        // the step of its whole row under per-channel scales, of its block only with blocks.
        let mut x = values(768, 5);
        x[100] = 20.0;
        let rms = |y: &[f32]| {
            let e: f32 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
            (e / x.len() as f32).sqrt()
        };
        let (q, s) = quantize_q8(&x, 768, 32);
        let blocked = rms(&dequantize_q8(&q, &s, 768, 32));
        let (q, s) = quantize_q8(&x, 768, 768);
        let channel = rms(&dequantize_q8(&q, &s, 768, 768));
        assert!(blocked < 0.3 * channel, "q8: {blocked} vs {channel}");
        let (p, s) = quantize_q4(&x, 768, 32);
        let blocked = rms(&dequantize_q4(&p, &s, 1, 768, 32));
        let (p, s) = quantize_q4(&x, 768, 768);
        let channel = rms(&dequantize_q4(&p, &s, 1, 768, 768));
        assert!(blocked < 0.3 * channel, "q4: {blocked} vs {channel}");
    }
}
