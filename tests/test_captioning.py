"""`caption`: caption files from a BLIP model or a WD14 tagger, both tiny and built here."""

from __future__ import annotations

import pytest
from caption_models import build_blip, build_tagger
from helpers import COLORS, make_image, run_cli

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
RED, BLUE = COLORS[0], COLORS[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("caption-models")
    return {"blip": build_blip(base / "blip"), "wd14": build_tagger(base / "tagger")}


def _pictures(folder, colors):
    return [make_image(folder / f"pic{i}.png", color=color, seed=i) for i, color in
            enumerate(colors)]


def test_tags_with_thresholds_undesired_tags_and_never_a_rating(models, tmp_path):
    red, blue = _pictures(tmp_path / "photos", [RED, BLUE])
    result = run_cli("caption", tmp_path / "photos", "--method", "wd14", "--model",
                     models["wd14"], "--prefix", "sks dog", "--remove_underscore",
                     "--undesired_tags", "blue background", env=OFFLINE, check=True)
    assert "wrote 2 caption files" in result.stdout
    red_tags = red.with_suffix(".caption").read_text(encoding="utf-8").strip().split(", ")
    blue_tags = blue.with_suffix(".caption").read_text(encoding="utf-8").strip().split(", ")
    assert red_tags[:2] == ["sks dog", "hatsune miku"]  # the prefix, then characters first
    assert set(red_tags[2:]) == {"red circle", "^_^"}  # a face keeps its underscore
    assert blue_tags == ["sks dog", "^_^"]  # blue background is undesired, no red circle
    for tags in (red_tags, blue_tags):
        assert "general" not in tags and "explicit" not in tags

    strict = run_cli("caption", tmp_path / "photos", "--method", "wd14", "--model",
                     models["wd14"], "--thresh", "0.999", "--overwrite", "--preview",
                     env=OFFLINE, check=True)
    assert "pic1.png: " in strict.stdout and "previewed, nothing written" in strict.stdout
    assert red.with_suffix(".caption").read_text(encoding="utf-8").startswith("sks dog")


def test_blip_captions_keep_existing_files_unless_told(models, tmp_path):
    first, second = _pictures(tmp_path / "photos", [RED, BLUE])
    second.with_suffix(".txt").write_text("my own caption\n", encoding="utf-8")
    result = run_cli("caption", tmp_path / "photos", "--model", models["blip"], "--prefix",
                     "sks dog,", "--caption_extension", ".txt", "--max_length", 8,
                     env=OFFLINE, check=True)
    assert "1 already have a caption file and keep it; captioning 1" in result.stdout
    caption = first.with_suffix(".txt").read_text(encoding="utf-8").strip()
    assert caption.startswith("sks dog, ") and len(caption) > len("sks dog, ")
    assert second.with_suffix(".txt").read_text(encoding="utf-8") == "my own caption\n"
    run_cli("caption", tmp_path / "photos", "--model", models["blip"], "--caption_extension",
            ".txt", "--overwrite", "--max_length", 8, env=OFFLINE, check=True)
    assert second.with_suffix(".txt").read_text(encoding="utf-8") != "my own caption\n"


def test_a_model_that_is_not_there_offline_is_one_line(tmp_path):
    _pictures(tmp_path / "photos", [RED])
    result = run_cli("caption", tmp_path / "photos", "--method", "wd14", env=OFFLINE)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not in the local hub cache" in result.stderr and "offline" in result.stderr
    assert not list((tmp_path / "photos").glob("*.caption"))
