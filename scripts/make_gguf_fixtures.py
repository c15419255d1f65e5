"""Makes tests/fixtures/gguf/: GGUF fixtures and the reference values the
crate's GGUF reading is checked against.

- quants.gguf + quants_expected.safetensors: one [2, 512] tensor per supported
  type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K,
  Q6_K), written with gguf.GGUFWriter, and each one dequantized by
  gguf.quants.dequantize. Types gguf can quantize are quantized from random
  values; K-quant blocks are random bytes with finite f16 scales (gguf has no
  K-quant encoder), which exercises every bit of the block layout.
- spm.gguf + spm_ids.json: a tiny SentencePiece BPE tokenizer (`llama` model,
  byte fallback) trained here, stored as llama.cpp's converter stores one, and
  the ids sentencepiece itself gives a few strings.
- llama3.gguf, tinyllama.gguf, smollm2.gguf: the three tiny Hugging Face
  layouts of tests/fixtures/llama/ written as llama.cpp's converter writes them
  (q/k rows permuted for its rotary layout, Llama 3's rope scaling as a
  rope_freqs tensor, untied `output.weight`, bf16 / f16 / f32 tensors, the
  byte-level BPE tokenizer as tokenizer.ggml.* with pre `gpt-2`): the crate
  must load each one as it loads the directory.
- adapter/adapter.safetensors + adapter_r2.json: a small run of the crate on
  smollm2.gguf (`mlora train --task causal-lm --model tests/fixtures/gguf/smollm2.gguf
  --data tests/fixtures/llama/arith.jsonl --rank 4 --ranks 1,2,4 --train-n 16 --test-n 8
  --batch 8 --max-len 40 --max-new-tokens 0 --lr 1e-2`), and what its rank-2
  llama.cpp adapter must hold, computed here from the adapter's A and B with
  llama.cpp's own conventions (lora_a = A[:, :k]^T, lora_b = B[:k]^T with the
  rotary row permute of attn_q/attn_k, alpha = s(k) k); with --check-export
  FILE, the file `mlora export --gguf` wrote is read with gguf.GGUFReader and
  compared to it.
- smollm2_parity.json (with --model SmolLM2-135M-Instruct.Q4_1.gguf): the real
  model converted to a Hugging Face directory by scripts/gguf_to_hf.py, then
  transformers' logits of three prompts (a slice of the vocabulary at every
  position, plus logsumexp and argmax), the masked SFT loss of a few GSM-style
  rows by the crate's rule, and the token ids of a few hundred strings by the
  original SmolLM2 tokenizer's rule (each digit alone, then byte-level BPE).

Run locally (CI needs none of this):
    python -m venv .venv && .venv/bin/pip install torch transformers tokenizers gguf sentencepiece
    .venv/bin/python scripts/make_gguf_fixtures.py [--model assets/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse, json, math, os, random, sys, tempfile
import numpy as np
import gguf
from gguf import GGUFWriter, GGMLQuantizationType as Q
from gguf.quants import quantize, dequantize
from safetensors.numpy import save_file

OUT = "tests/fixtures/gguf"
rng = np.random.default_rng(0)

QUANTIZABLE = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
# K-quant block layouts: (bytes per 256 values, byte offsets of f16 scales)
KQUANTS = {Q.Q2_K: (84, [80, 82]), Q.Q3_K: (110, [108]), Q.Q4_K: (144, [0, 2]),
           Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208])}


def quants():
    rows, cols = 2, 512
    w = GGUFWriter(f"{OUT}/quants.gguf", "llama")
    expected = {}
    for t in QUANTIZABLE:
        values = (rng.standard_normal((rows, cols)) * 0.5).astype(np.float32)
        raw = quantize(values, t)
        w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=t)
        expected[t.name] = dequantize(raw, t).astype(np.float32).reshape(rows, cols)
    for t, (size, scales) in KQUANTS.items():
        blocks = rng.integers(0, 256, size=(rows * cols // 256, size), dtype=np.uint8)
        for off in scales:
            d = (rng.uniform(0.001, 0.05, size=blocks.shape[0]) * rng.choice([-1, 1], blocks.shape[0]))
            blocks[:, off:off + 2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
        raw = blocks.reshape(rows, cols // 256 * size)
        w.add_tensor(t.name, raw, raw_shape=raw.shape, raw_dtype=t)
        expected[t.name] = dequantize(raw, t).astype(np.float32).reshape(rows, cols)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, f"{OUT}/quants_expected.safetensors")


SPM_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Tom has 8 boxes of 7 apples. How many apples does he have?",
    "A train leaves at 3 pm and arrives at 5 pm; how long is the trip?",
    "def add(a, b): return a + b",
    "Mary had a little lamb, its fleece was white as snow.",
    "Numbers like 12, 345 and 6789 appear in word problems.",
] * 20
SPM_PROBES = [
    "Hello world", "The fox jumps over 12 lazy dogs.", "  two leading spaces",
    "tabs\tand\nnewlines\n\n1. first", "unicode: café, naïve, 東京, emoji 🦀",
    "def f(x):\n    return x * 2", "How many apples? 8 * 7 = 56", "<unk> is text here",
    "", " ", "a", "Ünïcödé", "trailing space ",
]


def spm():
    import sentencepiece as spmlib
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/corpus.txt", "w") as f:
            f.write("\n".join(SPM_TEXT))
        spmlib.SentencePieceTrainer.train(
            input=f"{d}/corpus.txt", model_prefix=f"{d}/spm", vocab_size=400, model_type="bpe",
            byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=True, bos_id=1, eos_id=2, unk_id=0,
            hard_vocab_limit=False, minloglevel=2)
        sp = spmlib.SentencePieceProcessor(model_file=f"{d}/spm.model")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i)
                     else 6 if sp.is_byte(i) else 5 if sp.is_unused(i) else 1)
    w = GGUFWriter(f"{OUT}/spm.gguf", "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ids = [[1] + sp.encode(s) for s in SPM_PROBES]
    with open(f"{OUT}/spm_ids.json", "w") as f:
        json.dump({"strings": SPM_PROBES, "ids": ids,
                   "decoded": [sp.decode(i[1:]) for i in ids]}, f, ensure_ascii=False)


def permute(w, heads):
    """llama.cpp's convert_hf_to_gguf permute: rows [h][2][i] -> [h][i][2]."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def hf_layouts():
    import math
    from safetensors.numpy import load_file
    gg = {"embed_tokens": "token_embd", "norm": "output_norm"}
    layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for name, dtype in [("llama3", Q.BF16), ("tinyllama", Q.F16), ("smollm2", Q.F32)]:
        d = f"tests/fixtures/llama/{name}"
        c = json.load(open(f"{d}/config.json"))
        tensors = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                import torch
                from safetensors.torch import load_file as load_pt
                tensors.update({k: v.float().numpy() for k, v in load_pt(f"{d}/{f}").items()})
        heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
        hd = c.get("head_dim") or c["hidden_size"] // heads
        theta = c.get("rope_theta") or c.get("rope_parameters", {}).get("rope_theta", 10000.0)
        w = GGUFWriter(f"{OUT}/{name}.gguf", "llama")
        w.add_block_count(c["num_hidden_layers"])
        w.add_context_length(c["max_position_embeddings"])
        w.add_embedding_length(c["hidden_size"])
        w.add_feed_forward_length(c["intermediate_size"])
        w.add_head_count(heads)
        w.add_head_count_kv(kv)
        w.add_key_length(hd)
        w.add_value_length(hd)
        w.add_rope_dimension_count(hd)
        w.add_rope_freq_base(theta)
        w.add_layer_norm_rms_eps(c["rms_norm_eps"])
        w.add_vocab_size(c["vocab_size"])
        for hf, arr in sorted(tensors.items()):
            module, kind = hf.rsplit(".", 1)
            if module.startswith("model.layers."):
                _, _, i, rest = module.split(".", 3)
                g = f"blk.{i}.{layer[rest]}.{kind}"
            elif module == "lm_head":
                g = f"output.{kind}"
            else:
                g = f"{gg[module.split('.', 1)[1]]}.{kind}"
            if g.endswith("attn_q.weight"):
                arr = permute(arr, heads)
            elif g.endswith("attn_k.weight"):
                arr = permute(arr, kv)
            t = dtype if arr.ndim == 2 else Q.F32
            raw = quantize(np.ascontiguousarray(arr, dtype=np.float32), t)
            w.add_tensor(g, raw, raw_shape=raw.shape, raw_dtype=t)
        rs = c.get("rope_scaling")
        if rs and rs.get("rope_type") == "llama3":
            # as convert_hf_to_gguf's LlamaModel.generate_extra_tensors
            freqs = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
            L, lo, hi, f = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                            rs["high_freq_factor"], rs["factor"])
            factors = []
            for fr in freqs:
                wl = 2 * math.pi / fr
                if wl < L / hi:
                    factors.append(1.0)
                elif wl > L / lo:
                    factors.append(f)
                else:
                    sm = (L / wl - lo) / (hi - lo)
                    factors.append(1 / ((1 - sm) / f + sm))
            w.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))
            w.add_rope_scaling_orig_ctx_len(L)
        tok = json.load(open(f"{d}/tokenizer.json"))
        vocab = dict(tok["model"]["vocab"])
        for a in tok["added_tokens"]:
            vocab[a["content"]] = a["id"]
        tokens = [None] * len(vocab)
        for t_, i in vocab.items():
            tokens[i] = t_
        special = {a["content"] for a in tok["added_tokens"] if a["special"]}
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types([3 if t_ in special else 1 for t_ in tokens])
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
        ids = lambda v: v[0] if isinstance(v, list) else v
        w.add_bos_token_id(ids(c["bos_token_id"]))
        w.add_eos_token_id(ids(c["eos_token_id"]))
        w.add_add_bos_token(tok["post_processor"]["type"] == "TemplateProcessing")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


