//! Rotary position embeddings as Hugging Face Llama applies them
//! ("rotate half": the first and second halves of each head are the pair).

use super::config::{LlamaConfig, RopeScaling};
use burn::module::Module;
use burn::prelude::*;

/// The inverse frequencies `θ_i = base^(-2i/hd)`, `i < hd/2`, with
/// `rope_scaling` of type `llama3` applied (as transformers'
/// `_compute_llama3_parameters`):
///
/// - wavelength `λ_i = 2π/θ_i`; `λ_low = L/low_freq_factor`, `λ_high = L/high_freq_factor`
///   (`L` = `original_max_position_embeddings`);
/// - `λ_i > λ_low`: `θ_i / factor`; `λ_i < λ_high`: `θ_i`;
/// - between: `(1 - s) θ_i / factor + s θ_i`, `s = (L/λ_i - low) / (high - low)`.
pub fn inverse_frequencies(head_dim: usize, base: f64, scaling: Option<&RopeScaling>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            // transformers computes these in f32
            let exponent = (2 * i) as f32 / head_dim as f32;
            let theta = 1.0 / (base as f32).powf(exponent);
            match scaling {
                None => theta,
                Some(s) => {
                    let old = s.original_max_position_embeddings as f32;
                    let (low, high, factor) = (
                        s.low_freq_factor as f32,
                        s.high_freq_factor as f32,
                        s.factor as f32,
                    );
                    let wavelen = 2.0 * std::f32::consts::PI / theta;
                    if wavelen < old / high {
                        theta
                    } else if wavelen > old / low {
                        theta / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * theta / factor + smooth * theta
                    }
                }
            }
        })
        .collect()
}

/// Rotary embedding of queries and keys at explicit positions (per row, so
/// left-padded batches and KV-cached decoding use the true positions).
///
/// For `x` `[B, h, T, hd]` and positions `p` `[B, T]`:
/// `x * cos(p θ) + rotate_half(x) * sin(p θ)`, where `rotate_half([x1, x2]) =
/// [-x2, x1]` and `cos`, `sin` repeat `θ` over both halves.
#[derive(Module, Debug)]
pub struct RotaryEmbedding {
    /// `[hd/2]` inverse frequencies (a constant, not a parameter).
    pub inv_freq: Tensor<1>,
}

impl RotaryEmbedding {
    /// The embedding of `config` on `device`.
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        let hd = config.head_size();
        let inv = inverse_frequencies(hd, config.rope_theta, config.rope_scaling.as_ref());
        Self {
            inv_freq: Tensor::from_data(TensorData::new(inv, [hd / 2]), device),
        }
    }

    /// `(cos, sin)`, each `[B, 1, T, hd]`, for positions `[B, T]`.
    pub fn tables(&self, positions: Tensor<2, Int>) -> (Tensor<4>, Tensor<4>) {
        let [b, t] = positions.dims();
        let [half] = self.inv_freq.dims();
        let angles =
            positions.float().reshape([b * t, 1]) * self.inv_freq.clone().reshape([1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 1).reshape([b, 1, t, 2 * half]);
        (angles.clone().cos(), angles.sin())
    }

    /// Rotates `x` `[B, h, T, hd]` with the tables of [`RotaryEmbedding::tables`].
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.clone() + rotated * sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_scales_low_and_blends_the_band() {
        let s = RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        };
        let plain = inverse_frequencies(16, 10_000.0, None);
        let scaled = inverse_frequencies(16, 10_000.0, Some(&s));
        let mut bands = [0; 3];
        for (p, q) in plain.iter().zip(&scaled) {
            let wavelen = 2.0 * std::f32::consts::PI / p;
            if wavelen < 8.0 {
                assert_eq!(p, q);
                bands[0] += 1;
            } else if wavelen > 32.0 {
                assert!((p / 8.0 - q).abs() < 1e-9);
                bands[2] += 1;
            } else {
                assert!(q < p && *q > p / 8.0);
                bands[1] += 1;
            }
        }
        assert!(bands.iter().all(|&n| n > 0), "{bands:?}");
    }

    #[test]
    fn rotation_preserves_norms_and_is_identity_at_zero() {
        let device = crate::cpu_device();
        let config = LlamaConfig::preset("tiny").unwrap();
        let rope = RotaryEmbedding::new(&config, &device);
        let x = Tensor::<4>::random([1, 2, 3, 16], burn::tensor::Distribution::Default, &device);
        let pos = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 5, 9], [1, 3]), &device);
        let (cos, sin) = rope.tables(pos);
        let y = RotaryEmbedding::apply(x.clone(), &cos, &sin);
        let norms = |t: Tensor<4>| {
            t.powf_scalar(2.0)
                .sum_dim(3)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        for (a, b) in norms(x.clone()).iter().zip(norms(y.clone())) {
            assert!((a - b).abs() < 1e-4);
        }
        let d = (y.narrow(2, 0, 1) - x.narrow(2, 0, 1))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 1e-7);
    }
}
