"""Checks a llama.cpp adapter written by `mlora export --gguf` with llama.cpp
itself (llama-cpp-python builds it from PyPI's source), against the crate's
rank-k model as a merged Hugging Face directory (`mlora merge`) run by
transformers, and checks llama.cpp's tokenizer against the crate's fixture ids.

llama.cpp multiplies quantized matrices by quantized activations, so the base
is first written as F32 by llama.cpp's own quantize tool (`--base-f32`): both
sides then compute in f32 from the same dequantized values.

Usage (by hand; CI does not need llama.cpp):
    .venv/bin/pip install llama-cpp-python torch transformers
    mlora export --adapter RUN --rank K --gguf RUN/adapter-rK.gguf
    mlora merge  --adapter RUN --rank K --out /tmp/merged-rK
    python scripts/llama_cpp_check.py assets/SmolLM2-135M-Instruct.Q4_1.gguf \\
        RUN/adapter-rK.gguf /tmp/merged-rK [--parity tests/fixtures/gguf/smollm2_parity.json]
"""
import argparse, json, os, tempfile
import numpy as np
import llama_cpp
import torch
from transformers import LlamaForCausalLM

PROMPTS = ["What is 24 - 48?\n", "What is 7 + 35?\n24 - 48 = -24\n#### -24",
           "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n"]


def f32_base(path):
    out = os.path.join(tempfile.mkdtemp(prefix="llama-f32-"), "base-f32.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(path.encode(), out.encode(), params)
    assert rc == 0, f"llama_model_quantize failed ({rc})"
    return out


def llama_logits(model, lora, prompts):
    llm = llama_cpp.Llama(model_path=model, lora_path=lora, n_ctx=256, n_threads=2,
                          logits_all=True, verbose=False)
    out = []
    for p in prompts:
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        out.append((ids, np.array(llm.scores[:len(ids)], dtype=np.float64)))
    return llm, out


def hf_logits(dir_, ids_list):
    m = LlamaForCausalLM.from_pretrained(dir_, torch_dtype=torch.float32,
                                         attn_implementation="eager").eval()
    with torch.no_grad():
        return [m(torch.tensor([ids])).logits[0].double().numpy() for ids in ids_list]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base"); ap.add_argument("adapter"); ap.add_argument("merged")
    ap.add_argument("--base-hf", help="the base as a Hugging Face directory (scripts/gguf_to_hf.py)")
    ap.add_argument("--parity", help="smollm2_parity.json: compare llama.cpp's token ids")
    a = ap.parse_args()
    base = f32_base(a.base)
    llm, with_lora = llama_logits(base, a.adapter, PROMPTS)
    ids_list = [ids for ids, _ in with_lora]
    merged = hf_logits(a.merged, ids_list)
    report = {"prompts": len(PROMPTS)}
    diffs = [float(np.abs(l - m).max()) for (_, l), m in zip(with_lora, merged)]
    agree = [float((l.argmax(-1) == m.argmax(-1)).mean()) for (_, l), m in zip(with_lora, merged)]
    report["adapter: max |llama.cpp - merged|"] = max(diffs)
    report["adapter: argmax agreement"] = float(np.mean(agree))
    _, plain = llama_logits(base, None, PROMPTS)
    shift = [float(np.abs(l - p).max()) for (_, l), (_, p) in zip(with_lora, plain)]
    report["adapter's own effect: max |with - without| in llama.cpp"] = max(shift)
    if a.base_hf:
        base_hf = hf_logits(a.base_hf, ids_list)
        report["base: max |llama.cpp - transformers|"] = max(
            float(np.abs(p - b).max()) for (_, p), b in zip(plain, base_hf))
        delta_l = [l - p for (_, l), (_, p) in zip(with_lora, plain)]
        delta_h = [m - b for m, b in zip(merged, base_hf)]
        report["update: max |llama.cpp delta - merged delta|"] = max(
            float(np.abs(x - y).max()) for x, y in zip(delta_l, delta_h))
    if a.parity:
        fx = json.load(open(a.parity))
        same = sum(llm.tokenize(s.encode(), add_bos=False, special=True) == want
                   for s, want in zip(fx["token_strings"], fx["token_ids"]))
        report["tokenizer: llama.cpp ids equal to the fixture's"] = f"{same}/{len(fx['token_strings'])}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
