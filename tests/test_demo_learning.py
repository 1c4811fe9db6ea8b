"""The bundled demo really learns: `python -m trainer demo` trains the Demo presets on the CPU
and measures fixed-seed pictures of the base and trained models with the exact evaluator.

Margins are set well inside what the demo measures (see the README's table): the test fails when
training stops teaching the subject or stops keeping the class, not on a lucky seed.
"""

from __future__ import annotations

import pytest
import json

from helpers import run_cli

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

SAMPLES = 16  # pictures per prompt; the README's figures use 32


def demo(tmp_path, *args) -> dict:
    """The demo command as a user runs it, minus the sample pictures during training (they
    show progress; the measurement draws its own)."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--output_dir", str(out), "--samples", str(SAMPLES), "--no_samples",
                     *args, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "demo_grid.png").is_file()
    assert not (out / "samples").exists()  # --no_samples drew none during training
    return json.loads((out / "demo_scores.json").read_text(encoding="utf-8"))


def test_dreambooth_learns_the_subject_and_reg_images_keep_the_class(tmp_path):
    scores = demo(tmp_path, "--mode", "db")
    assert scores["base_accuracy"] >= 0.6  # the base draws the colour and shape asked for
    runs = scores["runs"]
    base, kept, forgot = (runs["base model"], runs["DreamBooth with reg images"],
                          runs["DreamBooth without reg images"])
    assert base["fidelity"] <= 0.1 and base["class_kept"] >= 0.8  # never saw the subject
    assert kept["fidelity"] >= 0.6  # learned the subject ...
    assert kept["class_kept"] >= 0.7 and kept["class_drift"] <= 0.15  # ... and kept the class
    # Without regularization images the whole class turns into the subject (the guide's warning).
    assert forgot["fidelity"] >= 0.5 and forgot["class_drift"] >= 0.4
    assert forgot["class_kept"] <= kept["class_kept"] - 0.4


def test_lora_learns_the_subject_and_keeps_the_class(tmp_path):
    scores = demo(tmp_path, "--mode", "lora", "--no_compare")
    run = scores["runs"]["LoRA with reg images"]
    assert run["fidelity"] >= 0.3 and run["class_kept"] >= 0.6 and run["class_drift"] <= 0.15
