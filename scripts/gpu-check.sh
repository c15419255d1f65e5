#!/usr/bin/env bash
# The one command to run on a GPU machine that has no network and only what was
# carried to it: an `mlora` binary (plain, or xz-compressed as mlora.xz) in BIN_DIR,
# built by scripts/build-gpu-bins.sh with the flex, wgpu and cuda backends.
#
#   scripts/gpu-check.sh BIN_DIR            # the full check (< 8 minutes on one GPU)
#   scripts/gpu-check.sh BIN_DIR --cpu      # the CPU dry run (flex only)
#
# 1. Prints the GPU and driver it sees (nvidia-smi), and the Vulkan devices.
# 2. Correctness: on each backend (flex, wgpu, cuda) a short training and per-rank
#    evaluation of a tiny Llama (`mlora bench llm --config tiny`): weights, adapters
#    and rows drawn on the host from a fixed seed, so every backend trains the same
#    model; its per-rank losses must be within 1e-3 of the CPU figures committed in
#    tests/fixtures/gpu_check_cpu.json (made by this script's CPU run, see below).
# 3. Speed: `mlora bench llm --config llama-3.2-1b --batch 8 --seq 512 --rank 32` for
#    lora and matryoshka on each GPU backend (base in bf16 on cuda, f32 on wgpu),
#    with model FLOPs utilisation against $PEAK_TFLOPS (default 989: an H100/H200's
#    dense bf16 peak).
# 4. Data parallel: the tiny run on two workers (`--devices`) and with 2 accumulated
#    micro-batches (`--grad-accum 2`) must give the same per-rank losses (the same
#    fixture). With several GPUs: the tiny run over all of them (multi and ddp), and
#    the Llama-3.2-1B matryoshka run on 1 GPU vs all GPUs (global batch 8 per GPU),
#    tokens/s and the speed-up; with one GPU it says so and runs single-device.
# 5. One summary table. A backend that cannot start (not compiled in, no Vulkan ICD,
#    no CUDA driver) is a line in the table, not a crash.
#
# Environment: PEAK_TFLOPS, STEP_TIMEOUT (seconds per command, default 240),
# MLORA_GPU_CHECK_FIXTURE (the CPU figures; default: the committed file next to this
# script's repository, else none). Writes everything to $OUT (or ./gpu-check-out).
set -uo pipefail

BIN_DIR="${1:?usage: scripts/gpu-check.sh BIN_DIR [--cpu]}"
MODE="${2:-}"
PEAK="${PEAK_TFLOPS:-989}"
STEP_TIMEOUT="${STEP_TIMEOUT:-240}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
FIXTURE="${MLORA_GPU_CHECK_FIXTURE:-$HERE/tests/fixtures/gpu_check_cpu.json}"
OUT_DIR="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT_DIR"
started=$(date +%s)

BIN="$BIN_DIR/mlora"
if [[ ! -x "$BIN" && -f "$BIN_DIR/mlora.xz" ]]; then
  BIN="$OUT_DIR/mlora"
  xz -dc "$BIN_DIR/mlora.xz" > "$BIN" && chmod +x "$BIN"
fi
if [[ ! -x "$BIN" ]]; then
  echo "gpu-check: no mlora (or mlora.xz) in $BIN_DIR" >&2
  exit 2
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

echo "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), $(nproc) cores"
echo "== binary: $("$BIN" --version) ($(stat -c %s "$BIN") bytes)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | sed 's/^/== GPU: /'
else
  echo "== GPU: nvidia-smi not found"
fi
if command -v vulkaninfo >/dev/null 2>&1; then
  vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName" | sed 's/^ */== Vulkan: /'
fi

if [[ "$MODE" == "--cpu" ]]; then
  BACKENDS=(flex)
else
  BACKENDS=(flex wgpu cuda)
fi

# The correctness run; tests/causal_lm_cli.rs checks the committed CPU figures against it.
TINY_ARGS=(--config tiny --batch 4 --seq 64 --steps 8 --warmup 0 --rank 8 --method matryoshka
  --lr 1e-2 --init-std 0.5 --seed 7)

# One summary row per (check, backend[, method]).
ROWS=()
row() { ROWS+=("$(printf '%-12s %-7s %-11s %s' "$1" "$2" "$3" "$4")"); }

run() { # name, args...: runs mlora with a timeout, JSON to $OUT_DIR/name.json, stderr to .err
  local name=$1; shift
  timeout "$STEP_TIMEOUT" "$BIN" "$@" --json > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.err"
}

verdict_of() { # a tiny run's JSON: its per-rank losses against the CPU fixture
  if [[ ! -f "$FIXTURE" ]]; then
    echo "no CPU fixture"
    return
  fi
  python3 - "$FIXTURE" "$1" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["loss"]
got = json.load(open(sys.argv[2]))["loss"]
d = max(abs(a - b) for a, b in zip(want, got)) if len(want) == len(got) else float("inf")
print(f"{'ok' if d < 1e-3 else 'FAIL'}: max |diff| {d:.2e} vs CPU fixture")
EOF
}

field() { # file, python expression over `r` (the JSON)
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null
}

echo
echo "== correctness: tiny Llama (init std 0.5), 8 steps of batch 4 x 64, R = 8, lr 1e-2, matryoshka, per-rank loss"
cannot_run() { # check, backend, method, name: a row for a run that could not start
  local why
  why=$(tail -n 1 "$OUT_DIR/$4.err")
  echo "$2 $3: cannot run: $why"
  row "$1" "$2" "$3" "cannot run: $why"
}

