"""The "Demo" presets: sparse, valid, and pointing at files that ship with the repository."""

from __future__ import annotations

import json

import pytest

from trainer.config import BY_NAME, errors, validate
from trainer.demo import files
from trainer.demo.presets import preset_config


@pytest.mark.parametrize("mode", ["db", "lora"])
def test_demo_preset_is_sparse_and_validates(mode):
    raw = json.loads(files.PRESETS[mode].read_text(encoding="utf-8"))
    assert raw["description"] and raw["mode"] == mode
    options = {k: v for k, v in raw.items() if k not in ("description", "mode")}
    assert all(name in BY_NAME for name in options)
    # Every shipped preset names its model family, so loading it after another one resets it.
    family = {"v2", "v_parameterization"}
    assert family <= set(options)
    assert all(BY_NAME[name].default_for(mode) != value for name, value in options.items()
               if name not in family), "a sparse preset holds only what differs from the defaults"
    cfg = preset_config(mode, output_dir="/tmp/demo-preset-check")
    assert not errors(validate(cfg))


@pytest.mark.parametrize("mode", ["db", "lora"])
def test_demo_preset_paths_are_relative_and_exist(mode):
    raw = json.loads(files.PRESETS[mode].read_text(encoding="utf-8"))
    paths = {name: value for name, value in raw.items()
             if name in BY_NAME and BY_NAME[name].path}
    assert {"pretrained_model_name_or_path", "tokenizer", "train_data_dir", "reg_data_dir",
            "sample_prompts"} <= set(paths)
    for name, value in paths.items():
        assert not value.startswith("/") and "\\" not in value, (name, value)
        assert (files.REPO / value).exists(), (name, value)
    assert files.BASE_MODEL.with_suffix(".yaml").is_file()