GG_LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}


def adapter_fixture(check_export=None, rank=2):
    from safetensors import safe_open
    f = safe_open(f"{OUT}/adapter/adapter.safetensors", "np")
    meta = json.loads(f.metadata()["matryoshka_lora"])
    config = json.load(open("tests/fixtures/llama/smollm2/config.json"))
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    scale = {"sqrt": 1 / math.sqrt(rank), "rank": 1 / rank, "none": 1.0}[meta["scaling"]]
    tensors = {}
    for path, module in meta["modules"].items():
        a, b = f.get_tensor(f"{path}.lora_a"), f.get_tensor(f"{path}.lora_b")  # [in, R], [R, out]
        lora_a = a[:, :rank].T.copy()        # [k, in]
        lora_b = b[:rank, :].T.copy()        # [out, k]
        _, _, layer, rest = module.split(".", 3)
        g = f"blk.{layer}.{GG_LAYER[rest]}.weight"
        if rest == "self_attn.q_proj":
            lora_b = permute(lora_b, heads)
        elif rest == "self_attn.k_proj":
            lora_b = permute(lora_b, kv)
        # GGUF dimensions innermost first
        tensors[f"{g}.lora_a"] = {"ne": list(reversed(lora_a.shape)), "values": lora_a.ravel().tolist()}
        tensors[f"{g}.lora_b"] = {"ne": list(reversed(lora_b.shape)), "values": lora_b.ravel().tolist()}
    expected = {"rank": rank, "alpha": scale * rank,
                "metadata": {"general.type": "adapter", "adapter.type": "lora",
                             "general.architecture": "llama"},
                "tensors": tensors}
    with open(f"{OUT}/adapter_r{rank}.json", "w") as out:
        json.dump(expected, out)
    if check_export:
        r = gguf.GGUFReader(check_export)
        for k, v in expected["metadata"].items():
            assert r.fields[k].contents() == v, (k, r.fields[k].contents())
        alpha = r.fields["adapter.lora.alpha"].contents()
        assert abs(alpha - expected["alpha"]) < 1e-6, alpha
        got = {t.name: t for t in r.tensors}
        assert sorted(got) == sorted(tensors), "tensor names differ"
        for name, want in tensors.items():
            t = got[name]
            assert t.tensor_type == Q.F32, (name, t.tensor_type)
            assert [int(x) for x in t.shape] == want["ne"], (name, t.shape, want["ne"])
            assert np.array_equal(np.asarray(t.data, dtype=np.float32).ravel(),
                                  np.array(want["values"], dtype=np.float32)), name
        print(f"{check_export}: {len(tensors)} tensors and the metadata as gguf reads them: equal")


