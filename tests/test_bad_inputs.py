"""Bad input, as careless and hostile users give it, through the real command line.

Every case must: exit non-zero, print exactly one `error:` line that names the file or option and
says how to fix it, print no traceback, and leave every file that was already on disk unchanged.
Each case changes one thing in an otherwise valid command, so the error is the case's own.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from helpers import make_concept, make_db_dataset, make_image, run_cli

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[SimpleNamespace], list]  # the command, from the prepared world's paths
    names: str  # the option or file the message must name
    fix: str  # words of the fix the message must give
    area: str = "options"


def db(w, *extra, output=None, **over) -> list:
    """A valid DreamBooth command at 64 px; keyword overrides replace (None drops) a flag."""
    flags = {"pretrained_model_name_or_path": w.model, "train_data_dir": w.img,
             "output_dir": output or w.out, "resolution": 64, "max_train_steps": 1}
    flags.update(over)
    argv = ["db"]
    for name, value in flags.items():
        if value is not None:
            argv += [f"--{name}", value]
    return argv + list(extra)


def lora(w, *extra, **over) -> list:
    return ["lora", *db(w, *extra, **over)[1:]]


def _reg(w, *over) -> list:
    """reg-generate with one flag replaced (argparse keeps the last of a repeated flag)."""
    return ["reg-generate", "--pretrained_model_name_or_path", w.model, "--class_prompt", "dog",
            "--count", "2", "--out", w.tmp / "reg-out", *over]


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class _Planted:
    def __reduce__(self):
        import os

        return os.system, ("echo CODE-RAN-FROM-PICKLE",)


@pytest.fixture(scope="module")
def world(tiny_model, tiny_single, tmp_path_factory):
    """Valid models, a dataset and every broken file the cases point at, built once."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    img, reg = make_db_dataset(tmp / "data", images=2, reg_images=2)
    w = SimpleNamespace(tmp=tmp, img=img, reg=reg, model=tiny_model("tiny-v1"),
                        single=tiny_single("tiny-v1"),
                        tokenizer=tiny_model("tiny-v1") / "tokenizer")
    w.file = make_image(tmp / "a-picture.png")
    w.no_concepts = tmp / "no-concepts"
    make_concept(w.no_concepts / "photos", 1)
    w.empty_concept = tmp / "empty-concept"
    (w.empty_concept / "5_sks dog").mkdir(parents=True)
    w.zero_repeats = tmp / "zero-repeats"
    make_concept(w.zero_repeats / "0_sks dog", 1)
    w.bad_toml = _text(tmp / "bad.toml", "learning_rate = = 1\n")
    w.unknown_key_toml = _text(tmp / "unknown.toml", "learning_rat = 1e-6\n")
    w.nan_toml = _text(tmp / "nan.toml", "learning_rate = nan\n")
    w.inf_toml = _text(tmp / "inf.toml", "prior_loss_weight = inf\n")
    w.bad_json = _text(tmp / "bad.json", '{"learning_rate": 1e-6,')
    w.nan_json = _text(tmp / "nan.json", '{"learning_rate": NaN}')
    w.string_steps_json = _text(tmp / "steps.json", json.dumps({"max_train_steps": "many"}))
    w.dataset_bad_syntax = _text(tmp / "dataset-bad.toml", "[[datasets]\n")
    w.dataset_no_dir = _text(tmp / "dataset-nodir.toml",
                             "[[datasets]]\n[[datasets.subsets]]\nnum_repeats = 2\n")
    w.dataset_missing_dir = _text(tmp / "dataset-missing.toml",
                                  "[[datasets]]\n[[datasets.subsets]]\n"
                                  f"image_dir = '{tmp / 'nowhere'}'\n")
    concept = img / "5_sks dog"
    subset = f"[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{concept}'\n"
    w.dataset_dropout = _text(tmp / "dataset-dropout.toml", subset + "caption_dropout_rate = 5.0\n")
    w.dataset_keep_tokens = _text(tmp / "dataset-keep.toml",
                                  "[general]\nkeep_tokens = -3\n" + subset)
    w.prompts = _text(tmp / "prompts.txt", "a photo of sks dog --w 64 --h 64\n")
    w.junk_model = tmp / "junk.safetensors"
    _write_safetensors(w.junk_model, {"a": [0.0, 1.0]})
    w.truncated_model = tmp / "truncated.safetensors"
    w.truncated_model.write_bytes(w.single.read_bytes()[:50_000])
    w.text_as_ckpt = _text(tmp / "notes.ckpt", "not a checkpoint\n")
    w.planted_ckpt = tmp / "planted.ckpt"
    w.planted_ckpt.write_bytes(pickle.dumps({"state_dict": _Planted()}))
    w.inpainting = _inpainting_copy(w.single, tmp / "inpainting")
    w.wrong_yaml = _wrong_yaml_copy(w.single, tmp / "wrong-yaml")
    w.not_diffusers = tmp / "photos-folder"
    make_concept(w.not_diffusers, 1)
    w.empty_state = tmp / "empty-state"
    w.empty_state.mkdir()
    w.not_lora = tmp / "not-lora.safetensors"
    _write_safetensors(w.not_lora, {"model.diffusion_model.x": [1.0]})
    w.existing_output = _text(tmp / "existing.safetensors", "precious\n")
    return w


