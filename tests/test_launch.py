"""launch.sh: a second start installs nothing and serves the page within seconds."""

import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float, output=()) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            time.sleep(0.5)  # let the reader collect the last lines
            raise AssertionError("launch.sh exited early:\n" + "".join(output))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except urllib.error.HTTPError as err:
            if err.code == 401:  # up, and asking for the token
                return time.monotonic() - start
            time.sleep(0.2)
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
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_for_page(f"http://127.0.0.1:{port}/", process, timeout=60, output=lines)
        # The page answers while the app is still finishing its start; wait for its ready line.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("GUI ready" in line for line in lines):
            time.sleep(0.1)
        ready = next(line for line in lines if "GUI ready" in line)
        url = re.search(r"GUI ready at (\S+)", ready).group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert "installing" not in output.lower(), output
