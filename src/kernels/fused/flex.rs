//! [`HostFusedBackend`] on flex: the softmax and LayerNorm backward passes as
//! one row-parallel pass over host memory (the forward passes are flex's own
//! fused kernels, the trait's defaults).

use super::extension::{HostFusedBackend, layer_norm_backward_from_ops, softmax_backward_from_ops};
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

impl HostFusedBackend for Flex {
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
