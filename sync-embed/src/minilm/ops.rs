//! The encoder's element-wise steps as in-place candle ops over contiguous f32 rows, split
//! across threads: no step allocates, and each reads and writes its tensor once. `exp` and
//! `erf` are polynomial forms the compiler vectorises (libm's are scalar calls), accurate
//! to a few units in the last place.

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Result};
use rayon::prelude::*;

/// Elements one thread takes at a time: big enough to amortise the hand-off, small enough
/// to share a batch of short texts between the cores.
const GRAIN: usize = 1 << 14;

/// The contiguous f32 values of a tensor, or an error naming the op.
fn values<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op} needs a contiguous f32 tensor"),
    }
}

fn values_ref<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op} needs a contiguous f32 tensor"),
    }
}

/// Rows of `width` per parallel task.
fn rows_per_task(width: usize) -> usize {
    (GRAIN / width.max(1)).max(1)
}

fn check_rows(len: usize, width: usize, op: &str) -> Result<()> {
    if width == 0 || !len.is_multiple_of(width) {
        candle_core::bail!("{op}: {len} values are not rows of {width}");
    }
    Ok(())
}

/// The sum of `xs` in eight lanes (a single running sum cannot be vectorised).
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder().iter().sum::<f32>();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// The largest of `xs` in eight lanes (`-inf` for none).
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            if v > *l {
                *l = v;
            }
        }
    }
    lanes.iter().copied().fold(rest, f32::max)
}

/// `e^x` for f32 (Cephes' polynomial on `[-ln 2 / 2, ln 2 / 2]`, scaled by `2^n` through
/// the exponent bits): within 2 ulp of `f32::exp`; 0 below -87.34 (where `f32::exp` gives
/// subnormals), `+inf` above 88.37 (for softmax, which takes it of values ≤ 0).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    // ln of the smallest normal f32.
    const LOW: f32 = -87.336_54;
    // Past it 2^n would not fit.
    const HIGH: f32 = 88.37;
    let c = x.clamp(LOW, HIGH);
    let n = (c * LOG2E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    if x < LOW {
        0.0
    } else if x > HIGH {
        f32::INFINITY
    } else {
        y
    }
}

/// `erf(x)` for f32: Eigen's rational approximation on `[-4, 4]` (±1 outside), within a
/// few ulp of libm's `erff`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let p = p * x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

/// Exact (erf) GELU.
#[inline(always)]
fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x = f(x + bias)` on every row of `storage`, rows split across threads: the body of the
/// bias ops.
fn bias_map(
    storage: &mut CpuStorage,
    layout: &Layout,
    op: &str,
    bias: &[f32],
    f: impl Fn(f32) -> f32 + Sync,
) -> Result<()> {
    let x = values(storage, layout, op)?;
    let width = bias.len();
    check_rows(x.len(), width, op)?;
    x.par_chunks_mut(width * rows_per_task(width))
        .for_each(|rows| {
            for row in rows.chunks_exact_mut(width) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = f(*v + b);
                }
            }
        });
    Ok(())
}

/// `x += bias` on every row.
#[derive(Debug)]
pub(crate) struct AddBias {
    pub(crate) bias: Vec<f32>,
}

impl InplaceOp1 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        bias_map(storage, layout, self.name(), &self.bias, |v| v)
    }
}

/// `x = gelu(x + bias)` on every row (exact GELU).
#[derive(Debug)]
pub(crate) struct BiasGelu {
    pub(crate) bias: Vec<f32>,
}

impl InplaceOp1 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        bias_map(storage, layout, self.name(), &self.bias, gelu)
    }
}

/// `x = layer_norm(x + bias + residual)` on every row, the residual being the second
/// tensor (same shape).
#[derive(Debug)]
pub(crate) struct AddNorm {
    pub(crate) bias: Vec<f32>,
    pub(crate) weight: Vec<f32>,
    pub(crate) shift: Vec<f32>,
    pub(crate) eps: f32,
}

impl AddNorm {
    /// Normalises one row in place.
    fn norm(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let mut lanes = [0.0f32; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder().iter().map(|v| v * v).sum::<f32>();
        for c in chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l += v * v;
            }
        }
        let var = (lanes.iter().sum::<f32>() + rest) / n;
        let inv = (var + self.eps).sqrt().recip();
        for ((v, w), s) in row.iter_mut().zip(&self.weight).zip(&self.shift) {
            *v = *v * inv * w + s;
        }
    }
}

impl InplaceOp2 for AddNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let x = values(s1, l1, self.name())?;
        let residual = values_ref(s2, l2, self.name())?;
        let width = self.bias.len();
        check_rows(x.len(), width, self.name())?;
        if residual.len() != x.len() {
            candle_core::bail!(
                "{}: {} values and a residual of {}",
                self.name(),
                x.len(),
                residual.len()
            );
        }
        let chunk = width * rows_per_task(width);
        x.par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(rows, residual)| {
                for (row, res) in rows
                    .chunks_exact_mut(width)
                    .zip(residual.chunks_exact(width))
                {
                    for ((v, r), b) in row.iter_mut().zip(res).zip(&self.bias) {
                        *v += r + b;
                    }
                    self.norm(row);
                }
            });
        Ok(())
    }
}

/// `x = softmax(x + mask)` over rows of `mask.len()` (the mask additive: 0 to keep a
/// position, a huge negative number to drop it; empty for no mask).
#[derive(Debug)]
pub(crate) struct MaskedSoftmax<'a> {
    pub(crate) width: usize,
    pub(crate) mask: &'a [f32],
}

impl MaskedSoftmax<'_> {
    fn row(&self, row: &mut [f32]) {
        if !self.mask.is_empty() {
            for (v, m) in row.iter_mut().zip(self.mask) {
                *v += m;
            }
        }
        let max = max(row);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = sum(row).recip();
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

impl InplaceOp1 for MaskedSoftmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let x = values(storage, layout, self.name())?;
        let width = self.width;
        check_rows(x.len(), width, self.name())?;
        if !self.mask.is_empty() && self.mask.len() != width {
            candle_core::bail!(
                "{}: a mask of {} for rows of {width}",
                self.name(),
                self.mask.len()
            );
        }
        x.par_chunks_mut(width * rows_per_task(width))
            .for_each(|rows| rows.chunks_exact_mut(width).for_each(|row| self.row(row)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0.0f32;
        for i in -90_000..=10_000 {
            let x = i as f32 / 1000.0;
            let want = x.exp();
            let got = exp(x);
            if want >= f32::MIN_POSITIVE {
                worst = worst.max(((got - want) / want).abs());
            } else {
                assert!(got < f32::MIN_POSITIVE, "exp({x}) = {got}, want {want}");
            }
        }
        assert!(worst < 4e-7, "relative error up to {worst}");
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            let want = candle_core::cpu::erf::erf_f32(x);
            worst = worst.max((erf(x) - want).abs());
        }
        assert!(worst < 1e-6, "absolute error up to {worst}");
        assert!((erf(100.0) - 1.0).abs() < 1e-6);
        assert!((erf(-100.0) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn masked_softmax_drops_masked_positions() {
        let mask = [0.0, f32::MIN, 0.0];
        let op = MaskedSoftmax {
            width: 3,
            mask: &mask,
        };
        let mut row = [1.0, 50.0, 1.0];
        op.row(&mut row);
        assert_eq!(row, [0.5, 0.0, 0.5]);
    }
}