def probe_strings():
    """A few hundred strings where tokenizers disagree: digits, blank lines
    before digits, unicode, code, chat markup."""
    r = random.Random(0)
    words = ["apples", "the", "train", "Question", "Answer", "total", "café", "naïve", "東京",
             "Ünïcödé", "🦀", "x", "def", "return", "  ", "\t", "\n", "\n\n", "<|im_end|>",
             "<|im_start|>", "####", "=", "+", "*", "(", ")", ":", "'s", "don't", "I'm"]
    out = ["\n\n1.", "\n\n1. First\n2. Second", "12345678901234567890", "3.14159", "-42",
           "Tom has 8 boxes of 7 apples.\n#### 56", "x = 1_000_000", "a\n\n\n\nb", "   7",
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
           "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
           "for i in range(10):\n\tprint(i ** 2)", "naïve café 東京 🦀 Ünïcödé", "", " ", "  \n  "]
    while len(out) < 300:
        n = r.randint(1, 12)
        parts = []
        for _ in range(n):
            c = r.random()
            if c < 0.3:
                parts.append(str(r.randint(0, 10 ** r.randint(1, 7))))
            elif c < 0.4:
                parts.append(r.choice(["\n\n", "\n", " "]) + str(r.randint(1, 20)) + ".")
            else:
                parts.append(r.choice(words))
        out.append(r.choice(["", " "]).join(parts))
    return out


