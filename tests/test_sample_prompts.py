"""Sample prompt files are checked before training, and sampling never costs the training."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_db_dataset, run_cli
from trainer.runs import read_events

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    train, _ = make_db_dataset(tmp_path_factory.mktemp("prompt-data"), repeats=1, images=2,
                               reg_images=0)
    return train


def train_args(model: Path, images: Path, out: Path, prompts: Path, *extra: str) -> list[str]:
    return ["db", "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(images),
            "--output_dir", str(out), "--resolution=64", "--train_batch_size=1", "--seed=3",
            "--save_model_as=safetensors", "--sample_prompts", str(prompts), *extra]


@pytest.mark.parametrize("line, shown, allowed", [
    ("a photo of sks dog --w 64 --s 0", "--s 0", "allowed 1 to 1000"),
    ("a photo of sks dog --w 100000", "--w 100000", "allowed 64 to 4096"),
    ("a photo of sks dog --h 32", "--h 32", "allowed 64 to 4096"),
    ("a photo of sks dog --l -3", "--l -3", "allowed 0 to 50"),
    ("a photo of sks dog --d 99999999999", "--d 99999999999", "allowed 0 to 4294967295"),
])
def test_bad_prompt_value_is_refused_before_anything_loads(tmp_path, line, shown, allowed):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"# my prompts\na sks dog --w 64 --h 64 --s 2\n\n{line}\n", encoding="utf-8")
    out = tmp_path / "out"
    # The model does not even exist: the prompt file is checked before any model would load.
    result = run_cli(*train_args(tmp_path / "no-model-needed", tmp_path, out, prompts,
                                 "--max_train_steps=1"))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "sample_prompts" in line]
    assert len(errors) == 1, result.stderr
    assert f"{prompts} line 4: {shown} is out of range; {allowed}" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_prompt_that_is_not_a_number_names_file_and_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog --s many\n", encoding="utf-8")
    result = run_cli(*train_args(tmp_path / "model", tmp_path, tmp_path / "out", prompts))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{prompts} line 1: option --s 'many' is not a number" in result.stderr


def test_a_failing_sample_is_a_warning_and_the_run_still_saves(tiny_model, images, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a sks dog --w 64 --h 64 --s 2 --d 1\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    # A file where the samples folder should be: making the images fails inside the sampler.
    (out / "samples").write_text("not a folder", encoding="utf-8")
    result = run_cli(*train_args(tiny_model("tiny-v1"), images, out, prompts,
                                 "--max_train_steps=2", "--sample_every_n_steps=1",
                                 "--sample_at_first"))
    assert result.returncode == 0, result.stderr
    events = read_events(out / "events.jsonl")[0]
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    failed = [w for w in warnings if "making sample images" in w and "training goes on" in w]
    assert [w.split(" failed")[0] for w in failed] == [
        "making sample images at step 0", "making sample images at step 1",
        "making sample images at step 2"]
    assert [e["kind"] for e in events].count("step") == 2
    assert events[-1] == {**events[-1], "kind": "end", "status": "finished"}
    assert (out / "last.safetensors").is_file()
    assert (out / "samples").read_text(encoding="utf-8") == "not a folder"


def test_gui_check_shows_the_same_message(tmp_path):
    from trainer.config import Config
    from ui.formvalues import check, widget_values

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a sks dog --w 64\na sks dog --s 0\n", encoding="utf-8")
    raw = widget_values(Config("db"))
    raw.update(sample_prompts=str(prompts), output_dir=str(tmp_path / "out"),
               train_data_dir=str(tmp_path), pretrained_model_name_or_path="owner/model")
    _, problems = check("db", raw)
    assert [str(p) for p in problems if p.option == "sample_prompts"] == [
        f"--sample_prompts: {prompts} line 2: --s 0 is out of range; allowed 1 to 1000 "
        "(sampling steps) (fix that line of the sample prompt file)"]
