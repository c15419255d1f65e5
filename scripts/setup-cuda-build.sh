#!/usr/bin/env bash
# Prepares what a `--features cuda` build needs without burn's LLVM download.
#
# burn 0.22's `cuda` feature pulls cubecl-cuda 0.11, which depends on cubecl-llvm,
# whose build dependency tracel-llvm-bundler downloads a prebuilt LLVM 23 unless
#   ${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed
# exists; cubecl-llvm's build script then runs `<that folder>/bin/llvm-config
# --link-static ...` and links LLVM statically. This script installs LLVM 23.1.1's
# static libraries from PyPI instead (mlc-llvm-static + its extra-targets add-on for
# NVPTX; pinned, hash-checked, no dependencies) into a venv in a cache outside the
# clone, links its `llvm-config` into that folder and writes the marker. Idempotent:
# a second run checks and returns.
#
#   scripts/setup-cuda-build.sh            # then: cargo build --release --features cuda
#
# Needs python3 (>= 3.10) with venv and pip, and a C++ compiler (cubecl-llvm builds
# two C++ shims against the LLVM headers). At run time a CUDA build needs the NVIDIA
# driver only (cudarc loads libcuda/nvrtc dynamically).
set -euo pipefail

VERSION=23.1.1.post0
BASE_SHA=dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5
EXTRA_SHA=c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929
CACHE="${MLORA_LLVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlora-llvm-$VERSION}"
TRACEL="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
PYTHON="${PYTHON:-python3}"

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "setup-cuda-build: only Linux x86_64 is prepared here (the wheels are manylinux x86_64)" >&2
  exit 2
fi

if [[ ! -x "$CACHE/venv/bin/llvm-config" ]]; then
  echo "setup-cuda-build: installing LLVM $VERSION static libraries from PyPI into $CACHE" >&2
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$CACHE/venv"
  cat > "$CACHE/requirements.txt" <<EOF
mlc-llvm-static==$VERSION --hash=sha256:$BASE_SHA
mlc-llvm-static-extra-targets==$VERSION --hash=sha256:$EXTRA_SHA
EOF
  "$CACHE/venv/bin/pip" install -q --no-deps --require-hashes -r "$CACHE/requirements.txt"
fi

# The folder the bundler checks and cubecl-llvm reads `bin/llvm-config` from.
# Nothing there is rewritten when it is already right: the bundler's build script
# reruns when the marker changes, and with it the whole CUDA chain (~10 min).
mkdir -p "$TRACEL/bin"
if [[ "$(readlink "$TRACEL/bin/llvm-config" || true)" != "$CACHE/venv/bin/llvm-config" ]]; then
  ln -sfn "$CACHE/venv/bin/llvm-config" "$TRACEL/bin/llvm-config"
fi
version="$("$TRACEL/bin/llvm-config" --version)"
case "$version" in
  23.*) ;;
  *) echo "setup-cuda-build: llvm-config reports $version, expected 23.x" >&2; exit 1 ;;
esac
if ! "$TRACEL/bin/llvm-config" --targets-built | grep -qw NVPTX; then
  echo "setup-cuda-build: the installed LLVM lacks the NVPTX target" >&2
  exit 1
fi
[[ -e "$TRACEL/.tracel-llvm-installed" ]] || touch "$TRACEL/.tracel-llvm-installed"

echo "setup-cuda-build: LLVM $version (targets: $("$TRACEL/bin/llvm-config" --targets-built)) ready in $TRACEL" >&2
echo "# nothing to export: the build finds LLVM through $TRACEL"
echo "cargo build --release --features cuda --bin mlora"
