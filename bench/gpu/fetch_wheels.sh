#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (it has torch, transformers, accelerate,
# safetensors, peft and tensorboard, and no network) into .whl/ (ignored by git, ~50 MB).
#   bash bench/gpu/fetch_wheels.sh [PYTHON_VERSION]   (default 3.12, the GPU machine's)
set -euo pipefail
cd "$(dirname "$0")/../.."
version="${1:-3.12}"
pins=$(grep -E '^(diffusers|bitsandbytes|importlib_metadata)==' requirements.txt | sed 's/;.*//')
python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl $pins importlib_metadata
ls -la .whl
