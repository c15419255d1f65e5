//! [`HostFusedBackend`] on flex: the softmax, cross-entropy and SwiGLU
//! passes and the LayerNorm backward pass as one row-parallel pass over host
//! memory each (the LayerNorm forward is flex's own fused kernel, the
//! trait's default).

use super::extension::{
    HostFusedBackend, cross_entropy_backward_from_ops, cross_entropy_forward_from_ops,
    layer_norm_backward_from_ops, softmax_backward_from_ops,
};
use crate::kernels::host;
use burn::backend::TensorMetadata;
use burn::prelude::*;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// Rows per parallel task for a row length `len`.
fn rows_per_task(len: usize) -> usize {
    (host::CHUNK / len.max(1)).max(1)
}

/// The contiguous `f32` values of `t`, or `None` for another dtype.
fn f32_values(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == burn::tensor::DType::F32).then(|| t.to_contiguous())
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The class ids of an int tensor, as indices (out-of-range ids map to `usize::MAX`).
fn class_ids(targets: FlexTensor) -> Vec<usize> {
    targets
        .into_data()
        .iter::<i64>()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect()
}

/// `σ(x) = 1 / (1 + e^-x)` with the host `exp`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + host::exp(-x))
}

impl HostFusedBackend for Flex {
    fn fused_cross_entropy_forward(
        logits: FlexTensor,
        targets: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let Some(xc) = f32_values(&logits) else {
            return cross_entropy_forward_from_ops::<Flex>(logits, targets);
        };
        let shape = logits.shape();
        let (n, v) = (shape[0], shape[1].max(1));
        let t = class_ids(targets);
        let xs: &[f32] = xc.storage();
        let mut lse = vec![0.0f32; n];
        let mut picked = vec![0.0f32; n];
        lse.par_iter_mut()
            .zip(picked.par_iter_mut())
            .enumerate()
            .for_each(|(r, (l, p))| {
                let row = &xs[r * v..(r + 1) * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let sum: f32 = row.iter().map(|&x| host::exp(x - max)).sum();
                *l = max + sum.ln();
                *p = row.get(t[r]).copied().unwrap_or(f32::NAN);
            });
        let total: f64 = lse.iter().zip(&picked).map(|(l, p)| (l - p) as f64).sum();
        let loss = (total / n.max(1) as f64) as f32;
        (
            tensor(vec![loss], Shape::from(vec![1])),
            tensor(lse, Shape::from(vec![n])),
        )
    }

    fn fused_cross_entropy_backward(
        logits: FlexTensor,
        targets: FlexTensor,
        lse: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        let (Some(xc), Some(lc), Some(gc)) =
            (f32_values(&logits), f32_values(&lse), f32_values(&grad))
        else {
            return cross_entropy_backward_from_ops::<Flex>(logits, targets, lse, grad);
        };
        let shape = logits.shape();
        let (n, v) = (shape[0], shape[1].max(1));
        let t = class_ids(targets);
        let (xs, ls, gs): (&[f32], &[f32], &[f32]) = (xc.storage(), lc.storage(), gc.storage());
        let scale = gs.first().copied().unwrap_or(0.0) / n.max(1) as f32;
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(v)
            .zip(xs.par_chunks(v))
            .enumerate()
            .for_each(|(r, (d, x))| {
                let l = ls[r];
                for (o, &xv) in d.iter_mut().zip(x) {
                    *o = host::exp(xv - l) * scale;
                }
                if let Some(o) = d.get_mut(t[r]) {
                    *o -= scale;
                }
            });
        tensor(dx, shape)
    }

    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let (Some(gc), Some(uc)) = (f32_values(&gate), f32_values(&up)) else {
            use burn::backend::ops::{ActivationOps, FloatTensorOps};
            let silu = Flex::float_mul(gate.clone(), Flex::sigmoid(gate));
            return Flex::float_mul(silu, up);
        };
        let shape = gate.shape();
        let (gs, us): (&[f32], &[f32]) = (gc.storage(), uc.storage());
        let mut out = vec![0.0f32; gs.len()];
        out.par_chunks_mut(host::CHUNK)
            .zip(gs.par_chunks(host::CHUNK).zip(us.par_chunks(host::CHUNK)))
            .for_each(|(o, (g, u))| {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g * sigmoid(g) * u;
                }
            });
        tensor(out, shape)
    }

    fn fused_swiglu_backward(
        gate: FlexTensor,
        up: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (Some(gc), Some(uc), Some(dc)) =
            (f32_values(&gate), f32_values(&up), f32_values(&grad))
        else {
            return super::extension::swiglu_backward_from_ops::<Flex>(gate, up, grad);
        };
        let shape = gate.shape();
        let (gs, us, ds): (&[f32], &[f32], &[f32]) = (gc.storage(), uc.storage(), dc.storage());
        let mut d_gate = vec![0.0f32; gs.len()];
        let mut d_up = vec![0.0f32; gs.len()];
        d_gate
            .par_chunks_mut(host::CHUNK)
            .zip(d_up.par_chunks_mut(host::CHUNK))
            .zip(
                gs.par_chunks(host::CHUNK)
                    .zip(us.par_chunks(host::CHUNK))
                    .zip(ds.par_chunks(host::CHUNK)),
            )
            .for_each(|((dg, du), ((g, u), d))| {
                for ((((dg, du), &g), &u), &d) in
                    dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(d)
                {
                    let s = sigmoid(g);
                    *dg = d * u * s * (1.0 + g * (1.0 - s));
                    *du = d * g * s;
                }
            });
        (tensor(d_gate, shape.clone()), tensor(d_up, shape))
    }

    fn fused_softmax(x: FlexTensor) -> FlexTensor {
        let last = x.shape().num_dims().saturating_sub(1);
        let Some(xc) = f32_values(&x) else {
            use burn::backend::ops::ActivationOps;
            return Flex::softmax(x, last);
        };
        let shape = x.shape();
        let len = shape[last];
        if len == 0 {
            return xc;
        }
        let xs: &[f32] = xc.storage();
        let mut out = vec![0.0f32; xs.len()];
        let step = rows_per_task(len) * len;
        out.par_chunks_mut(step)
            .zip(xs.par_chunks(step))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_mut(len).zip(x.chunks(len)) {
                    host::softmax_row(x, o);
                }
            });
        tensor(out, shape)
    }

    fn fused_softmax_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(yc), Some(gc)) = (f32_values(&y), f32_values(&grad)) else {
            return softmax_backward_from_ops::<Flex>(y, grad);
        };
        let shape = y.shape();
        let len = shape[shape.num_dims() - 1].max(1);
        let (ys, gs): (&[f32], &[f32]) = (yc.storage(), gc.storage());
        let mut dx = vec![0.0f32; ys.len()];
        let step = rows_per_task(len) * len;
        dx.par_chunks_mut(step)
            .zip(ys.par_chunks(step).zip(gs.par_chunks(step)))
            .for_each(|(dx, (ys, gs))| {
                for ((dx, y), g) in dx.chunks_mut(len).zip(ys.chunks(len)).zip(gs.chunks(len)) {
                    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                    for ((d, y), g) in dx.iter_mut().zip(y).zip(g) {
                        *d = y * (g - dot);
                    }
                }
            });
        tensor(dx, shape)
    }

    fn fused_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
        affine_grads: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (Some(xc), Some(gmc), Some(gc)) =
            (f32_values(&x), f32_values(&gamma), f32_values(&grad))
        else {
            return layer_norm_backward_from_ops::<Flex>(x, gamma, grad, epsilon, affine_grads);
        };
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1].max(1);
        let (xs, gamma_s, gs): (&[f32], &[f32], &[f32]) =
            (xc.storage(), gmc.storage(), gc.storage());
        let eps = epsilon as f32;
        let mut dx = vec![0.0f32; xs.len()];
        let step = rows_per_task(d) * d;
        // Each task returns its partial Σ g x̂ and Σ g (empty unless affine_grads).
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(step)
            .zip(xs.par_chunks(step).zip(gs.par_chunks(step)))
            .map(|(dx, (xs, gs))| {
                let (mut dgamma, mut dbeta) = if affine_grads {
                    (vec![0.0f32; d], vec![0.0f32; d])
                } else {
                    (Vec::new(), Vec::new())
                };
                for ((dx, x), g) in dx.chunks_mut(d).zip(xs.chunks(d)).zip(gs.chunks(d)) {
                    let inv_d = 1.0 / d as f32;
                    let mean = x.iter().sum::<f32>() * inv_d;
                    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_d;
                    let rstd = 1.0 / (var + eps).sqrt();
                    let (mut m1, mut m2) = (0.0f32, 0.0f32);
                    for ((v, g), gm) in x.iter().zip(g).zip(gamma_s) {
                        let g_hat = g * gm;
                        m1 += g_hat;
                        m2 += g_hat * (v - mean) * rstd;
                    }
                    m1 *= inv_d;
                    m2 *= inv_d;
                    for (((o, v), g), gm) in dx.iter_mut().zip(x).zip(g).zip(gamma_s) {
                        let x_hat = (v - mean) * rstd;
                        *o = rstd * (g * gm - m1 - x_hat * m2);
                    }
                    if affine_grads {
                        for (((dg, db), v), g) in
                            dgamma.iter_mut().zip(dbeta.iter_mut()).zip(x).zip(g)
                        {
                            *dg += g * (v - mean) * rstd;
                            *db += g;
                        }
                    }
                }
                (dgamma, dbeta)
            })
            .collect();
        let (d_gamma, d_beta) = if affine_grads {
            let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
            for (pg, pb) in &partials {
                for i in 0..d {
                    dgamma[i] += pg[i];
                    dbeta[i] += pb[i];
                }
            }
            (dgamma, dbeta)
        } else {
            (Vec::new(), Vec::new())
        };
        let n = d_gamma.len();
        (
            tensor(dx, shape),
            tensor(d_gamma, Shape::from(vec![n])),
            tensor(d_beta, Shape::from(vec![n])),
        )
    }
}
