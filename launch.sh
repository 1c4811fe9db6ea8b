#!/usr/bin/env bash
# Set up (once) and start the trainer GUI, or run the test suite.
#   ./launch.sh [app options]     e.g. ./launch.sh --listen 0.0.0.0 --port 7860 --inbrowser
#   ./launch.sh test [pytest options]
# Environment: PYTHON (interpreter to build .venv with), TORCH_INDEX_URL (a PyTorch wheel index,
# e.g. https://download.pytorch.org/whl/cu130), TORCH_CUDA_INDEX_URL (used when nvidia-smi works).
set -euo pipefail
cd "$(dirname "$0")"

TORCH_SPEC="torch==2.13.0"
TORCH_CUDA_INDEX_URL="${TORCH_CUDA_INDEX_URL:-https://download.pytorch.org/whl/cu130}"
VENV=".venv"

mode="app"
if [ "${1:-}" = "test" ]; then mode="test"; shift; fi

say() { printf '[launch] %s\n' "$*" >&2; }
die() { printf '[launch] error: %s\n' "$*" >&2; exit 1; }

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.12 python3.11 python3.10 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

torch_index() {
    if [ -n "${TORCH_INDEX_URL:-}" ]; then echo "$TORCH_INDEX_URL"; return; fi
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "$TORCH_CUDA_INDEX_URL"
    fi
}

# A fingerprint of everything an install depends on; unchanged -> nothing is reinstalled.
fingerprint() {
    local files=(requirements.txt)
    [ "$1" = "test" ] && files+=(requirements-test.txt)
    "$VENV/bin/python" -m trainer.fingerprint "$TORCH_SPEC $(torch_index)" "${files[@]}"
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        local py
        py="$(find_python)" || die "Python 3.10-3.12 is needed; install it or set PYTHON=/path/to/python"
        say "creating $VENV with $("$py" -V 2>&1)"
        rm -rf "$VENV"
        "$py" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
}

pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

install_requirements() {
    local kind="$1" stamp="$VENV/.installed-$1" want
    want="$(fingerprint "$kind")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    if [ "$kind" = "app" ]; then
        local index; index="$(torch_index)"
        say "installing PyTorch ($TORCH_SPEC${index:+ from $index}); the first time takes a while"
        if [ -n "$index" ]; then
            pip_install "$TORCH_SPEC" --index-url "$index" --extra-index-url https://pypi.org/simple
        else
            pip_install "$TORCH_SPEC"
        fi
        say "installing requirements.txt"
        pip_install -r requirements.txt
    else
        say "installing requirements-test.txt"
        pip_install -r requirements-test.txt
    fi
    echo "$want" > "$stamp"
}

ensure_chromium() {
    local browser
    for browser in /usr/bin/chromium /usr/bin/chromium-browser; do
        [ -x "$browser" ] && return 0
    done
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's chromium for the browser tests"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        say "chromium not found and not root: the browser tests will be skipped"
    fi
}

ensure_venv
install_requirements app
if [ "$mode" = "test" ]; then
    install_requirements test
    ensure_chromium
    exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/python" app.py "$@"