def real_model(path):
    import torch
    from transformers import LlamaForCausalLM
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gguf_to_hf import convert
    from tokenizers import Tokenizer
    torch.manual_seed(0)
    d = tempfile.mkdtemp(prefix="smollm2-hf-")
    config = convert(path, d)
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    model = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                             attn_implementation="eager").eval()
    prompts = ["<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
               "The capital of France is",
               "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"]
    vocab = config["vocab_size"]
    cols = list(range(0, vocab, 769))
    logits_out = []
    with torch.no_grad():
        for p in prompts:
            ids = tok.encode(p).ids
            logits = model(torch.tensor([ids])).logits[0]
            argmax = logits.argmax(-1)
            logits_out.append({
                "prompt": p, "ids": ids, "cols": cols,
                "values": logits[:, cols].tolist(),
                "argmax": argmax.tolist(),
                "max": logits.max(-1).values.tolist(),
                "logsumexp": torch.logsumexp(logits, -1).tolist()})
    # masked SFT loss by the crate's rule on GSM-style rows
    rows = [json.loads(l) for l in open("tests/fixtures/llama/arith_gsm8k.jsonl")][:4]
    sft_rows = [{"prompt": "Question: " + r["question"] + "\nAnswer: ", "response": r["answer"]}
                for r in rows]
    eos, max_len = config["eos_token_id"], 128
    sft_ids, prompt_lens = [], []
    for r in sft_rows:
        p = tok.encode(r["prompt"]).ids
        ids = (p + tok.encode(r["response"], add_special_tokens=False).ids + [eos])[:max_len]
        sft_ids.append(ids)
        prompt_lens.append(len(p))
    T = max(len(i) for i in sft_ids)
    input_ids = torch.zeros(len(sft_ids), T, dtype=torch.long)
    mask = torch.zeros(len(sft_ids), T, dtype=torch.long)
    labels = torch.full((len(sft_ids), T), -100, dtype=torch.long)
    for i, (ids, p) in enumerate(zip(sft_ids, prompt_lens)):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        labels[i, p:len(ids)] = torch.tensor(ids[p:])
    with torch.no_grad():
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss.item()
    strings = probe_strings()
    with open(f"{OUT}/smollm2_parity.json", "w") as f:
        json.dump({"model": os.path.basename(path), "logits": logits_out, "sft_rows": sft_rows,
                   "max_len": max_len, "sft_ids": sft_ids, "prompt_lens": prompt_lens,
                   "sft_loss": loss, "token_strings": strings,
                   "token_ids": [tok.encode(s).ids for s in strings],
                   "transformers": __import__("transformers").__version__,
                   "gguf": getattr(gguf, "__version__", "?")}, f, ensure_ascii=False)
    print(f"sft loss {loss:.6f}; converted directory left in {d}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="SmolLM2-135M-Instruct.Q4_1.gguf for the real-model parity file")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--check-export", help="a rank-2 `mlora export --gguf` of adapter/ to read with gguf")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not a.skip_small:
        quants()
        spm()
        hf_layouts()
        adapter_fixture()
    if a.check_export:
        adapter_fixture(a.check_export)
    if a.model:
        real_model(a.model)
