#!/usr/bin/env bash
# Set up everything SMAUG needs on a fresh Debian/Ubuntu machine (or a user's CUDA box),
# then return. Safe to run again: each step skips what is already there.
#
#   bash scripts/setup.sh          # runtime: ffmpeg, torch, the project and its packages
#   bash scripts/setup.sh --test   # the same plus what the test suite needs (pytest, tensorboard,
#                                  # DALI, SLURM and munge for the real-SLURM tests, chromium)
#   bash scripts/setup.sh --dry-run [--test]   # say what would be installed, install nothing
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --test) want_tests=1 ;;
    --dry-run) dry_run=1 ;;
    *) echo "setup.sh: unknown argument $arg (use --test, --dry-run)" >&2; exit 2 ;;
  esac
done

# Every installing command goes through here, so --dry-run walks the same decisions.
run() {
  if [ "$dry_run" = 1 ]; then echo "[setup] would run: $*"; else "$@"; fi
}

PY=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

apt_packages=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_packages+=(ffmpeg)
if [ "$want_tests" = 1 ]; then
  command -v slurmctld >/dev/null || apt_packages+=(slurm-wlm)
  command -v munged >/dev/null || apt_packages+=(munge)
  # the search page's test renders it in a real headless browser (Debian's chromium)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || apt_packages+=(chromium)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    echo "[setup] apt-get install ${apt_packages[*]}"
    run $SUDO apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
  else
    echo "[setup] please install: ${apt_packages[*]} (no apt-get here; conda users: environment.yml)" >&2
    exit 1
  fi
else
  echo "[setup] system packages present"
fi

# torch first and pinned: a bare `torch` requirement would pull the newest build with several GB
# of CUDA packages on a machine that has none; 2.13.0 is the CPU wheel on the CI machines and the
# regular CUDA build elsewhere. The project's own range (torch>=2.4) then installs nothing more.
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] pip install torch==2.13.0"
  run "$PY" -m pip install -q "torch==2.13.0"
else
  echo "[setup] torch $("$PY" -c 'import torch; print(torch.__version__)') present"
fi

# (plain ifs: under `set -e` a failing test inside $(...) of an assignment ends the script)
extras="."
stamp=".setup-stamp"
if [ "$want_tests" = 1 ]; then
  extras=".[test,dali]"
  stamp=".setup-stamp-test"
fi
hash=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && "$PY" -c "import pipeline, torch, webdataset, dvc" 2>/dev/null; then
  echo "[setup] python packages up to date"
else
  echo "[setup] pip install -e '$extras'"
  run "$PY" -m pip install -q -e "$extras"
  if [ "$dry_run" = 0 ]; then echo "$hash" > "$stamp"; fi
fi
echo "[setup] done"
