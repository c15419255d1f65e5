#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine without network: one stripped
# release `mlora` with the flex, wgpu and cuda backends (LLVM from PyPI through
# scripts/setup-cuda-build.sh: no download at build time), xz-compressed, and reports
# the sizes (a GPU machine receives at most 64 MiB of carried files).
#
#   scripts/build-gpu-bins.sh [OUT_DIR]      # default: gpu-bins/
#   scripts/build-gpu-bins.sh OUT_DIR --no-cuda   # wgpu only
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-gpu-bins}"
FEATURES="flex,wgpu,cuda"
if [[ "${2:-}" == "--no-cuda" ]]; then
  FEATURES="flex,wgpu"
else
  scripts/setup-cuda-build.sh >/dev/null
fi
TARGET="${CARGO_TARGET_DIR:-target}"
start=$(date +%s)
cargo build --release --no-default-features --features "$FEATURES" --bin mlora
built=$(( $(date +%s) - start ))
mkdir -p "$OUT_DIR"
cp "$TARGET/release/mlora" "$OUT_DIR/mlora"
raw=$(stat -c %s "$OUT_DIR/mlora")
strip "$OUT_DIR/mlora"
stripped=$(stat -c %s "$OUT_DIR/mlora")
xz -9 -T0 -kf "$OUT_DIR/mlora"
packed=$(stat -c %s "$OUT_DIR/mlora.xz")
mib() { python3 -c "print(f'{$1 / 2**20:.1f} MiB')"; }
echo "build-gpu-bins: features $FEATURES, release build $built s"
echo "build-gpu-bins: mlora $(mib "$raw") as built, $(mib "$stripped") stripped, $(mib "$packed") as mlora.xz"
if (( packed > 64 * 1024 * 1024 )); then
  echo "build-gpu-bins: mlora.xz is over the 64 MiB a GPU machine receives" >&2
  exit 1
fi
echo "carry $OUT_DIR/mlora.xz (and this repository's scripts/ and tests/fixtures/gpu_check_cpu.json);"
echo "run there: scripts/gpu-check.sh $OUT_DIR"
