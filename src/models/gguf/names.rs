//! Hugging Face and GGUF (llama.cpp) names of a Llama-family decoder's
//! tensors, and llama.cpp's row order of the query and key projections.
//!
//! llama.cpp's converter stores `q_proj` and `k_proj` with the rows of each
//! head interleaved for its rotary layout (pairs `(x_i, x_{i + hd/2})` side by
//! side): Hugging Face row `h hd + j hd/2 + i` (head `h`, half `j ∈ {0, 1}`,
//! `i < hd/2`) is GGUF row `h hd + 2 i + j`. [`rows_from_gguf`] undoes it so
//! the decoder's rotary code ("rotate half") stays as it is;
//! [`rows_to_gguf`] applies it (adapter export).

/// Per-layer tensors: Hugging Face module under `model.layers.{i}` and GGUF
/// tensor under `blk.{i}`.
const LAYER: [(&str, &str); 9] = [
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
];

/// Tensors outside the layers.
const GLOBAL: [(&str, &str); 3] = [
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// The GGUF module of the Hugging Face module `hf` (`model.layers.3.self_attn.q_proj`
/// -> `blk.3.attn_q`), if it has one.
///
/// ```
/// use matryoshka_lora::models::gguf::gguf_module;
/// assert_eq!(gguf_module("model.layers.3.mlp.down_proj").as_deref(), Some("blk.3.ffn_down"));
/// assert_eq!(gguf_module("model.embed_tokens").as_deref(), Some("token_embd"));
/// assert_eq!(gguf_module("model.layers.3.mlp"), None);
/// ```
pub fn gguf_module(hf: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = LAYER.iter().find(|(h, _)| *h == module)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The GGUF tensor of the Hugging Face tensor `hf` (`{module}.weight` or
/// `{module}.bias`).
pub fn gguf_tensor(hf: &str) -> Option<String> {
    let (module, kind) = hf.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    Some(format!("{}.{kind}", gguf_module(module)?))
}

/// The Hugging Face tensor of the GGUF tensor `gguf` (`blk.3.attn_q.weight`
/// -> `model.layers.3.self_attn.q_proj.weight`), if it has one.
pub fn hf_tensor(gguf: &str) -> Option<String> {
    let (module, kind) = gguf.rsplit_once('.')?;
    if let Some((h, _)) = GLOBAL.iter().find(|(_, g)| *g == module) {
        return Some(format!("{h}.{kind}"));
    }
    let rest = module.strip_prefix("blk.")?;
    let (layer, tensor) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (h, _) = LAYER.iter().find(|(_, g)| *g == tensor)?;
    Some(format!("model.layers.{layer}.{h}.{kind}"))
}

/// Whether the GGUF tensor `name` has llama.cpp's rotary row order, and over
/// how many heads: `attn_q` over the query heads, `attn_k` over the key/value heads.
pub fn rotary_heads(name: &str, heads: usize, kv_heads: usize) -> Option<usize> {
    let module = name.rsplit_once('.').map_or(name, |(m, _)| m);
    if module.ends_with(".attn_q") {
        Some(heads)
    } else if module.ends_with(".attn_k") {
        Some(kv_heads)
    } else {
        None
    }
}

/// Row `r` of a Hugging Face projection with `heads` heads of `rows / heads`
/// rows is GGUF row `gguf_row(r)`.
fn gguf_row(r: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    let (h, within) = (r / head_dim, r % head_dim);
    let (j, i) = (within / half, within % half);
    h * head_dim + 2 * i + j
}

/// Hugging Face row order of a `[rows, cols]` row-major GGUF q/k tensor
/// (`cols` = 1 for a bias) of `heads` heads.
pub fn rows_from_gguf(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    permute_rows(values, rows, cols, heads, true)
}

/// GGUF row order of a `[rows, cols]` row-major Hugging Face q/k tensor.
pub fn rows_to_gguf(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    permute_rows(values, rows, cols, heads, false)
}

fn permute_rows(values: &[f32], rows: usize, cols: usize, heads: usize, from: bool) -> Vec<f32> {
    let head_dim = rows / heads.max(1);
    if heads == 0 || head_dim < 2 || !rows.is_multiple_of(heads) || !head_dim.is_multiple_of(2) {
        return values.to_vec();
    }
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        let g = gguf_row(r, head_dim);
        let (dst, src) = if from { (r, g) } else { (g, r) };
        out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_and_rows_round_trip() {
        assert_eq!(
            gguf_tensor("model.layers.12.self_attn.o_proj.weight").as_deref(),
            Some("blk.12.attn_output.weight")
        );
        assert_eq!(
            gguf_tensor("model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
        assert_eq!(
            gguf_tensor("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(gguf_tensor("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gguf_tensor("model.norm.scale"), None);
        for hf in [
            "model.layers.7.mlp.gate_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.embed_tokens.weight",
            "lm_head.weight",
        ] {
            assert_eq!(hf_tensor(&gguf_tensor(hf).unwrap()).as_deref(), Some(hf));
        }
        assert_eq!(hf_tensor("rope_freqs.weight"), None);
        assert_eq!(rotary_heads("blk.1.attn_q.weight", 9, 3), Some(9));
        assert_eq!(rotary_heads("blk.1.attn_k.bias", 9, 3), Some(3));
        assert_eq!(rotary_heads("blk.1.attn_v.weight", 9, 3), None);
        // 2 heads of 4 rows, 2 columns: HF head rows [x0 x1 | y0 y1] -> GGUF [x0 y0 x1 y1]
        let hf: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let g = rows_to_gguf(&hf, 8, 2, 2);
        assert_eq!(&g[..8], &[0., 1., 4., 5., 2., 3., 6., 7.]);
        assert_eq!(rows_from_gguf(&g, 8, 2, 2), hf);
        // llama.cpp's permute: reshape(h, 2, hd/2, ..).swapaxes(1, 2)
        assert_eq!(gguf_row(1, 6), 2);
        assert_eq!(gguf_row(3, 6), 1);
        assert_eq!(gguf_row(6 + 5, 6), 6 + 5);
    }
}
