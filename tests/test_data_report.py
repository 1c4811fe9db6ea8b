"""The dataset report (--debug_dataset) through the real CLI, and the GUI's preview functions."""

from __future__ import annotations

import pytest
import re
import subprocess
import sys

from PIL import Image

from helpers import REPO, make_concept, make_image, run_cli
from trainer.config import Config
from trainer.data import caption_preview, dataset_report

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


def messy_dataset(root):
    """Every common mistake at once, beside a usable concept."""
    train = root / "img"
    good = make_concept(train / "5_sks dog", 3, captions={0: "sks dog, red ball, grass, sunny"})
    (good / "img001.caption").write_bytes("caf\xe9 terrace, sks dog".encode("cp1252"))
    png = (good / "img000.png").read_bytes()
    (good / "broken.png").write_bytes(png[: len(png) // 2])
    make_concept(train / "sks cat", 2, color_index=1)
    (train / "3_empty").mkdir()
    make_concept(train / "2_ohwx dog", 2, color_index=3, captions={0: "ohwx dog, beach"},
                 caption_extension=".txt")
    make_image(train / "stray.png")
    make_concept(root / "reg" / "1_dog", 40, color_index=2, seed=7)
    return train, root / "reg"


def test_cli_report_explains_every_problem_and_loads_no_model(tmp_path):
    train, reg = messy_dataset(tmp_path)
    out = tmp_path / "out"
    result = run_cli("db", "--train_data_dir", train, "--reg_data_dir", reg, "--output_dir", out,
                     "--resolution", "64", "--train_batch_size", "2", "--shuffle_caption",
                     "--keep_tokens", "1", "--flip_aug", "--seed", "4", "--debug_dataset",
                     env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & {"torch", "diffusers", "transformers"}
    expected = [
        "rename it to '10_sks cat'",  # no <repeats>_ prefix
        "folder '3_empty'",  # empty folder
        f"image {train / '5_sks dog' / 'broken.png'} is truncated",
        "img001.caption is not UTF-8",
        "--caption_extension=.txt",  # .txt beside the images
        "holds 1 image directly",  # a stray image in train_data_dir
        "regularization images are not used",
        "No model was loaded",
    ]
    for phrase in expected:
        assert phrase in text, phrase
    # 3 images x 5 + 2 x 2 = 19 training samples, 19 regularization samples, batches of 2
    assert "One epoch: 19 training + 19 regularization samples = 38 samples" in text
    assert "Batches per epoch: 19 at batch size 2" in text
    assert re.search(r"5_sks dog +3 images x 5 repeats = 15 samples per epoch", text)
    assert '"sks dog, ' in text  # captions after shuffling keep the first token first
    sheet = out / "dataset_report.png"
    assert f"Contact sheet of the first batches: {sheet}" in text
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width >= 2 * 176 and image.height >= 4 * 176
    assert sorted(p.name for p in out.iterdir()) == ["dataset_report.png"]


def test_cli_report_on_the_image_folder_itself_says_what_to_point_at(tmp_path):
    train, _ = messy_dataset(tmp_path)
    result = run_cli("db", "--train_data_dir", train / "5_sks dog", "--resolution", "64",
                     "--debug_dataset")
    assert result.returncode == 2
    assert f"points at the image folder {train / '5_sks dog'} itself" in result.stdout
    assert f"point it at the folder above it ({train})" in result.stdout
    assert "error: no usable training images" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_dataset_report_as_data_for_the_gui(tmp_path):
    train, reg = messy_dataset(tmp_path)
    cfg = Config("db", {"train_data_dir": str(train), "reg_data_dir": str(reg),
                        "resolution": "64", "train_batch_size": 3, "max_train_steps": 26,
                        "seed": 1})
    report = dataset_report(cfg, contact_sheet=tmp_path / "sheet.png")
    assert report["ok"] and report["error"] is None
    summary = report["summary"]
    assert (summary["train_samples"], summary["reg_images_used"], summary["reg_images_unused"]) \
        == (19, 19, 21)
    assert report["batches_per_epoch"] == 13 and report["epochs_for_max_train_steps"] == 2.0
    assert summary["buckets"] == {"64x64": 38}
    assert len(report["warnings"]) == 6 and summary["warnings"] == report["warnings"]
    assert [s["batch"] for s in report["sample_captions"]] == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert (tmp_path / "sheet.png").is_file()
    rows = caption_preview(cfg)
    sources = {r["path"].rsplit("/", 1)[1] + ("/reg" if r["is_reg"] else ""): r["source"]
               for r in rows}
    assert sources["img000.png"] == "file" and sources["img002.png"] == "folder"
    assert sum(r["is_reg"] for r in rows) == 40


def test_previews_import_no_torch():
    code = ("import sys, trainer.data; "
            "print(sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_captions_past_max_token_length_are_reported_not_cut_silently(tmp_path, tiny_model):
    """A caption longer than max_token_length loses its end in training: the report and the
    training run say so, naming the file, the count and the fix."""
    model = tiny_model("tiny-v1")
    long_caption = ", ".join(["a red dog"] * 30)  # 89 tokens with the tiny tokenizer
    train = tmp_path / "img"
    make_concept(train / "5_sks dog", 2, captions={1: long_caption})
    out = tmp_path / "out"
    common = ["--pretrained_model_name_or_path", model, "--train_data_dir", train,
              "--output_dir", out, "--resolution", "64", "--train_batch_size", "1"]
    report = run_cli("db", *common, "--debug_dataset")
    assert report.returncode == 0, report.stderr
    assert re.search(r"1 caption\(s\) are longer than max_token_length 75 .*img001\.png, "
                     r"\d+ tokens\); raise max_token_length to 150", report.stdout), report.stdout
    assert "max_token_length" not in run_cli("db", *common, "--debug_dataset",
                                             "--max_token_length", "150").stdout

    trained = run_cli("db", *common, "--max_train_steps", "1")
    assert trained.returncode == 0, trained.stderr
    assert "img001.png" in trained.stderr and "cut off in training" in trained.stderr


def test_absurd_repeat_counts_are_refused_in_one_line_before_any_work(tmp_path, tiny_model):
    """'20230115_beach' (a date) would plan 20 million samples per image."""
    make_concept(tmp_path / "img" / "20230115_beach", 2)
    make_concept(tmp_path / "huge" / "1000000000_sks dog", 1)
    common = ("--resolution", "64", "--output_dir", tmp_path / "out")
    dated = run_cli("db", "--train_data_dir", tmp_path / "img", *common, "--debug_dataset",
                    timeout=120)
    assert dated.returncode != 0 and "Traceback" not in dated.stdout + dated.stderr
    [line] = [x for x in (dated.stdout + dated.stderr).splitlines() if "20230115_beach" in x]
    assert "20,230,115 repeats" in line and "limit of 10,000" in line and "date" in line
    assert "'10_beach'" in line
    trained = run_cli("db", "--train_data_dir", tmp_path / "huge", *common,
                      "--pretrained_model_name_or_path", tiny_model(), "--max_train_steps", "1",
                      timeout=180)
    assert trained.returncode != 0 and "Traceback" not in trained.stdout + trained.stderr
    line = trained.stderr.strip().splitlines()[-1]
    assert "'1000000000_sks dog'" in line and "limit of 10,000" in line and "date" not in line
    assert "rename the folder to e.g. '10_sks dog'" in line
    assert not list((tmp_path / "out").glob("*.safetensors"))
