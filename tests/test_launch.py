"""launch.sh: a second start installs nothing and serves the page within seconds."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from helpers import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise AssertionError(f"launch.sh exited early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no page at {url} after {timeout} s")


@pytest.mark.skipif(not (REPO / ".venv" / ".installed-app").exists(),
                    reason="needs a .venv made by ./launch.sh")
def test_second_launch_reuses_the_venv_and_serves_the_page():
    port = free_port()
    process = subprocess.Popen(
        ["bash", str(REPO / "launch.sh"), "--port", str(port)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        wait_for_page(f"http://127.0.0.1:{port}/", process, timeout=60)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "installing" not in output.lower(), output
    assert f"127.0.0.1:{port}" in output
