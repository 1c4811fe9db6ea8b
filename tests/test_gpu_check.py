"""The GPU check (bench/gpu/run.sh) as a CPU dry run: every part runs the real trainer on the
miniature models, so the script cannot rot while no GPU is at hand."""

from __future__ import annotations

import pytest
import json
import os
import subprocess

from helpers import PYTHON, REPO

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

# The dry run checks paths, not speed: one thread keeps tiny steps fast on a busy machine too (two
# threads wait on each other whenever another process holds a core).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
PRESETS = ("sd15-lora", "sd15-dreambooth-lowvram", "sd15-dreambooth-12gb",
           "sd15-dreambooth-24gb", "sd2-512-base", "sd2-768-v")
XL_PRESETS = ("sdxl-lora-12gb", "sdxl-lora-24gb", "sdxl-dreambooth-24gb")


def test_dry_run_runs_every_preset_bench_and_precision(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run(["bash", str(REPO / "bench/gpu/run.sh"), str(out), "--dry-run"],
                            cwd=REPO, env={**os.environ, "PYTHON": PYTHON, **ONE_THREAD},
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "gpu-check.json").read_text())
    assert results["environment"]["dry_run"] is True

    presets = {row["preset"]: row for row in results["presets"]}
    assert set(presets) == set(PRESETS)
    for name, row in presets.items():
        assert row["status"] == "finished", (name, row)
        assert row["steps"] == 3 and row["s_per_step"] > 0 and row["startup_s"] > 0, row
        assert row["estimate_allocated"] > 0, row
    assert presets["sd15-dreambooth-lowvram"]["promised_gb"] == 8
    assert presets["sd15-dreambooth-12gb"]["promised_gb"] == 12

    # The SDXL presets on the miniature SDXL (the GPU run uses the real architecture at 1024 px).
    xl = {row["preset"]: row for row in results["sdxl"]}
    assert list(xl) == list(XL_PRESETS)
    assert [xl[name]["promised_gb"] for name in XL_PRESETS] == [12, 24, 24]
    for name, row in xl.items():
        assert row["resolution"] == "64" and row["estimate_allocated"] > 0, row
        assert (row["status"], row["steps"]) == ("finished", 3), row

    assert [(r["mode"], r["batch"]) for r in results["bench"]] == [("db", 1), ("lora", 1)]
    for row in results["bench"]:
        assert row["trainer_s_per_step"] > 0 and row["bare_s_per_step"] > 0, row

    checks = {row["check"]: row for row in results["correctness"]}
    assert set(checks) == {"fp16 + scaler", "bf16", "full_fp16", "AdamW8bit", "LoRA fp16"}
    for name, row in checks.items():
        assert row["ok"] and row["loads_back"] == "ok", (name, row)

    table = (out / "gpu-check.md").read_text()
    assert all(name in table for name in PRESETS + XL_PRESETS)
    assert table in result.stdout  # the table is printed too
