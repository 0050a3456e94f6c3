#!/usr/bin/env bash
# GPU acceptance check (train/gpu_check.py): smaug vs dense in bf16 at the paper preset, eager and
# compiled, MFU, peak memory, and DALI against the CPU loader where DALI is installed.
# Writes results/bench/gpu.json (--out PATH elsewhere); --smoke runs it on the CPU in seconds.
#
# A bare GPU box has torch, transformers and numpy; pure-Python wheels the check can use (e.g.
# webdataset, braceexpand for the DALI part) may travel in wheels/ and are installed from there,
# offline, first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d wheels ] && compgen -G "wheels/*.whl" > /dev/null; then
    python -m pip install --quiet --no-index --find-links wheels/ wheels/*.whl \
        || echo "gpu_check.sh: installing wheels/ failed; going on with what is installed" >&2
fi
exec python -m train.gpu_check "$@"
