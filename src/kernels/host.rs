//! Fused element-wise kernels for tensors that live in host memory.
//!
//! On the CPU backends (flex, ndarray) a tensor's values are already in host
//! memory, so an element-wise function of several steps (GELU: an `exp`, a
//! division, a dozen multiply-adds) can run as **one** pass over the data, split
//! across the cores with rayon, instead of one tensor op per step (one pass
//! over memory each, on one thread). [`on_host`] says whether a tensor
//! qualifies; callers keep their tensor-op formulation for every other backend
//! (WGPU, CUDA), where it runs as device kernels.
//!
//! [`exp`] is a branch-free polynomial form that the compiler vectorises;
//! a test bounds its error against the standard library.

use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise the task, small
/// enough to balance the cores.
pub(crate) const CHUNK: usize = 1 << 14;

/// Whether `tensor` is an `f32` tensor of a CPU backend (flex or ndarray,
/// with or without autodiff), whose values can be mapped in host memory.
pub(crate) fn on_host<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && crate::BackendKind::is_cpu_device(&tensor.device())
}

/// `f` applied to the `f32` values of `data` in parallel chunks of
/// [`CHUNK`]: `f(input_chunk, outputs...)` fills `N` output vectors of the
/// same length. `None` if the values are not readable as `f32`.
pub(crate) fn map_chunks<const N: usize, F>(data: &TensorData, f: F) -> Option<[Vec<f32>; N]>
where
    F: Fn(&[f32], [&mut [f32]; N]) + Sync,
{
    let input = data.as_slice::<f32>().ok()?;
    let mut outputs: [Vec<f32>; N] = std::array::from_fn(|_| vec![0.0; input.len()]);
    let mut chunks: Vec<[&mut [f32]; N]> = (0..input.len().div_ceil(CHUNK))
        .map(|_| std::array::from_fn(|_| Default::default()))
        .collect();
    for (o, output) in outputs.iter_mut().enumerate() {
        for (c, chunk) in output.chunks_mut(CHUNK).enumerate() {
            chunks[c][o] = chunk;
        }
    }
    input
        .par_chunks(CHUNK)
        .zip(chunks.into_par_iter())
        .for_each(|(x, outs)| f(x, outs));
    Some(outputs)
}

/// A tensor of `shape` on `device` holding `data` (row-major).
pub(crate) fn from_values<const D: usize>(
    data: Vec<f32>,
    shape: Shape,
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// `exp(x)` for `f32` (Cephes `expf`): `2^n e^r` with `n = round(x log2 e)`,
/// `|r| <= ln2 / 2`, a degree-6 polynomial for `e^r`, and `2^n` built from the
/// exponent bits. `x` is clamped to `[-87, 88]` (the normal `f32` range).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Below this, `exp` underflows to `+0` in `f32` (`e^-104` is under half
/// the smallest subnormal, `2^-150`): the correctly rounded result, and
/// what libm returns, through its errno-setting underflow path.
const EXP_UNDERFLOW: f32 = -110.0;

/// Softmax of one row, `out = exp(x - max x) / Σ exp(x - max x)`, with the
/// `exp` of libm (the standard library's `f32::exp`) summed in index order:
/// bit for bit what burn-flex's fused softmax computes, except that an
/// `exp` that underflows to `+0` is not called. Masked attention adds a
/// large finite negative (`-1e9`) to every forbidden score, so about half of
/// a causal row underflows; libm sends each of those through its slow
/// underflow path (errno and all), which took ~10 % of a SmolLM2 training
/// step on the CPU (`xflowf` in a profile).
#[inline]
pub(crate) fn softmax_row(x: &[f32], out: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let z = v - max;
        let e = if z < EXP_UNDERFLOW { 0.0 } else { z.exp() };
        *o = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn exp_is_within_3_ulp_relative_of_std() {
        let worst = grid(-87.0, 88.0, 400_000)
            .map(|x| {
                let reference = (x as f64).exp();
                ((exp(x) as f64 - reference) / reference).abs()
            })
            .fold(0.0, f64::max);
        assert!(
            worst < 3.0 * f32::EPSILON as f64,
            "max relative error {worst}"
        );
    }

    #[test]
    fn skipped_exps_are_the_ones_libm_rounds_to_zero() {
        // f32s from the threshold down to -1e9 (a masked score), one every
        // 4096 ulps (or 0.01 %, whichever is further), give +0
        let mut x = EXP_UNDERFLOW;
        while x > -1e9 {
            assert_eq!(x.exp().to_bits(), 0, "exp({x})");
            x = f32::from_bits(x.to_bits() + 4096).min(x * 1.0001);
        }
        assert_eq!(f32::NEG_INFINITY.exp().to_bits(), 0);
        let mut out = [0.0; 5];
        softmax_row(&[0.0, -1e9, 1.0, f32::NEG_INFINITY, -120.0], &mut out);
        let total = 1.0 + std::f32::consts::E;
        assert_eq!(
            out,
            [1.0 / total, 0.0, std::f32::consts::E / total, 0.0, 0.0]
        );
    }

    #[test]
    fn cpu_tensors_are_on_host() {
        let device = crate::cpu_device();
        let t = Tensor::<2>::zeros([2, 3], &device);
        assert!(on_host(&t));
        let ad = Tensor::<2>::zeros([2, 3], &device.autodiff());
        assert!(on_host(&ad));
    }

    #[test]
    fn map_chunks_covers_every_element_across_chunks() {
        let n = 3 * CHUNK + 17;
        let xs: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let data = TensorData::new(xs.clone(), [n]);
        let [double, square] = map_chunks(&data, |x, [d, s]| {
            for ((v, d), s) in x.iter().zip(d).zip(s) {
                *d = 2.0 * v;
                *s = v * v;
            }
        })
        .unwrap();
        for (i, v) in xs.iter().enumerate() {
            assert_eq!(double[i], 2.0 * v);
            assert_eq!(square[i], v * v);
        }
        let back: Tensor<1> = from_values(double, [n].into(), &crate::cpu_device());
        assert_eq!(back.dims(), [n]);
        let ints = TensorData::new(vec![1i64, 2], [2]);
        assert!(map_chunks::<1, _>(&ints, |_, _| ()).is_none());
    }
}
