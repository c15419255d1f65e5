//! The exact (erf) GELU with a cheap backward pass.
//!
//! `gelu(x) = x Φ(x)`, `Φ(x) = (1 + erf(x / √2)) / 2`, `gelu'(x) = Φ(x) + x φ(x)`,
//! `φ(x) = exp(-x² / 2) / √(2π)`.
//!
//! The output is assembled as `y + (x - stop_grad(x)) gelu'(x)` with `y` and
//! `gelu'(x)` computed outside the autodiff graph: the same value, and a
//! backward pass of one multiplication instead of re-evaluating `erf` and `exp`.
//!
//! `erf` is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7 in exact
//! arithmetic), `erf(|z|) = 1 - t (a1 + t (a2 + ... t a5)) exp(-z²)` with
//! `t = 1 / (1 + p |z|)`; its `exp(-z²)` is also `φ`'s. Where it runs:
//! - on the CPU backends (flex, ndarray), one parallel pass over host memory
//!   (the crate's host kernels, with a polynomial `exp`);
//! - on every other backend, element-wise tensor ops (device kernels).

use crate::kernels::host;
use burn::prelude::*;

const P: f64 = 0.327_591_1;
const A: [f64; 5] = [
    0.254_829_592,
    -0.284_496_736,
    1.421_413_741,
    -1.453_152_027,
    1.061_405_429,
];

/// Exact-form GELU of `x` (any shape); see the module docs.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if host::on_host(&x) {
        gelu_on_host(x)
    } else {
        gelu_from_tensor_ops(x)
    }
}

/// `√(1/2)` and `1/√(2π)`.
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `(Φ(x), exp(-x² / 2))` in `f32`, branch-free (vectorises).
#[inline(always)]
fn cdf_and_gauss(x: f32) -> (f32, f32) {
    let z = x * SQRT_HALF;
    let t = 1.0 / (1.0 + P as f32 * z.abs());
    let mut poly = A[4] as f32;
    for a in A[..4].iter().rev() {
        poly = poly * t + *a as f32;
    }
    let gauss = host::exp(-z * z);
    let erf = (1.0 - t * poly * gauss).copysign(z);
    (0.5 + 0.5 * erf, gauss)
}

/// One pass over host memory: `y` when `x` is not tracked, else `y` and
/// `gelu'(x)` combined as in the module docs. Falls back to the tensor-op
/// form if `x`'s values cannot be read as `f32`.
fn gelu_on_host<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let (shape, device) = (x.shape(), x.device());
    if !x.is_tracked() {
        let data = x.into_data();
        let mapped = host::map_chunks(&data, |xs, [ys]| {
            for (&v, y) in xs.iter().zip(ys) {
                *y = v * cdf_and_gauss(v).0;
            }
        });
        return match mapped {
            Some([y]) => host::from_values(y, shape, &device),
            None => gelu_from_tensor_ops(Tensor::from_data(data, &device)),
        };
    }
    let xc = x.clone().detach();
    let mapped = host::map_chunks(&xc.clone().into_data(), |xs, [ys, ds]| {
        for ((&v, y), d) in xs.iter().zip(ys).zip(ds) {
            let (cdf, gauss) = cdf_and_gauss(v);
            *y = v * cdf;
            *d = cdf + v * INV_SQRT_2PI * gauss;
        }
    });
    let Some([value, slope]) = mapped else {
        return gelu_from_tensor_ops(x);
    };
    let value = host::from_values(value, shape.clone(), &device);
    let slope = host::from_values(slope, shape, &device);
    value + (x - xc) * slope
}

/// The same function from element-wise tensor ops (any backend).
fn gelu_from_tensor_ops<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let xc = x.clone().detach();
    let z = xc.clone().mul_scalar(std::f64::consts::FRAC_1_SQRT_2);
    // t = 1 / (1 + p |z|); erf(|z|) = 1 - t (a1 + t (a2 + ... t a5)) exp(-z²).
    let t = z.clone().abs().mul_scalar(P).add_scalar(1.0).recip();
    let mut poly = t.clone().mul_scalar(A[4]);
    for a in A[..4].iter().rev() {
        poly = poly.add_scalar(*a).mul(t.clone());
    }
    let gauss = (z.clone() * z.clone()).neg().exp(); // exp(-x² / 2)
    let erf = (poly * gauss.clone()).neg().add_scalar(1.0) * z.sign();
    let cdf = erf.add_scalar(1.0).mul_scalar(0.5);
    if !x.is_tracked() {
        return xc * cdf;
    }
    let x_pdf = (gauss * xc.clone()).mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    x.clone() * cdf + (x - xc) * x_pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// -12 to 12 in steps of 0.0006: 40,001 values, several host chunks.
    fn grid() -> Vec<f32> {
        (0..=40_000).map(|i| -12.0 + i as f32 * 0.0006).collect()
    }

    /// Max |f - burn's erf GELU| in value and in gradient, on an autodiff device.
    fn errors_against_burn(f: fn(Tensor<1>) -> Tensor<1>) -> (f32, f32) {
        let device = crate::cpu_device().autodiff();
        let xs = grid();
        let x = Tensor::<1>::from_floats(xs.as_slice(), &device).require_grad();
        let reference = burn::tensor::activation::gelu(x.clone());
        let ours = f(x.clone());
        let value_err = (ours.clone() - reference).abs().max().into_scalar::<f32>();
        let g_ours = x.grad(&ours.sum().backward()).unwrap();
        let x2 = Tensor::<1>::from_floats(xs.as_slice(), &device).require_grad();
        let g_ref = x2
            .grad(&burn::tensor::activation::gelu(x2.clone()).sum().backward())
            .unwrap();
        let grad_err = (g_ours - g_ref).abs().max().into_scalar::<f32>();
        (value_err, grad_err)
    }

    #[test]
    fn host_kernel_matches_burns_erf_gelu_in_value_and_gradient() {
        let x = Tensor::<1>::zeros([1], &crate::cpu_device());
        assert!(host::on_host(&x), "the CPU test device takes the host path");
        let (value_err, grad_err) = errors_against_burn(gelu);
        assert!(value_err < 1e-6, "value error {value_err}");
        assert!(grad_err < 1e-6, "gradient error {grad_err}");
    }

    #[test]
    fn tensor_op_form_matches_burns_erf_gelu_in_value_and_gradient() {
        let (value_err, grad_err) = errors_against_burn(gelu_from_tensor_ops);
        assert!(value_err < 1e-6, "value error {value_err}");
        assert!(grad_err < 1e-6, "gradient error {grad_err}");
    }

    #[test]
    fn untracked_input_gives_the_same_values_on_both_paths() {
        let device = crate::cpu_device();
        let xs = grid();
        let x = Tensor::<1>::from_floats(xs.as_slice(), &device);
        let reference = burn::tensor::activation::gelu(x.clone());
        for f in [gelu, gelu_from_tensor_ops] {
            let err = (f(x.clone()) - reference.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(err < 1e-6, "{err}");
        }
    }
}
