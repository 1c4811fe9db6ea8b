"""Start TensorBoard for a run's logs on a free local port (one server per log folder)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from .runner import trainer_env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class TensorBoards:
    def __init__(self, host: str = "127.0.0.1", public_host: str | None = None):
        self.host = host
        self.public_host = public_host or host
        self._servers: dict[Path, tuple[subprocess.Popen, int]] = {}
        self._lock = threading.Lock()

    def open(self, logdir: Path) -> str:
        """The URL of a TensorBoard showing `logdir`, starting one when needed."""
        logdir = Path(logdir).resolve()
        with self._lock:
            running = self._servers.get(logdir)
            if running and running[0].poll() is None:
                return self._url(running[1])
            port = free_port(self.host)
            argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                    "--port", str(port), "--host", self.host]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       stdin=subprocess.DEVNULL, env=trainer_env())
            self._servers[logdir] = (process, port)
            return self._url(port)

    def _url(self, port: int) -> str:
        return f"http://{self.public_host}:{port}/"

    def close(self) -> None:
        with self._lock:
            for process, _ in self._servers.values():
                if process.poll() is None:
                    process.terminate()
            self._servers.clear()