def _write_safetensors(path: Path, tensors: dict) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.tensor(v) for k, v in tensors.items()}, str(path))


def _inpainting_copy(single: Path, folder: Path) -> Path:
    """The tiny model with a 9-channel U-Net input, as inpainting checkpoints have."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(single))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    state[key] = torch.zeros(state[key].shape[0], 9, *state[key].shape[2:])
    folder.mkdir()
    save_file(state, str(folder / single.name))
    (folder / single.with_suffix(".yaml").name).write_text(
        single.with_suffix(".yaml").read_text())
    return folder / single.name


def _wrong_yaml_copy(single: Path, folder: Path) -> Path:
    """The tiny model beside a .yaml that declares another cross-attention width."""
    folder.mkdir()
    (folder / single.name).write_bytes(single.read_bytes())
    yaml = single.with_suffix(".yaml").read_text()
    assert "context_dim: 32" in yaml
    (folder / single.with_suffix(".yaml").name).write_text(
        yaml.replace("context_dim: 32", "context_dim: 64"))
    return folder / single.name


CASES = [
    # -- numbers and choices on the command line
    Case("lr-nan", lambda w: db(w, learning_rate="nan"), "--learning_rate", "finite"),
    Case("lr-inf", lambda w: db(w, learning_rate="1e999"), "--learning_rate", "finite"),
    Case("lr-text", lambda w: db(w, learning_rate="fast"), "--learning_rate", "not a number"),
    Case("seed-too-big", lambda w: db(w, seed=2 ** 63), "--seed", "maximum"),
    Case("seed-negative", lambda w: db(w, seed=-1), "--seed", "minimum"),
    Case("steps-fraction", lambda w: db(w, max_train_steps="1.5"), "--max_train_steps",
         "whole number"),
    Case("batch-zero", lambda w: db(w, train_batch_size=0), "--train_batch_size", "minimum"),
    Case("resolution-text", lambda w: db(w, resolution="big"), "--resolution", "e.g. 512"),
    Case("resolution-odd", lambda w: db(w, resolution="100"), "--resolution", "64"),
    Case("precision-choice", lambda w: db(w, mixed_precision="fp8"), "--mixed_precision",
         "one of"),
    Case("optimizer-choice", lambda w: db(w, optimizer_type="Foo"), "--optimizer_type", "one of"),
    Case("clip-skip-range", lambda w: db(w, clip_skip=13), "--clip_skip", "maximum"),
    Case("unknown-flag", lambda w: db(w, "--learning_rat", "1e-6"), "--learning_rat",
         "--learning_rate"),
    Case("optimizer-args-no-equals", lambda w: db(w, optimizer_args="weight_decay"),
         "--optimizer_args", "key=value"),
    Case("optimizer-args-nan", lambda w: db(w, optimizer_args="weight_decay=nan"),
         "--optimizer_args", "finite"),
    Case("network-args-text", lambda w: lora(w, network_args="conv_dim=big"), "--network_args",
         "not a number"),
    Case("network-args-unknown", lambda w: lora(w, network_args="rank=4"), "--network_args",
         "supported"),
    Case("network-args-nan", lambda w: lora(w, network_args="conv_alpha=nan"), "--network_args",
         "finite"),
    Case("8bit-adam-and-lion", lambda w: db(w, "--use_8bit_adam", optimizer_type="Lion"),
         "--use_8bit_adam", "only one"),
    Case("color-aug-with-cache", lambda w: db(w, "--color_aug", "--cache_latents"),
         "--color_aug", "cache_latents"),
    Case("lora-trains-nothing", lambda w: lora(w, "--network_train_unet_only",
                                               "--network_train_text_encoder_only"),
         "--network_train_unet_only", "keep one"),
    Case("lora-as-diffusers", lambda w: lora(w, save_model_as="diffusers"), "--save_model_as",
         "safetensors"),
    # -- paths
    Case("data-missing", lambda w: db(w, train_data_dir=w.tmp / "nowhere"), "nowhere",
         "give a folder", "paths"),
    Case("data-is-file", lambda w: db(w, train_data_dir=w.file), "a-picture.png", "give a folder",
         "paths"),
    Case("reg-missing", lambda w: db(w, reg_data_dir=w.tmp / "no-reg"), "--reg_data_dir",
         "give a folder", "paths"),
    Case("model-missing", lambda w: db(w, pretrained_model_name_or_path=w.tmp / "none.ckpt"),
         "none.ckpt", "does not exist", "paths"),
    Case("output-is-file", lambda w: db(w, output=w.file), "--output_dir", "give a folder",
         "paths"),
    Case("output-under-file", lambda w: db(w, output=w.file / "run"), "--output_dir",
         "give another folder", "paths"),
    Case("output-impossible", lambda w: db(w, output="/proc/no-such-run"), "--output_dir",
         "folder you can write to", "paths"),
    Case("prompts-missing", lambda w: db(w, sample_prompts=w.tmp / "none.txt"), "--sample_prompts",
         "text file", "paths"),
    Case("resume-missing", lambda w: db(w, resume=w.tmp / "none-state"), "--resume",
         "-state", "paths"),
    Case("network-weights-folder", lambda w: lora(w, network_weights=w.tmp),
         "--network_weights", "LoRA", "paths"),
    Case("dataset-config-missing", lambda w: db(w, dataset_config=w.tmp / "none.toml"),
         "--dataset_config", ".toml", "paths"),
    Case("vae-missing", lambda w: db(w, vae=w.tmp / "vae.safetensors"), "vae.safetensors",
         "does not exist", "paths"),
    Case("tokenizer-missing", lambda w: db(w, tokenizer=w.tmp / "tok"), "--tokenizer",
         "does not exist", "paths"),
    # -- option files
    Case("config-toml-syntax", lambda w: db(w, config_file=w.bad_toml), "bad.toml", "line",
         "files"),
    Case("config-unknown-key", lambda w: db(w, config_file=w.unknown_key_toml), "learning_rat",
         "learning_rate", "files"),
    Case("config-toml-nan", lambda w: db(w, config_file=w.nan_toml), "learning_rate", "finite",
         "files"),
    Case("config-toml-inf", lambda w: db(w, config_file=w.inf_toml), "prior_loss_weight", "finite",
         "files"),
    Case("config-json-syntax", lambda w: db(w, config_file=w.bad_json), "bad.json", "line",
         "files"),
    Case("config-json-nan", lambda w: db(w, config_file=w.nan_json), "learning_rate", "finite",
         "files"),
    Case("config-json-type", lambda w: db(w, config_file=w.string_steps_json), "max_train_steps",
         "whole number", "files"),
    Case("config-missing", lambda w: db(w, config_file=w.tmp / "none.toml"), "none.toml",
         "does not exist", "files"),
    Case("dataset-toml-syntax", lambda w: db(w, dataset_config=w.dataset_bad_syntax,
                                             train_data_dir=None), "dataset-bad.toml", "line",
         "files"),
    Case("dataset-toml-no-dir", lambda w: db(w, dataset_config=w.dataset_no_dir,
                                             train_data_dir=None), "dataset-nodir.toml",
         "image_dir", "files"),
    Case("dataset-toml-missing-dir", lambda w: db(w, dataset_config=w.dataset_missing_dir,
                                                  train_data_dir=None), "dataset-missing.toml",
         "image_dir", "files"),
    # subset values are checked as the command line checks the options of the same name
    Case("dataset-toml-dropout-above-1",
         lambda w: db(w, dataset_config=w.dataset_dropout, train_data_dir=None),
         "dataset-dropout.toml, dataset 1, subset 1, 'caption_dropout_rate'", "from 0 to 1",
         "files"),
    Case("dataset-toml-negative-keep-tokens",
         lambda w: db(w, dataset_config=w.dataset_keep_tokens, train_data_dir=None),
         "dataset-keep.toml, [general], 'keep_tokens'", "0 or more", "files"),
    # -- dataset folders
    Case("no-repeats-folders", lambda w: db(w, train_data_dir=w.no_concepts), "no-concepts",
         "'<repeats>_<identifier> <class>'", "folders"),
    Case("empty-concept", lambda w: db(w, train_data_dir=w.empty_concept), "empty-concept",
         "hold png, jpg", "folders"),
    Case("zero-repeats", lambda w: db(w, train_data_dir=w.zero_repeats), "zero-repeats",
         "'<repeats>_<identifier> <class>'", "folders"),
    # -- models
    Case("model-not-sd", lambda w: db(w, pretrained_model_name_or_path=w.junk_model),
         "junk.safetensors", "Stable Diffusion checkpoint", "models"),
    Case("model-truncated", lambda w: db(w, pretrained_model_name_or_path=w.truncated_model),
         "truncated.safetensors", "truncated or corrupt", "models"),
    Case("model-text-as-ckpt", lambda w: db(w, pretrained_model_name_or_path=w.text_as_ckpt),
         "notes.ckpt", ".safetensors or .ckpt model", "models"),
    Case("model-planted-pickle", lambda w: db(w, pretrained_model_name_or_path=w.planted_ckpt),
         "planted.ckpt", "safetensors", "models"),
    Case("model-inpainting", lambda w: db(w, pretrained_model_name_or_path=w.inpainting,
                                          tokenizer=w.tokenizer),
         "inpainting", "text-to-image version", "models"),
    Case("model-yaml-contradicts", lambda w: db(w, pretrained_model_name_or_path=w.wrong_yaml,
                                                tokenizer=w.tokenizer),
         "tiny-v1.safetensors", ".yaml", "models"),
    Case("model-folder-not-diffusers",
         lambda w: db(w, pretrained_model_name_or_path=w.not_diffusers),
         "model_index.json", "diffusers model folder", "models"),
    Case("model-v1-with-v2-flag", lambda w: db(w, "--v2"), "1.x", "--v2", "models"),
    # -- training states
    Case("resume-not-a-state", lambda w: db(w, resume=w.empty_state), "empty-state", "state",
         "states"),
    # -- the tools
    Case("convert-missing", lambda w: ["convert", w.tmp / "none.safetensors", w.tmp / "x.ckpt"],
         "none.safetensors", "does not exist", "tools"),
    Case("convert-overwrite", lambda w: ["convert", w.single, w.existing_output,
                                         "--tokenizer", w.tokenizer],
         "existing.safetensors", "exists", "tools"),
    Case("lora-info-not-lora", lambda w: ["lora-info", w.not_lora], "not-lora.safetensors",
         "LoRA", "tools"),
    Case("lora-merge-missing", lambda w: ["lora-merge", "--base", w.model,
                                          "--lora", w.tmp / "none.safetensors",
                                          "--out", w.tmp / "merged.safetensors"],
         "none.safetensors", "does not exist", "tools"),
    Case("lora-resize-rank-zero", lambda w: ["lora-resize", w.not_lora, "--new_dim", "0",
                                             "--out", w.tmp / "small.safetensors"],
         "--new_dim", "1", "tools"),
    Case("lora-extract-missing", lambda w: ["lora-extract", "--model_org", w.tmp / "none",
                                            "--model_tuned", w.model,
                                            "--save_to", w.tmp / "extracted.safetensors"],
         "--model_org", "diffusers folder", "tools"),
    Case("lora-extract-bad-quantile", lambda w: ["lora-extract", "--model_org", w.model,
                                                 "--model_tuned", w.model,
                                                 "--clamp_quantile", "2",
                                                 "--save_to", w.tmp / "x.safetensors"],
         "--clamp_quantile", "e.g. 0.99", "tools"),
    Case("reg-generate-count-zero", lambda w: _reg(w, "--count", "0"), "--count", "e.g. 200",
         "tools"),
    Case("reg-generate-huge-resolution", lambda w: _reg(w, "--resolution", "100000"),
         "--resolution", "512 to 1024", "tools"),
    Case("reg-generate-empty-prompt", lambda w: _reg(w, "--class_prompt", " "), "--class_prompt",
         "a photo of a dog", "tools"),
    Case("reg-generate-out-is-file", lambda w: _reg(w, "--out", w.file), "a-picture.png",
         "give a folder", "tools"),
]


def _snapshot(*roots: Path) -> dict[Path, str]:
    files = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            files[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


# Cases that load a model (tens of seconds each) belong to the slow tier.
_LOADS_A_MODEL = {"resume-not-a-state", "output-impossible", "convert-overwrite"}


def _param(case: Case):
    slow = case.area == "models" or case.id in _LOADS_A_MODEL
    return pytest.param(case, id=case.id, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input(world, case):
    world.out = world.tmp / "runs" / case.id  # a run folder of its own: nothing to keep
    before = _snapshot(world.tmp, world.model)
    result = run_cli(*case.argv(world), env=OFFLINE, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert case.names in errors[0], errors[0]
    assert case.fix in errors[0], errors[0]
    assert "CODE-RAN-FROM-PICKLE" not in output
    after = _snapshot(world.tmp, world.model)
    assert {p: h for p, h in after.items() if p in before} == before, "a file was changed"
    assert set(before) <= set(after), "a file was deleted"


def test_cases_are_distinct_and_many():
    assert len({case.id for case in CASES}) == len(CASES) >= 60
