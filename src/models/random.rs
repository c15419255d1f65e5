//! Seeded random weights for any layout: a model of a named shape without a
//! checkpoint (benchmarks, GPU checks), the same values on every backend.

use super::weights::{LoadError, TensorSource};
use rayon::prelude::*;

/// Values drawn on the host from a fixed seed, so that every backend (and
/// every run) builds the same model: 2-D tensors (linear and embedding
/// weights) uniform with standard deviation `std` (Hugging Face's
/// `initializer_range`, 0.02 by default), 1-D tensors named `*.bias` zero and
/// every other 1-D tensor (norm weights) one.
///
/// Each tensor's values depend only on the seed, its name and its shape (not
/// on the order tensors are asked for), drawn in parallel chunks.
///
/// ```
/// use matryoshka_lora::models::{RandomWeights, TensorSource};
/// let weights = RandomWeights::new(7);
/// let a = weights.read_f32("layers.0.q_proj.weight", &[4, 8])?;
/// assert_eq!(a, weights.read_f32("layers.0.q_proj.weight", &[4, 8])?);
/// assert_eq!(weights.read_f32("norm.weight", &[3])?, vec![1.0; 3]);
/// assert!(a.iter().all(|v| v.abs() <= 0.02 * 3f32.sqrt()));
/// # Ok::<(), matryoshka_lora::models::LoadError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomWeights {
    /// The seed.
    pub seed: u64,
    /// Standard deviation of matrix entries.
    pub std: f32,
}

impl RandomWeights {
    /// Random weights from `seed` with standard deviation 0.02.
    pub fn new(seed: u64) -> Self {
        Self { seed, std: 0.02 }
    }
}

/// SplitMix64: a stateless, well-mixed 64-bit hash of a counter.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl TensorSource for RandomWeights {
    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let n: usize = expected.iter().product();
        if expected.len() == 1 {
            let value = if name.ends_with("bias") { 0.0 } else { 1.0 };
            return Ok(vec![value; n]);
        }
        let key = splitmix(self.seed ^ name_hash(name));
        // uniform on [-a, a] has standard deviation a / sqrt(3)
        let a = self.std * 3f32.sqrt();
        let mut values = vec![0f32; n];
        const CHUNK: usize = 1 << 16;
        values
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let base = (c * CHUNK) as u64;
                for (i, v) in chunk.iter_mut().enumerate() {
                    let bits = splitmix(key.wrapping_add(base + i as u64));
                    // 24 random bits -> [0, 1)
                    let u = (bits >> 40) as f32 / (1u64 << 24) as f32;
                    *v = (2.0 * u - 1.0) * a;
                }
            });
        Ok(values)
    }
}
