#!/usr/bin/env python3
"""The PyTorch + PEFT yardstick of the causal-LM path (scripts/bench_vs_torch.py --task llm).

    torch_llm.py make --out DIR
        A random-init small Llama saved as a Hugging Face directory (config.json,
        model.safetensors, f32): 4 layers, hidden 512, MLP 1408, 8 heads over 2 KV heads
        (head 64), vocab 32000, untied lm_head, rope_theta 10000; seed 0.

    torch_llm.py train --model DIR --batch B --seq T --steps N --warmup W --rank R --threads 2
        PEFT LoRA (r = R, dropout 0) on q,k,v,o,gate,up,down_proj; AdamW lr 1e-3, no weight
        decay, global grad-norm clip 1.0, linear decay; the rows `mlora bench llm` trains on:
        ids[i] = 3 + h(seed, 1, row, i) mod (V - 3) for i < T - 1, then EOS; the first T/2
        tokens are prompt (labels -100). Prints one JSON line: step_ms (mean over the N timed
        steps after W warm-up steps), step_ms_all, threads.

Needs torch, transformers, peft, safetensors.
"""
import argparse, json, time, sys

M64 = (1 << 64) - 1


def row_ids(seed, stream, row, seq, vocab, eos):
    """The token ids of `mlora bench llm`'s synthetic row (SyntheticLmTask::rows)."""
    ids = []
    for i in range(seq - 1):
        z = seed ^ (stream << 48) ^ (row << 24) ^ i
        z = (z * 0x9E3779B97F4A7C15) & M64
        z ^= z >> 29
        z = (z * 0xBF58476D1CE4E5B9) & M64
        z ^= z >> 32
        ids.append(3 + z % (vocab - 3))
    return ids + [eos]


def make(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-5,
                      rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).float()
    model.save_pretrained(a.out, safe_serialization=True)
    print(json.dumps({"out": a.out, "params": sum(p.numel() for p in model.parameters())}))


def train(a):
    import torch
    from transformers import LlamaForCausalLM
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32,
                                             attn_implementation="sdpa")
    cfg = model.config
    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]
    model = get_peft_model(model, LoraConfig(
        r=a.rank, lora_alpha=a.rank, lora_dropout=0.0, bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = a.steps + a.warmup
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total))
    prompt = max(a.seq // 2, 1)
    times = []
    for step in range(total):
        rows = [row_ids(a.seed, 1, step * a.batch + r, a.seq, cfg.vocab_size, eos) for r in range(a.batch)]
        ids = torch.tensor(rows)
        labels = ids.clone()
        labels[:, :prompt] = -100
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        if not torch.isfinite(loss):
            sys.exit(f"non-finite loss at step {step}")
    timed = times[a.warmup:]
    print(json.dumps({"step_ms": 1000 * sum(timed) / len(timed), "step_ms_all": 1000 * sum(times) / len(times),
                      "threads": a.threads, "loss": loss.item(),
                      "trainable": sum(p.numel() for p in params)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--seq", type=int, default=256)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--rank", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    make(a) if a.cmd == "make" else train(a)


if __name__ == "__main__":
    main()
