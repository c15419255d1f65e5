#!/usr/bin/env python3
"""Side-by-side speed of this crate and the PyTorch yardstick: the RT protocol
(--task rt, the default) or the causal-LM path (--task llm).

--task llm: `mlora bench llm --model DIR` (lora and matryoshka) against
scripts/torch_llm.py (PyTorch + PEFT LoRA on the same seven projections) on the same
random-init small Llama (torch_llm.py make: 4 layers, hidden 512, GQA 8/2, vocab 32k,
made once into --llm-model), the same synthetic rows, batch, sequence length and R;
ms/step after warm-up and peak RSS, medians over interleaved repeats:

    python3 scripts/bench_vs_torch.py --task llm --python /root/torchenv/bin/python \
        --batch 4 --seq 256 --steps 10 --warmup 2 --repeats 3

--task rt:

Runs, interleaved and repeated, on the same machine in one go:
  * `mlora bench rt --method M --backend B --steps N --warmup W --json`
  * `torch_rt.py --method M --train-n 32*(N+W) --test-n 1000 --threads T`
    (../shared/bench/torch_rt.py: needs torch, transformers, tokenizers)
for M in lora, matryoshka and every backend B asked for; each process's peak RSS
is GNU time's maximum resident set size (/usr/bin/time, Debian package `time`). Prints the ratio table (ours / PyTorch) from
the medians and writes every raw figure to --out as JSON.

Both sides time the same N+W training steps of batch 32 (torch_rt.py reports the
mean over all its steps, so the ours/torch step ratio uses ours over all N+W
steps too; `ms_per_step` after warm-up is printed as well), and the evaluation
of the 1000 test rows at every rank of S = {1,2,4,8,16,32} (batch 128).

    python3 scripts/bench_vs_torch.py --python /root/torchenv/bin/python \
        --steps 20 --warmup 3 --repeats 2 --backends flex,ndarray
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_measured(cmd, env):
    """Runs cmd; returns (stdout, stderr, wall seconds); exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return out, err, wall


def peak_rss_cmd(cmd):
    """Wraps cmd in GNU time so its max RSS (KiB) lands on stderr."""
    return ["/usr/bin/time", "-f", "MAXRSS_KB=%M"] + cmd


def parse_maxrss(err):
    for line in reversed(err.splitlines()):
        if line.startswith("MAXRSS_KB="):
            return int(line.split("=", 1)[1]) / 1024.0
    return float("nan")


