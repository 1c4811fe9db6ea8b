"""sd-scripts dataset TOML (--dataset_config): [general], [[datasets]], [[datasets.subsets]].

Keys cascade as in sd-scripts: a subset key may also be set on its dataset or in [general];
anything not set falls back to the command-line option of the same name.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..config.options import BY_NAME, SUBSET_OPTIONS
from ..config.schema import Option
from ..config.validate import resolution_problem
from ..config.values import allowed_values, coerce
from ..errors import UserError
from .buckets import Sizing
from .concepts import Augment, CaptionRules, Subset
from .folders import augment as cfg_augment, caption_rules as cfg_caption_rules, dotted, \
    repeats_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Warn = Callable[[str], None]

# A key that is also an option is checked by the option's own rules (type, range), as on the
# command line; the others exist only in dataset TOML.
SUBSET_KEYS: dict[str, Any] = {
    **{o.name: o for o in SUBSET_OPTIONS},
    "num_repeats": int, "class_tokens": str, "caption_prefix": str, "caption_suffix": str,
}
SUBSET_ONLY_KEYS = {"image_dir": str, "is_reg": bool}
DATASET_KEYS: dict[str, Any] = {
    "resolution": "resolution", "batch_size": int,
    **{name: BY_NAME[name] for name in ("enable_bucket", "min_bucket_reso", "max_bucket_reso",
                                        "bucket_reso_steps", "bucket_no_upscale")},
}
# sd-scripts keys this trainer understands but does not act on: ignored with a warning.
IGNORED_KEYS = {
    "keep_tokens_separator", "secondary_separator", "caption_separator", "enable_wildcard",
    "token_warmup_min", "token_warmup_step", "face_crop_aug_range", "custom_attributes",
    "resize_interpolation", "cache_info", "alpha_mask", "validation_seed", "validation_split",
    "network_multiplier", "debug_dataset", "max_token_length", "prior_loss_weight",
}
KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
UNSUPPORTED_KEYS = {
    "metadata_file": "fine-tuning metadata files are not supported; use image_dir with caption "
                     "files beside the images",
    "conditioning_data_dir": "ControlNet datasets are not supported",
}


class _Reader:
    def __init__(self, path: Path, warn: Warn):
        self.path, self.warn = path, warn
        self._ignored: set[str] = set()

    def fail(self, where: str, message: str, hint: str | None = None):
        raise UserError(f"dataset_config {self.path}, {where}: {message}", hint)

    def check_keys(self, table: dict, allowed: dict, where: str) -> None:
        for key in table:
            if key in allowed:
                continue
            if key in UNSUPPORTED_KEYS:
                self.fail(where, f"'{key}': {UNSUPPORTED_KEYS[key]}")
            if key in IGNORED_KEYS:
                if key not in self._ignored:
                    self._ignored.add(key)
                    self.warn(f"dataset_config {self.path}: '{key}' is not supported and is ignored")
                continue
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.7)
            guess = f" (did you mean '{close[0]}'?)" if close else ""
            self.fail(where, f"unknown key '{key}'{guess}")

    def value(self, tables: list[tuple[dict, str]], key: str, kind, default: Any) -> Any:
        """The innermost table's value for `key` (subset, then dataset, then general)."""
        for table, where in tables:
            if key in table:
                return self._coerce(table[key], kind, f"{where}, '{key}'")
        return default

    def _coerce(self, raw: Any, kind, where: str) -> Any:
        if kind == "resolution":
            sizes = [raw, raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if (not isinstance(sizes, list) or len(sizes) != 2
                    or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes)):
                raise UserError(f"dataset_config {self.path}, {where}: {raw!r} is not N or [W, H]")
            problem = resolution_problem(*sizes)
            if problem:
                raise UserError(f"dataset_config {self.path}, {where}: {raw!r} {problem}")
            return tuple(sizes)
        if isinstance(kind, Option):
            return self._option_value(raw, kind, where)
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
            raise UserError(f"dataset_config {self.path}, {where}: {raw!r} is not {KIND_WORDS[kind]}")
        return raw

    def _option_value(self, raw: Any, option: Option, where: str) -> Any:
        """TOML already has types: a text is no boolean here, unlike on the command line."""
        value = self._coerce(raw, option.type, where)
        try:
            return coerce(option, value)
        except UserError as err:
            raise UserError(f"dataset_config {self.path}, {where}: {err.message}",
                            allowed_values(option)) from None


