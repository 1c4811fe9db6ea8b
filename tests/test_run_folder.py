"""The run folder: one run at a time, leftovers of killed saves removed, normal file modes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, make_db_dataset, run_cli, wait_for
from trainer.runs import read_events

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes and signals"), pytest.mark.slow]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    train, _ = make_db_dataset(tmp_path_factory.mktemp("folder-data"), repeats=1, images=2,
                               reg_images=0)
    return train


def train_args(model: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return ["db", "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(images),
            "--output_dir", str(out), "--resolution=64", "--train_batch_size=1", "--seed=3",
            "--save_model_as=safetensors", *extra]


def events(out: Path) -> list[dict]:
    return read_events(out / "events.jsonl")[0]


def start_training(model: Path, images: Path, out: Path) -> subprocess.Popen:
    """A run that goes on until it is killed, once it has made a step."""
    argv = [sys.executable, "-m", "trainer", *train_args(model, images, out,
                                                          "--max_train_steps=100000")]
    process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: process.poll() is not None
                 or any(e["kind"] == "step" for e in events(out)), 180, "a training step")
    except BaseException:
        process.kill()
        raise
    assert process.poll() is None, process.communicate()[1]
    return process


# -------------------------------------------------------------------- one finished run

LEFTOVERS = [".last.safetensors.k2j4h6g8.saving", ".last.safetensors.abcd1234.tmp",
             ".last-state.partial"]
USER_FILES = ["notes.tmp", ".my-settings.tmp", ".last.safetensors.abc.tmp", "my-state.partial",
              ".photos.partial/keep.png"]


@pytest.fixture(scope="module")
def finished_run(tiny_model, images, tmp_path_factory):
    """A run with state saving, started (umask 027) in a folder where a killed run left
    temporary files beside the user's own."""
    out = tmp_path_factory.mktemp("run") / "out"
    out.mkdir()
    (out / LEFTOVERS[0]).write_bytes(os.urandom(300_000))
    (out / LEFTOVERS[1]).write_bytes(os.urandom(1000))
    (out / LEFTOVERS[2]).mkdir()
    (out / LEFTOVERS[2] / "optimizer.bin").write_bytes(os.urandom(2000))
    # A diffusers folder being replaced when the run was killed: the old copy was swapped
    # aside; with the new one in place it is a leftover, without it the only copy (moved back).
    for name in ("at-step00000004", ".at-step00000004.old", ".at-step00000002.old"):
        (out / name).mkdir()
        (out / name / "model_index.json").write_text(name, encoding="utf-8")
    for name in USER_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("the user's", encoding="utf-8")
    old_mask = os.umask(0o027)
    try:
        result = run_cli(*train_args(tiny_model("tiny-v1"), images, out, "--max_train_steps=1",
                                     "--save_state"))
    finally:
        os.umask(old_mask)
    assert result.returncode == 0, result.stderr
    return out, result


def test_saved_files_get_the_normal_mode_of_new_files(finished_run):
    out, _ = finished_run
    saved = [out / "last.safetensors", out / "last.yaml", out / "config.toml",
             *sorted((out / "last-state").iterdir())]
    assert (out / "last-state" / "model.safetensors") in saved
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in saved}
    assert modes == {path.name: "0o640" for path in saved}  # 0666 less the umask 027
    assert oct(stat.S_IMODE((out / "last-state").stat().st_mode)) == "0o750"


def test_leftovers_of_killed_saves_are_removed_and_nothing_else(finished_run):
    out, result = finished_run
    for name in LEFTOVERS:
        assert not (out / name).exists(), name
        assert f"removed {name} (" in result.stderr
    assert "removed .last.safetensors.k2j4h6g8.saving (300.0 KB)" in result.stderr
    for name in USER_FILES:
        assert (out / name).read_text(encoding="utf-8") == "the user's", name
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == \
        [".last.safetensors.abc.tmp", ".my-settings.tmp", ".photos.partial"]
    assert not (out / "run.lock").exists()  # released and removed by a run that ended
    assert "removed .at-step00000004.old (" in result.stderr
    assert (out / "at-step00000004" / "model_index.json").read_text() == "at-step00000004"
    assert (out / "at-step00000002" / "model_index.json").read_text() == ".at-step00000002.old"
    assert "restored at-step00000002" in result.stderr


# -------------------------------------------------------------------- two runs, one folder

def test_second_run_is_refused_while_the_first_runs_and_starts_once_it_was_killed(
        tiny_model, images, tmp_path):
    out = tmp_path / "out"
    first = start_training(tiny_model("tiny-v1"), images, out)
    try:
        config_before = (out / "config.toml").read_bytes()
        second = run_cli(*train_args(tiny_model("tiny-v1"), images, out, "--max_train_steps=1"))
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(60)
    assert second.returncode != 0
    errors = [line for line in second.stderr.splitlines() if line.strip()]
    assert errors == [f"error: {out} is in use by another training run (pid {first.pid}) "
                      "(choose another output_dir, or wait until that run ends)"]
    assert (out / "config.toml").read_bytes() == config_before
    assert not list(out.glob("events-*.jsonl"))  # its history was not moved aside
    assert [e["kind"] for e in events(out)].count("start") == 1

    # kill -9 left the lock file behind, but no process holds its lock any more.
    assert (out / "run.lock").exists()
    third = run_cli(*train_args(tiny_model("tiny-v1"), images, out, "--max_train_steps=1"))
    assert third.returncode == 0, third.stderr
    assert events(out)[-1]["status"] == "finished" and (out / "last.safetensors").is_file()


# -------------------------------------------------------------------- warnings reach the events

def test_loading_notes_and_save_warnings_reach_the_event_stream(tiny_model, tiny_single, images,
                                                                 tmp_path):
    """What loading and saving tell the user lands in events.jsonl, so the GUI shows it too."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    single = tiny_single("tiny-v1")
    state = load_file(single)
    state["model_ema.decay"] = torch.tensor(0.999)  # kept by single files, not by diffusers
    base = tmp_path / "base.safetensors"
    save_file(state, base)
    shutil.copy(single.with_suffix(".yaml"), base.with_suffix(".yaml"))
    diffusers = tiny_model("tiny-v1")
    out = tmp_path / "out"
    result = run_cli(*train_args(base, images, out, "--max_train_steps=1",
                                 "--save_model_as=diffusers", "--vae", str(diffusers),
                                 "--tokenizer", str(diffusers)))
    assert result.returncode == 0, result.stderr
    warnings = [e["message"] for e in events(out) if e["kind"] == "warning"]
    assert any(f"VAE replaced by {diffusers}" in w for w in warnings), warnings
    assert any(f"1 tensors of {base} are not saved" in w and "diffusers folder" in w
               for w in warnings), warnings
    assert (out / "last" / "model_index.json").is_file()