def last_json(out):
    """The last JSON document on stdout (torch_rt.py prints one line; mlora a pretty object)."""
    start = out.rfind("\n{")
    text = out[start + 1:] if start >= 0 else out
    return json.loads(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="a Python with torch, transformers, tokenizers")
    ap.add_argument("--torch-script", default=str(ROOT.parent / "shared" / "bench" / "torch_rt.py"))
    ap.add_argument("--mlora", default=None, help="mlora binary (default: $CARGO_TARGET_DIR or target, release)")
    ap.add_argument("--assets", default=str(ROOT / "assets"))
    ap.add_argument("--backends", default="flex", help="comma list of mlora backends")
    ap.add_argument("--methods", default="lora,matryoshka")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--test-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="write raw figures here (JSON)")
    ap.add_argument("--task", default="rt", choices=["rt", "llm"])
    ap.add_argument("--llm-model", default=None, help="--task llm: the model directory (made if missing)")
    ap.add_argument("--batch", type=int, default=4, help="--task llm: rows per step")
    ap.add_argument("--seq", type=int, default=256, help="--task llm: tokens per row")
    ap.add_argument("--rank", type=int, default=32, help="--task llm: R")
    a = ap.parse_args()
    if a.task == "llm":
        return llm(a)

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    mlora = a.mlora or str(target / "release" / "mlora")
    if not Path(mlora).is_file():
        sys.exit(f"no mlora binary at {mlora}: cargo build --release --bin mlora (or pass --mlora)")
    if not Path(a.torch_script).is_file():
        sys.exit(f"no torch_rt.py at {a.torch_script} (pass --torch-script)")
    if not Path(a.assets, "model.safetensors").is_file():
        sys.exit(f"no assets in {a.assets}: run scripts/fetch-assets.sh")

    env = dict(os.environ)
    t = str(a.threads)
    env.update(RAYON_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, TOKENIZERS_PARALLELISM="false")
    methods = a.methods.split(",")
    backends = a.backends.split(",")
    rows = a.steps + a.warmup
    raw = []
    for rep in range(a.repeats):
        for method in methods:
            for backend in backends:
                cmd = [mlora, "bench", "rt", "--method", method, "--backend", backend,
                       "--steps", str(a.steps), "--warmup", str(a.warmup),
                       "--test-n", str(a.test_n), "--model", a.assets, "--json"]
                out, err, wall = run_measured(peak_rss_cmd(cmd), env)
                r = last_json(out)
                raw.append({"side": f"mlora-{backend}", "method": method, "repeat": rep,
                            "ms_per_step_all": r["ms_per_step_all"], "ms_per_step": r["ms_per_step"],
                            "eval_s": r["eval_seconds"], "peak_rss_mb": parse_maxrss(err), "wall_s": wall})
                print(f"[{rep}] mlora {backend:8} {method:10} {r['ms_per_step_all']:8.1f} ms/step "
                      f"({r['ms_per_step']:.1f} after warm-up)  eval {r['eval_seconds']:6.2f} s  "
                      f"RSS {raw[-1]['peak_rss_mb']:6.0f} MiB", flush=True)
            cmd = [a.python, a.torch_script, "--assets", a.assets, "--method", method,
                   "--train-n", str(32 * rows), "--test-n", str(a.test_n), "--threads", t]
            out, err, wall = run_measured(peak_rss_cmd(cmd), env)
            r = last_json(out)
            raw.append({"side": "torch", "method": method, "repeat": rep,
                        "ms_per_step_all": r["step_ms"], "ms_per_step": float("nan"),
                        "eval_s": r["eval_s"], "peak_rss_mb": parse_maxrss(err), "wall_s": wall})
            print(f"[{rep}] torch {'':8} {method:10} {r['step_ms']:8.1f} ms/step  "
                  f"eval {r['eval_s']:6.2f} s  RSS {raw[-1]['peak_rss_mb']:6.0f} MiB", flush=True)

    def med(side, method, key):
        vals = [x[key] for x in raw if x["side"] == side and x["method"] == method]
        return statistics.median(vals) if vals else float("nan")

    print()
    print(f"RT protocol, {a.steps}+{a.warmup} steps of batch 32, eval of {a.test_n} rows at 6 ranks, "
          f"{a.threads} threads, median of {a.repeats}")
    print(f"{'figure':34} {'ours':>10} {'PyTorch':>10} {'ours/PyTorch':>13}")
    for backend in backends:
        side = f"mlora-{backend}"
        for method in methods:
            for key, label in [("ms_per_step_all", "train ms/step"), ("eval_s", "eval s (all ranks)"),
                               ("peak_rss_mb", "peak RSS MiB")]:
                ours, theirs = med(side, method, key), med("torch", method, key)
                print(f"{backend + ' ' + method + ' ' + label:34} {ours:10.1f} {theirs:10.1f} {ours / theirs:13.3f}")
        if "lora" in methods and "matryoshka" in methods:
            m, l = med(side, "matryoshka", "ms_per_step"), med(side, "lora", "ms_per_step")
            print(f"{backend + ' matryoshka/lora step (after warm-up)':34} {m:10.1f} {l:10.1f} {m / l:13.3f}")
    if "lora" in methods and "matryoshka" in methods:
        m, l = med("torch", "matryoshka", "ms_per_step_all"), med("torch", "lora", "ms_per_step_all")
        print(f"{'torch matryoshka/lora step':34} {m:10.1f} {l:10.1f} {m / l:13.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "runs": raw}, indent=1))


def llm(a):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    mlora = a.mlora or str(target / "release" / "mlora")
    if not Path(mlora).is_file():
        sys.exit(f"no mlora binary at {mlora}: cargo build --release --bin mlora (or pass --mlora)")
    script = str(ROOT / "scripts" / "torch_llm.py")
    model = a.llm_model or str(Path(os.environ.get("TMPDIR", "/tmp")) / "mlora-bench-llama")
    env = dict(os.environ)
    t = str(a.threads)
    env.update(RAYON_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, TOKENIZERS_PARALLELISM="false")
    if not Path(model, "model.safetensors").is_file():
        run_measured([a.python, script, "make", "--out", model], env)
    methods = a.methods.split(",")
    common = ["--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps),
              "--warmup", str(a.warmup), "--rank", str(a.rank)]
    raw = []
    for rep in range(a.repeats):
        for method in methods:
            cmd = [mlora, "bench", "llm", "--model", model, "--method", method, "--json"] + common
            out, err, wall = run_measured(peak_rss_cmd(cmd), env)
            r = last_json(out)
            raw.append({"side": "mlora", "method": method, "repeat": rep, "ms_per_step": r["ms_per_step"],
                        "peak_rss_mb": parse_maxrss(err), "wall_s": wall, "tflops": r["tflops"]})
            print(f"[{rep}] mlora {method:10} {r['ms_per_step']:8.1f} ms/step  RSS {raw[-1]['peak_rss_mb']:6.0f} MiB",
                  flush=True)
        cmd = [a.python, script, "train", "--model", model, "--threads", t] + common
        out, err, wall = run_measured(peak_rss_cmd(cmd), env)
        r = last_json(out)
        raw.append({"side": "torch", "method": "lora", "repeat": rep, "ms_per_step": r["step_ms"],
                    "peak_rss_mb": parse_maxrss(err), "wall_s": wall})
        print(f"[{rep}] torch lora       {r['step_ms']:8.1f} ms/step  RSS {raw[-1]['peak_rss_mb']:6.0f} MiB",
              flush=True)

    def med(side, method, key):
        vals = [x[key] for x in raw if x["side"] == side and x["method"] == method]
        return statistics.median(vals) if vals else float("nan")

    print()
    print(f"causal LM (4 layers, d 512, vocab 32k), batch {a.batch} x {a.seq} tokens, R = {a.rank}, "
          f"{a.steps} steps after {a.warmup}, {a.threads} threads, median of {a.repeats}; PyTorch = PEFT LoRA")
    print(f"{'figure':34} {'ours':>10} {'PyTorch':>10} {'ours/PyTorch':>13}")
    for method in methods:
        for key, label in [("ms_per_step", "train ms/step"), ("peak_rss_mb", "peak RSS MiB")]:
            ours, theirs = med("mlora", method, key), med("torch", "lora", key)
            print(f"{method + ' ' + label:34} {ours:10.1f} {theirs:10.1f} {ours / theirs:13.3f}")
    if "lora" in methods and "matryoshka" in methods:
        m, l = med("mlora", "matryoshka", "ms_per_step"), med("mlora", "lora", "ms_per_step")
        print(f"{'ours matryoshka/lora step':34} {m:10.1f} {l:10.1f} {m / l:13.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "runs": raw}, indent=1))


if __name__ == "__main__":
    main()