def _image_dir(raw: str, toml_path: Path) -> str:
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists() and (toml_path.parent / path).exists():
        path = toml_path.parent / path
    return str(path)


def _subset(reader: _Reader, tables, where: str, cfg, sizing: int) -> Subset:
    base_captions, base_augment = cfg_caption_rules(cfg), cfg_augment(cfg)
    table = tables[0][0]
    if "image_dir" not in table:
        reader.fail(where, "no image_dir", "every [[datasets.subsets]] needs image_dir = '…'")
    image_dir = _image_dir(reader.value(tables[:1], "image_dir", str, ""), reader.path)
    get = lambda key, default: reader.value(tables, key, SUBSET_KEYS[key], default)  # noqa: E731
    captions = CaptionRules(**{f: get(f, getattr(base_captions, f)) for f in
                               CaptionRules.__dataclass_fields__})
    aug = Augment(**{f: get(f, getattr(base_augment, f)) for f in Augment.__dataclass_fields__})
    captions = replace(captions, caption_extension=dotted(captions.caption_extension))
    repeats = get("num_repeats", 1)
    too_many = repeats_problem(repeats, str(repeats))
    if too_many:
        reader.fail(where, f"num_repeats {too_many}", "use a smaller num_repeats")
    if repeats < 1:
        reader.fail(where, f"num_repeats is {repeats}", "use 1 or more (how often each image "
                    "is shown per epoch)")
    is_reg = reader.value(tables[:1], "is_reg", bool, False)
    prompt = " ".join(get("class_tokens", "").split())
    return Subset(image_dir, Path(image_dir).name, repeats, is_reg, prompt, captions, aug, sizing)


def load_dataset_toml(path: str, cfg, warn: Warn) -> tuple[list[Sizing], list[Subset]]:
    toml_path = Path(path).expanduser()
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"dataset_config {toml_path} does not exist",
                        "give an sd-scripts dataset .toml file") from None
    except UnicodeDecodeError:
        raise UserError(f"dataset_config {toml_path} is not UTF-8 text", "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"dataset_config {toml_path} is not valid TOML: {err}") from None
    reader = _Reader(toml_path, warn)
    reader.check_keys(data, {"general": 0, "datasets": 0}, "top level")
    general = data.get("general", {})
    reader.check_keys(general, {**SUBSET_KEYS, **DATASET_KEYS}, "[general]")
    datasets = data.get("datasets", [])
    if not datasets:
        reader.fail("[[datasets]]", "no datasets", "add a [[datasets]] table with [[datasets.subsets]]")
    sizings, subsets = [], []
    for number, dataset in enumerate(datasets, 1):
        where = f"dataset {number}"
        reader.check_keys(dataset, {**SUBSET_KEYS, **DATASET_KEYS, "subsets": 0}, where)
        tables = [(dataset, where), (general, "[general]")]
        sizings.append(_sizing(reader, tables, cfg, warn))
        if not dataset.get("subsets"):
            reader.fail(where, "no subsets", "add [[datasets.subsets]] with image_dir = '…'")
        for sub_number, table in enumerate(dataset["subsets"], 1):
            sub_where = f"{where}, subset {sub_number}"
            reader.check_keys(table, {**SUBSET_KEYS, **SUBSET_ONLY_KEYS}, sub_where)
            subsets.append(_subset(reader, [(table, sub_where), *tables], sub_where, cfg,
                                   len(sizings) - 1))
    return sizings, subsets


def _sizing(reader: _Reader, tables, cfg, warn: Warn) -> Sizing:
    from ..config import parse_resolution

    get = lambda key, default: reader.value(tables, key, DATASET_KEYS[key], default)  # noqa: E731
    batch_size = get("batch_size", None)
    if batch_size is not None and batch_size != cfg.train_batch_size:
        warn(f"dataset_config {reader.path}: batch_size {batch_size} differs from "
             f"train_batch_size {cfg.train_batch_size}; train_batch_size is used")
    return Sizing(
        resolution=get("resolution", parse_resolution(cfg.resolution)),
        enable_bucket=get("enable_bucket", cfg.enable_bucket),
        min_bucket_reso=get("min_bucket_reso", cfg.min_bucket_reso),
        max_bucket_reso=get("max_bucket_reso", cfg.max_bucket_reso),
        bucket_reso_steps=get("bucket_reso_steps", cfg.bucket_reso_steps),
        bucket_no_upscale=get("bucket_no_upscale", cfg.bucket_no_upscale),
    )