check_tiny() { # check, name, backend, method, args...: the tiny run with args, against the fixture
  local check=$1 name=$2 backend=$3 method=$4; shift 4
  if run "$name" bench llm "${TINY_ARGS[@]}" "$@"; then
    local losses verdict
    losses=$(field "$OUT_DIR/$name.json" "' '.join(f'{x:.6f}' for x in r['loss'])")
    verdict=$(verdict_of "$OUT_DIR/$name.json")
    echo "$backend $method: loss per rank $losses ($verdict)"
    row "$check" "$backend" "$method" "$verdict"
  else
    cannot_run "$check" "$backend" "$method" "$name"
  fi
}

for b in "${BACKENDS[@]}"; do
  check_tiny correctness "tiny-$b" "$b" matryoshka --backend "$b"
done

GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
fi
ALL_CUDA=$(seq -s, -f 'cuda:%g' 0 $(( GPUS > 0 ? GPUS - 1 : 0 )))

echo
echo "== data parallel: the tiny run on 2 workers and with 2 accumulated micro-batches (same losses)"
check_tiny parallel tiny-flex-2 flex 2-workers --devices flex,flex
check_tiny parallel tiny-flex-acc flex accumulate-2 --backend flex --grad-accum 2
if [[ "$MODE" != "--cpu" ]]; then
  check_tiny parallel tiny-cuda-acc cuda accumulate-2 --backend cuda --grad-accum 2
  if (( GPUS >= 2 )); then
    check_tiny parallel tiny-cuda-multi cuda "multi-x$GPUS" --devices "$ALL_CUDA" --strategy multi
    check_tiny parallel tiny-cuda-ddp cuda "ddp-x$GPUS" --devices "$ALL_CUDA" --strategy ddp
  else
    echo "cuda: $GPUS GPU(s) on this machine: the multi-GPU runs need two or more (single-device only)"
    row parallel cuda "x$GPUS" "$GPUS GPU(s): multi-GPU runs skipped (single-device only)"
  fi
fi

if [[ "$MODE" != "--cpu" ]]; then
  echo
  echo "== speed: Llama-3.2-1B shape (random weights), batch 8 x 512, R = 32, 5 steps after 2"
  for b in wgpu cuda; do
    dtype=f32
    [[ "$b" == cuda ]] && dtype=bf16
    for m in lora matryoshka; do
      if run "1b-$b-$m" bench llm --config llama-3.2-1b --batch 8 --seq 512 --rank 32 \
          --steps 5 --warmup 2 --method "$m" --backend "$b" --base-dtype "$dtype" --peak-tflops "$PEAK"; then
        line=$(field "$OUT_DIR/1b-$b-$m.json" \
          "f\"{r['ms_per_step']:.1f} ms/step, {r['tokens_per_s']:.0f} tok/s, {r['tflops']:.1f} TFLOP/s, MFU {100*r['mfu']:.1f}%, base {r['base_dtype']}, device {r['device_reserved_mb'] or 0:.0f} MiB\"")
        echo "$b $m: $line"
        row speed "$b" "$m" "$line"
      else
        cannot_run speed "$b" "$m" "1b-$b-$m"
      fi
    done
    if [[ -f "$OUT_DIR/1b-$b-lora.json" && -f "$OUT_DIR/1b-$b-matryoshka.json" ]]; then
      ratio=$(python3 -c "import json; l=json.load(open('$OUT_DIR/1b-$b-lora.json')); m=json.load(open('$OUT_DIR/1b-$b-matryoshka.json')); print(f\"{m['ms_per_step']/l['ms_per_step']:.3f}\")" 2>/dev/null)
      [[ -n "$ratio" ]] && row speed "$b" "m/l step" "$ratio (target <= 1.02)"
    fi
  done
fi

if [[ "$MODE" != "--cpu" ]] && (( GPUS >= 2 )); then
  echo
  echo "== 1 GPU vs all $GPUS GPUs: Llama-3.2-1B shape, matryoshka, bf16 base, 8 rows x 512 per GPU"
  for s in multi ddp; do
    if run "1b-cuda-x$GPUS-$s" bench llm --config llama-3.2-1b --batch $(( 8 * GPUS )) --seq 512 --rank 32 \
        --steps 5 --warmup 2 --method matryoshka --devices "$ALL_CUDA" --strategy "$s" --base-dtype bf16 --peak-tflops "$PEAK"; then
      line=$(python3 - "$OUT_DIR/1b-cuda-matryoshka.json" "$OUT_DIR/1b-cuda-x$GPUS-$s.json" "$GPUS" <<'EOF' 2>/dev/null || echo "ran (no 1-GPU run to compare)"
import json, sys
one = json.load(open(sys.argv[1]))
all_ = json.load(open(sys.argv[2]))
print(f"{all_['tokens_per_s']:.0f} tok/s vs {one['tokens_per_s']:.0f} on one GPU: speed-up {all_['tokens_per_s'] / one['tokens_per_s']:.2f} on {sys.argv[3]}, MFU {100 * all_['mfu']:.1f}%")
EOF
)
      echo "cuda $s: $line"
      row scale cuda "$s" "$line"
    else
      cannot_run scale cuda "$s" "1b-cuda-x$GPUS-$s"
    fi
  done
fi

echo
echo "== summary ($(( $(date +%s) - started )) s)"
printf '%-12s %-7s %-11s %s\n' check backend method result
for r in "${ROWS[@]}"; do echo "$r"; done
