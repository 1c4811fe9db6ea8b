"""Run the trainer itself (`python -m trainer`, a subprocess) and read what its events say."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from setup import REPO


def train(mode: str, values: dict, log: Path, timeout: float = 540) -> dict:
    """One training run from a config; its speed, peak memory and outcome."""
    from trainer.config import Config
    from trainer.config.files import save_config

    out = Path(values["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.toml"
    save_config(Config(mode, values), config)
    started = time.time()
    with open(log, "a") as handle:
        handle.write(f"\n### {mode} {config}\n")
        handle.flush()
        try:
            code = subprocess.run([sys.executable, "-m", "trainer", mode, "--config", str(config)],
                                  cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
                                  ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    return {"exit": code, **read_run(out / "events.jsonl", started)}


def read_run(events_file: Path, started: float, warmup: int = 3) -> dict:
    events = [json.loads(line) for line in events_file.read_text().splitlines()] \
        if events_file.exists() else []
    steps = [e for e in events if e["kind"] == "step"]
    end = next((e for e in events if e["kind"] == "end"), {})
    errors = [e.get("message") for e in events if e["kind"] == "error"]
    times = [e["time"] for e in steps]
    gaps = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])] or \
        [b - a for a, b in zip(times, times[1:])]
    losses = [e.get("loss") for e in steps]
    saved = [e["path"] for e in events if e["kind"] == "save" and e.get("what") == "model"]
    return {
        "status": end.get("status", "no end"), "steps": len(steps),
        "s_per_step": statistics.median(gaps) if gaps else None,
        "startup_s": times[0] - started if times else None,
        "peak_allocated": end.get("vram_peak_allocated"),
        "peak_reserved": end.get("vram_peak_reserved"),
        "finite_loss": bool(losses) and all(x is not None and x == x and abs(x) != float("inf")
                                            for x in losses),
        "saved": saved[-1] if saved else None,
        "error": errors[0] if errors else None,
    }


def loads_back(run_dir: Path, saved: str | None, mode: str, tokenizer: str) -> str:
    """'ok' when the saved model (or LoRA) reads back with finite weights, else why not."""
    if not saved:
        return "nothing saved"
    path = Path(saved) if Path(saved).is_absolute() else run_dir / saved
    try:
        import torch

        if mode == "lora":
            from trainer.networks.files import read_network_file

            tensors = list(read_network_file(path)[0].values())
        else:
            from trainer.models import load_model

            bundle = load_model(str(path), tokenizer=tokenizer)
            tensors = [p for m in (bundle.unet, bundle.text_encoder, bundle.vae)
                       for p in m.parameters()]
        bad = sum(1 for t in tensors if not torch.isfinite(t.float()).all())
        return "ok" if not bad else f"{bad} tensors not finite"
    except Exception as err:  # the check reports, it does not stop
        return f"{type(err).__name__}: {err}"
