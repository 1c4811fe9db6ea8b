"""Start one training process per GPU through accelerate when num_processes > 1.

`python -m trainer db --num_processes 2 …` re-runs itself as
`accelerate launch --multi_gpu --num_processes 2 … -m trainer db …` (on a machine without GPUs
the processes share the CPU through a gloo process group). This process stays as a supervisor:
the first Ctrl-C (or SIGTERM) asks the run to stop gracefully through the run folder's
stop.request, so every process saves together; a second one ends the processes at once.
Under `accelerate launch` or `torchrun` started by the user, nothing is re-launched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .runs import request_stop


def already_distributed() -> bool:
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def needs_launch(cfg) -> bool:
    return cfg.num_processes > 1 and not already_distributed()


def launch_argv(cfg, mode: str, argv: list[str]) -> list[str]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(cfg.num_processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"]
    if cfg.gpu_ids:
        command += ["--gpu_ids", cfg.gpu_ids]
    if cfg.num_cpu_threads_per_process:
        command += ["--num_cpu_threads_per_process", str(cfg.num_cpu_threads_per_process)]
    return command + ["-m", "trainer", mode, *argv]


class _Supervisor:
    def __init__(self, process: subprocess.Popen, run_dir: str):
        self.process, self.run_dir, self.asked = process, run_dir, 0

    def on_signal(self, signum, frame) -> None:  # noqa: ARG002 - signal API
        self.asked += 1
        if self.asked == 1:
            request_stop(self.run_dir)
            print("stopping after the current step (press Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        if sys.platform == "win32":  # pragma: no cover - Windows only
            self.process.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(self.process.pid, signal.SIGTERM)


def relaunch(cfg, mode: str, argv: list[str]) -> int:
    command = launch_argv(cfg, mode, argv)
    print(f"starting {cfg.num_processes} training processes through accelerate", file=sys.stderr,
          flush=True)
    if sys.platform == "win32":  # pragma: no cover - Windows only
        process = subprocess.Popen(command, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
    else:
        # Own process group: a Ctrl-C in the terminal reaches only this supervisor, which turns
        # it into one coordinated stop instead of signals racing through every process.
        process = subprocess.Popen(command, start_new_session=True)
    supervisor = _Supervisor(process, cfg.output_dir)
    names = ("SIGINT", "SIGTERM", "SIGBREAK")
    previous = {sig: signal.signal(sig, supervisor.on_signal)
                for sig in (getattr(signal, n) for n in names if hasattr(signal, n))}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
