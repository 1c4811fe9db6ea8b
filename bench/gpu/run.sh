#!/usr/bin/env bash
# The GPU check in one command: presets' speed and memory, trainer overhead, CUDA correctness.
#   bash bench/gpu/run.sh RESULTS_DIR [--dry-run]
# Packages this Python lacks are installed from wheels in .whl/ (see bench/gpu/README.md), so the
# check runs on a machine without network. PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:?usage: bash bench/gpu/run.sh RESULTS_DIR [--dry-run]}"
shift
py="${PYTHON:-python3}"
mkdir -p "$out"

missing=()
for module in diffusers bitsandbytes; do
    "$py" -c "import $module" >/dev/null 2>&1 || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "error: ${missing[*]} not installed and no wheels in .whl/ (bench/gpu/fetch_wheels.sh)" >&2
        exit 2
    fi
    site="${TMPDIR:-/tmp}/gpu-check-site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$py" bench/gpu/check.py --out "$out" "$@"
