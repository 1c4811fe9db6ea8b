"""sd-scripts dataset TOML (--dataset_config) as an alternative to the two folders."""

from __future__ import annotations

import pytest

from helpers import make_concept
from trainer.config import SUBSET_OPTIONS, Config
from trainer.data import build_dataset
from trainer.errors import UserError


def write(tmp_path, text):
    path = tmp_path / "dataset.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cfg_for(path, **values):
    return Config("db", {"dataset_config": str(path), "resolution": "512", "seed": 1, **values})


def test_general_datasets_and_subsets_cascade(tmp_path):
    make_concept(tmp_path / "chars" / "a", 2, size=(128, 64), captions={0: "x, y, z"},
                 caption_extension=".txt")
    make_concept(tmp_path / "chars" / "b", 3, size=(64, 64), color_index=1)
    make_concept(tmp_path / "regs", 10, color_index=2)
    path = write(tmp_path, f"""
[general]
shuffle_caption = true
caption_extension = ".txt"
keep_tokens = 1

[[datasets]]
resolution = [128, 64]
batch_size = 2
enable_bucket = true
min_bucket_reso = 64
max_bucket_reso = 256

  [[datasets.subsets]]
  image_dir = '{tmp_path / "chars" / "a"}'
  class_tokens = "aaa girl"
  num_repeats = 4
  flip_aug = true

  [[datasets.subsets]]
  image_dir = 'chars/b'
  class_tokens = "bbb girl"
  keep_tokens = 0
  caption_prefix = "masterpiece"

  [[datasets.subsets]]
  image_dir = '{tmp_path / "regs"}'
  class_tokens = "girl"
  is_reg = true
""")
    warnings: list[str] = []
    ds = build_dataset(cfg_for(path, train_batch_size=2), warn=warnings.append)
    subsets = {s.name: s for s in ds.subsets}
    a, b, reg = subsets["a"], subsets["b"], subsets["regs"]
    assert (a.repeats, a.prompt, a.captions.keep_tokens, a.augment.flip_aug) == (4, "aaa girl", 1, True)
    assert (b.repeats, b.captions.keep_tokens, b.captions.shuffle_caption, b.augment.flip_aug) \
        == (1, 0, True, False)
    assert reg.is_reg and ds.summary()["reg_samples"] == 4 * 2 + 3
    captions = sorted(item.caption for item, is_reg in zip(ds.items, ds.is_reg) if not is_reg)
    assert captions == ["aaa girl", "masterpiece bbb girl", "masterpiece bbb girl",
                        "masterpiece bbb girl", "x, y, z"]
    assert ds.sizings[0].resolution == (128, 64) and ds.sizings[0].enable_bucket
    assert not warnings  # batch_size equals train_batch_size


def test_each_dataset_has_its_own_resolution(tmp_path):
    make_concept(tmp_path / "one", 2)
    make_concept(tmp_path / "two", 2, color_index=1)
    path = write(tmp_path, f"""
[[datasets]]
resolution = 64
  [[datasets.subsets]]
  image_dir = '{tmp_path / "one"}'
[[datasets]]
resolution = 128
  [[datasets.subsets]]
  image_dir = '{tmp_path / "two"}'
""")
    ds = build_dataset(cfg_for(path))
    assert ds.bucket_counts() == {(64, 64): 2, (128, 128): 2}
    assert all(len({r.bucket for r in batch}) == 1 for batch in ds.epoch_batches(0, 4))


@pytest.mark.parametrize("text, message", [
    ("[[datasets]]\n[[datasets.subsets]]\nimage_dir='x'\nnum_repeat=3\n",
     "unknown key 'num_repeat' (did you mean 'num_repeats'?)"),
    ("[[datasets]]\n[[datasets.subsets]]\nmetadata_file='meta.json'\n",
     "fine-tuning metadata files are not supported"),
    ("[[datasets]]\nresolution=500\n[[datasets.subsets]]\nimage_dir='x'\n",
     "not divisible by 64"),
    ("[[datasets]]\n[[datasets.subsets]]\nimage_dir='x'\nflip_aug='yes'\n",
     "'flip_aug': 'yes' is not true or false"),
    ("[general]\nshuffle_caption = true\n", "no datasets"),
    # subset and dataset values obey the ranges of the options of the same name
    ("[[datasets]]\n[[datasets.subsets]]\nimage_dir='x'\ncaption_dropout_rate=5.0\n",
     "subset 1, 'caption_dropout_rate': 5.0 is above the maximum 1 (use a value from 0 to 1)"),
    ("[general]\nkeep_tokens=-3\n[[datasets]]\n[[datasets.subsets]]\nimage_dir='x'\n",
     "[general], 'keep_tokens': -3 is below the minimum 0 (use 0 or more)"),
    ("[[datasets]]\ncaption_tag_dropout_rate=-0.5\n[[datasets.subsets]]\nimage_dir='x'\n",
     "dataset 1, 'caption_tag_dropout_rate': -0.5 is below the minimum 0"),
    ("[[datasets]]\nmin_bucket_reso=8\n[[datasets.subsets]]\nimage_dir='x'\n",
     "dataset 1, 'min_bucket_reso': 8 is below the minimum 64 (use a value from 64 to 16384)"),
    ("[[datasets]]\n[[datasets.subsets]]\nimage_dir='x'\nkeep_tokens=1.5\n",
     "'keep_tokens': 1.5 is not a whole number"),
    ("[[datasets]\n", "not valid TOML"),
])
def test_bad_dataset_config_names_file_place_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        build_dataset(cfg_for(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_sd_scripts_keys_without_effect_are_ignored_with_a_warning(tmp_path):
    make_concept(tmp_path / "one", 1)
    path = write(tmp_path, f"[[datasets]]\n[[datasets.subsets]]\nimage_dir='{tmp_path / 'one'}'\n"
                           "enable_wildcard = true\n")
    warnings: list[str] = []
    build_dataset(cfg_for(path, resolution="64"), warn=warnings.append)
    assert warnings == [f"dataset_config {path}: 'enable_wildcard' is not supported and is ignored"]


def _other_value(option):
    return {bool: True, int: 2, float: 0.25, str: ".txt"}[option.type]


@pytest.mark.parametrize("option", SUBSET_OPTIONS, ids=lambda o: o.name)
def test_every_subset_option_can_be_set_per_subset(tmp_path, option):
    """Declared once with subset=True: a subset table takes it and its images use it."""
    make_concept(tmp_path / "one", 1)
    value = _other_value(option)
    assert value != option.default
    toml_value = f'"{value}"' if isinstance(value, str) else str(value).lower()
    path = write(tmp_path, f"[[datasets]]\n[[datasets.subsets]]\nimage_dir='{tmp_path / 'one'}'\n"
                           f"{option.name} = {toml_value}\n")
    subset, = build_dataset(cfg_for(path, resolution="64")).subsets
    rules = {**vars(subset.captions), **vars(subset.augment)}
    assert rules[option.name] == value
