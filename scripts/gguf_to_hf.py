"""Converts a llama-architecture GGUF file into a Hugging Face model directory
(config.json, tokenizer.json, model.safetensors in f32), for parity checks of
the crate's own GGUF loading against transformers.

- Every tensor is dequantized with the `gguf` package (gguf.quants.dequantize),
  so the directory holds exactly the quantized model's values.
- attn_q / attn_k rows are put back in Hugging Face order (llama.cpp's converter
  interleaves each head's halves for its rotary layout).
- tokenizer.json is rebuilt from tokenizer.ggml.tokens/merges with the
  pre-tokenizer of the original model's tokenizer.json; only `gpt2` models whose
  tokenizer.ggml.pre is `smollm` (SmolLM/SmolLM2: each digit alone, then GPT-2's
  byte-level split) are supported: transformers' own GGUF import drops that
  digit split, so it is not used.

Usage: python scripts/gguf_to_hf.py MODEL.gguf OUT_DIR
"""
import json, os, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, AddedToken

NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
         "ffn_norm": "post_attention_layernorm"}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def hf_name(name):
    module, kind = name.rsplit(".", 1)
    if module.startswith("blk."):
        _, layer, rest = module.split(".", 2)
        return f"model.layers.{layer}.{LAYER[rest]}.{kind}"
    return f"{NAMES[module]}.{kind}"


def unpermute(w, heads):
    """Inverse of llama.cpp's permute: rows [h][i][2] -> [h][2][i]."""
    return (w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def convert(path, out):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    assert arch == "llama", f"architecture {arch} is not llama"
    k = lambda key, d=None: field(r, f"llama.{key}", d)
    heads, kv = k("attention.head_count"), k("attention.head_count_kv", k("attention.head_count"))
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, heads)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, kv)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    tokens = field(r, "tokenizer.ggml.tokens")
    hidden = k("embedding_length")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": k("vocab_size", len(tokens)), "hidden_size": hidden,
        "intermediate_size": k("feed_forward_length"), "num_hidden_layers": k("block_count"),
        "num_attention_heads": heads, "num_key_value_heads": kv,
        "head_dim": k("attention.key_length", hidden // heads),
        "rms_norm_eps": float(np.float32(k("attention.layer_norm_rms_epsilon")).item()),
        "rope_theta": float(k("rope.freq_base", 10000.0)),
        "max_position_embeddings": k("context_length"),
        "tie_word_embeddings": "output.weight" not in [t.name for t in r.tensors],
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(r, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": field(r, "tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
    }
    # f32 metadata as the shortest decimal (9.99999974e-06 -> 1e-05)
    config["rms_norm_eps"] = float(str(np.float32(k("attention.layer_norm_rms_epsilon"))))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tokenizer(r).save(os.path.join(out, "tokenizer.json"))
    return config


def tokenizer(r):
    model, pre = field(r, "tokenizer.ggml.model"), field(r, "tokenizer.ggml.pre")
    assert model == "gpt2" and pre == "smollm", f"only gpt2/smollm tokenizers ({model}/{pre})"
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    # SmolLM2's tokenizer.json: Digits(individual) then ByteLevel(use_regex)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
