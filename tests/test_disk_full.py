"""A full disk while saving: one clear line, nothing half-written left, earlier saves kept.

The disk is real: a small tmpfs mounted for the test (needs root or CAP_SYS_ADMIN, as in the
test containers; skipped where mounting is not allowed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_db_dataset, run_cli
from trainer.runs import read_events

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

MB = 1_000_000


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(bytes) -> an empty folder on a filesystem of that size."""
    mounted = []

    def make(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if sys.platform != "linux" or shutil.which("mount") is None:
            pytest.skip("needs Linux mount")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_model_that_clearly_does_not_fit_is_refused_before_writing(tiny_model, small_disk):
    disk = small_disk(4 * MB)  # the tiny model is about 20 MB in float32
    target = disk / "converted" / "model.safetensors"
    result = run_cli("convert", tiny_model("tiny-v1"), target)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr
    line = error_lines(result.stderr)[0]
    assert f"not enough free disk space to save the model model.safetensors in {target.parent}" \
        in line and "it needs at least 20." in line and "free some space" in line
    assert [p for p in disk.rglob("*") if p.is_file()] == []


def test_disk_full_while_saving_the_state_keeps_the_model_and_leaves_no_partial_state(
        tiny_model, small_disk, tmp_path):
    images, _ = make_db_dataset(tmp_path / "data", repeats=1, images=2, reg_images=0)
    # Room for the model (20 MB) and more than the state's trained weights (13 MB), so the
    # state is started, but not for the optimizer's moments too (26 MB more): the disk fills
    # while accelerate writes it.
    disk = small_disk(46 * MB)
    out = disk / "run"
    result = run_cli("db", "--pretrained_model_name_or_path", tiny_model("tiny-v1"),
                     "--train_data_dir", images, "--output_dir", out, "--resolution=64",
                     "--train_batch_size=1", "--max_train_steps=1", "--save_model_as=safetensors",
                     "--save_state")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [
        f"error: the disk is full: could not finish writing {out / 'last-state'} (the "
        "unfinished file was removed and earlier saves are kept; free some space on that disk "
        "or choose another output_dir)"], result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "config.toml", "events.jsonl", "last.safetensors", "last.yaml"]
    from safetensors import safe_open

    with safe_open(str(out / "last.safetensors"), "pt") as saved:  # complete and readable
        assert len(list(saved.keys())) > 100
    end = read_events(out / "events.jsonl")[0][-1]
    assert end["kind"] == "end" and end["status"] == "failed"
    assert shutil.disk_usage(disk).free > 20 * MB  # the half-written state is gone
