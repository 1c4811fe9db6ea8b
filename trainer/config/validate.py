"""Check a whole config at once and explain every problem in one line naming the option.

The same messages are printed by the CLI and shown by the GUI's Check button.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .options import BY_NAME, Config
from ..errors import UserError
from .values import is_finite_value, literal, parse_key_values

MODEL_SUFFIXES = (".ckpt", ".safetensors", ".bin", ".pt", ".pth", ".yaml")
# network_args keys the LoRA network understands, with their types.
NETWORK_ARG_KEYS = {"conv_dim": int, "conv_alpha": float, "rank_dropout": float,
                    "module_dropout": float, "loraplus_lr_ratio": float}
_NETWORK_ARG_OPTIONS = ("conv_dim", "conv_alpha")  # also options of their own


@dataclass(frozen=True)
class Problem:
    option: str | None
    message: str
    level: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"--{self.option}: {self.message}" if self.option else self.message


# Four times SDXL's native 1024-pixel side (16 times its pixels); no Stable Diffusion model was
# trained near it, and one 4096x4096 image is already 200 MB as a float tensor before the VAE.
MAX_RESOLUTION = 4096


def resolution_problem(width: int, height: int) -> str | None:
    """Why a training size is refused, or None."""
    if max(width, height) > MAX_RESOLUTION:
        return (f"is larger than {MAX_RESOLUTION} pixels on a side, the most this trainer "
                "accepts; Stable Diffusion trains at 512 to 1024")
    if width <= 0 or height <= 0 or width % 64 or height % 64:
        return "is not divisible by 64; use multiples of 64 such as 512 or 768,512"
    return None


FALLBACK_RESOLUTION = 512  # when the base model's native size cannot be read before loading


def parse_resolution(text: str | None) -> tuple[int, int]:
    """'512' -> (512, 512); '768,512' -> (768, 512) as (width, height); None (not resolved from
    the model, see normalize) -> 512."""
    if text is None:
        return FALLBACK_RESOLUTION, FALLBACK_RESOLUTION
    parts = [p for p in str(text).split(",") if p != ""]
    if len(parts) not in (1, 2):
        raise ValueError(f"{text!r} is not N or W,H (e.g. 512 or 768,512)")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not N or W,H (e.g. 512 or 768,512)") from None
    width, height = sizes if len(sizes) == 2 else sizes * 2
    return width, height


def looks_like_path(value: str) -> bool:
    """A hub id is 'owner/name'; anything else with path syntax must exist on disk."""
    if os.path.exists(value):
        return True
    if value.lower().endswith(MODEL_SUFFIXES) or "\\" in value or value.count("/") > 1:
        return True
    return value.startswith((".", "/", "~")) or bool(re.match(r"^[A-Za-z]:", value))


def normalize(cfg: Config, *, read_model: bool = True) -> Config:
    """A copy of `cfg` with the settings that imply others applied (as sd-scripts does).
    `cfg` itself is left as it is. `read_model`: an unset resolution becomes the base model's
    native size, read from the model's file header or folder configs (never its weights)."""
    done = cfg.copy()
    if done.resolution is None and read_model:
        done.resolution = str(native_resolution(done.pretrained_model_name_or_path))
    if done.use_8bit_adam and done.optimizer_type == "AdamW":
        done.optimizer_type = "AdamW8bit"
    if done.cache_latents_to_disk and not done.cache_latents:
        done.cache_latents = True
    ext = done.caption_extension
    if ext and not ext.startswith("."):
        done.caption_extension = "." + ext
    if done.mode == "lora":
        try:
            extras = parse_key_values(done.network_args, "network_args")
        except UserError:
            return done  # reported by validate()
        for key in _NETWORK_ARG_OPTIONS:
            cast = NETWORK_ARG_KEYS[key]
            if key in extras and done.get(key) is None:
                try:
                    setattr(done, key, cast(extras[key]))
                except ValueError:
                    pass  # reported by validate()
    return done


def native_resolution(model: str | None) -> int:
    """The base model's native image side, or 512 when it cannot be told before loading (a
    .ckpt, a hub id not in the local cache)."""
    from ..model_family import NotDetected, detect

    if not model:
        return FALLBACK_RESOLUTION
    try:
        return detect(Path(model)).default_resolution
    except (NotDetected, UserError, OSError):
        return FALLBACK_RESOLUTION


def _normalization_notes(cfg: Config):
    """What normalize() changes that the user should hear about."""
    ext = cfg.caption_extension
    if ext and not ext.startswith("."):
        yield Problem("caption_extension", f"{ext!r} has no leading dot; using {'.' + ext!r}",
                      "warning")


def validate(cfg: Config, *, check_paths: bool = True) -> list[Problem]:
    """Every problem of `cfg` (errors and warnings), judged as the trainer will see it (after
    normalize()). Changes nothing: call normalize() for the config to train with."""
    problems = list(_normalization_notes(cfg))
    normalized = normalize(cfg, read_model=check_paths)
    for check in _CHECKS:
        problems.extend(check(normalized))
    if check_paths:
        problems.extend(_check_paths(normalized))
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


def _required(cfg: Config):
    if not cfg.pretrained_model_name_or_path:
        yield Problem("pretrained_model_name_or_path",
                      "no base model given; point it at a .safetensors/.ckpt file or a diffusers folder")
    if not cfg.output_dir:
        yield Problem("output_dir", "no output folder given; choose where models and samples go")
    if not cfg.train_data_dir and not cfg.dataset_config:
        yield Problem("train_data_dir",
                      "no training images given; set train_data_dir (folder of '<repeats>_<identifier> "
                      "<class>' folders) or dataset_config")
    if cfg.output_name is not None and any(c in cfg.output_name for c in '/\\:*?"<>|'):
        yield Problem("output_name", f"{cfg.output_name!r} is not a usable file name")


def _resolution(cfg: Config):
    try:
        width, height = parse_resolution(cfg.resolution)
    except ValueError as err:
        yield Problem("resolution", str(err))
        return
    problem = resolution_problem(width, height)
    if problem:
        yield Problem("resolution", f"{cfg.resolution} {problem}")
    if cfg.enable_bucket:
        step = cfg.bucket_reso_steps
        if step % 8:
            yield Problem("bucket_reso_steps", f"{step} is not a multiple of 8 (the VAE's scale)")
        if cfg.min_bucket_reso > cfg.max_bucket_reso:
            yield Problem("min_bucket_reso", f"{cfg.min_bucket_reso} is larger than max_bucket_reso "
                          f"{cfg.max_bucket_reso}")
        for name in ("min_bucket_reso", "max_bucket_reso"):
            if step and cfg.get(name) % step:
                yield Problem(name, f"{cfg.get(name)} is not divisible by bucket_reso_steps {step}")
        if cfg.min_bucket_reso > min(width, height):
            yield Problem("min_bucket_reso", f"{cfg.min_bucket_reso} is larger than the resolution's "
                          f"short side {min(width, height)}; lower it")


def _augmentation(cfg: Config):
    if cfg.cache_latents:
        if cfg.color_aug:
            yield Problem("color_aug", "cannot be used with cache_latents (cached latents cannot change "
                          "color); turn one of them off")
        if cfg.random_crop:
            yield Problem("random_crop", "cannot be used with cache_latents (a cached crop is fixed); "
                          "turn one of them off")


def _precision(cfg: Config):
    if cfg.full_fp16 and cfg.mixed_precision != "fp16":
        hint = "bf16 does not work with it" if cfg.mixed_precision == "bf16" else "it needs fp16"
        yield Problem("full_fp16", f"needs mixed_precision=fp16 ({hint}); set mixed_precision=fp16 "
                      "or drop full_fp16")
    if cfg.full_bf16 and cfg.mixed_precision != "bf16":
        yield Problem("full_bf16", "needs mixed_precision=bf16; set mixed_precision=bf16 or drop "
                      "full_bf16")
    if cfg.full_bf16 and cfg.full_fp16:
        yield Problem("full_bf16", "conflicts with full_fp16; keep only one of them")
    if cfg.xformers and cfg.mem_eff_attn:
        yield Problem("mem_eff_attn", "ignored because xformers is also set", "warning")


def _optimizer(cfg: Config):
    if cfg.use_8bit_adam and cfg.optimizer_type not in ("AdamW", "AdamW8bit"):
        yield Problem("use_8bit_adam", f"conflicts with optimizer_type={cfg.optimizer_type}; "
                      "keep only one of them")
    try:
        extras = parse_key_values(cfg.optimizer_args, "optimizer_args")
    except UserError as err:
        yield Problem("optimizer_args", err.message)
        extras = {}
    for key, value in extras.items():
        if not is_finite_value(literal(value)):
            yield Problem("optimizer_args", f"{key}={value} is not a finite number")
    if cfg.lr_warmup_steps and cfg.lr_scheduler == "constant":
        yield Problem("lr_warmup_steps", "has no effect with lr_scheduler=constant; use "
                      "constant_with_warmup", "warning")


def _saving(cfg: Config):
    if cfg.mode == "lora" and cfg.save_model_as in ("diffusers", "diffusers_safetensors"):
        yield Problem("save_model_as", "a LoRA is saved as safetensors or ckpt, not as a diffusers folder")
    if (cfg.sample_every_n_steps or cfg.sample_every_n_epochs or cfg.sample_at_first) \
            and not cfg.sample_prompts:
        yield Problem("sample_prompts", "no prompt file given, so no sample images will be made",
                      "warning")


def _network(cfg: Config):
    if cfg.mode != "lora":
        return
    if cfg.network_train_unet_only and cfg.network_train_text_encoder_only:
        yield Problem("network_train_unet_only", "and network_train_text_encoder_only together "
                      "train nothing; keep one")
    try:
        extras = parse_key_values(cfg.network_args, "network_args")
    except UserError as err:
        yield Problem("network_args", err.message)
        return
    for key, value in extras.items():
        cast = NETWORK_ARG_KEYS.get(key)
        if cast is None:
            yield Problem("network_args", f"unknown key {key!r}; supported: "
                          f"{', '.join(NETWORK_ARG_KEYS)}")
            continue
        try:
            number = cast(value)
        except ValueError:
            yield Problem("network_args", f"{key}={value!r} is not a number")
            continue
        if not is_finite_value(number):
            yield Problem("network_args", f"{key}={value} is not a finite number")
            continue
        if key.endswith("_dropout") and not 0 <= number < 1:
            yield Problem("network_args", f"{key}={value} must be at least 0 and below 1")
        elif key != "conv_alpha" and number <= 0 and not key.endswith("_dropout"):
            yield Problem("network_args", f"{key}={value} must be positive")
    if cfg.conv_alpha is not None and cfg.conv_dim is None:
        yield Problem("conv_alpha", "has no effect without conv_dim", "warning")
    if cfg.dim_from_weights and not cfg.network_weights:
        yield Problem("dim_from_weights", "needs network_weights (the file to read the rank from)")


def _model_flags(cfg: Config):
    if cfg.v_parameterization and not cfg.v2:
        yield Problem("v_parameterization", "is set without v2; that is right only for rare v-prediction "
                      "SD 1.x models", "warning")


def _memory_savers(cfg: Config):
    if not cfg.fused_backward_pass or cfg.mode != "db":
        return
    if cfg.gradient_accumulation_steps > 1:
        yield Problem("fused_backward_pass", "steps each weight during the backward pass, so it "
                      "cannot accumulate gradients; set gradient_accumulation_steps=1 or drop "
                      "fused_backward_pass")
    if cfg.max_grad_norm:
        yield Problem("fused_backward_pass", "never holds all gradients at once, so it cannot clip "
                      f"their norm (max_grad_norm={cfg.max_grad_norm:g}); set max_grad_norm=0 or "
                      "drop fused_backward_pass")
    if cfg.mixed_precision == "fp16":
        yield Problem("fused_backward_pass", "cannot skip a step whose fp16 gradients overflowed "
                      "(weights are already updated when the overflow shows); use "
                      "mixed_precision=bf16 (with full_bf16) or drop fused_backward_pass")
    if cfg.optimizer_type == "Prodigy":
        yield Problem("fused_backward_pass", "gives each weight its own Prodigy step-size estimate "
                      "(not one for the whole model), so training differs from a run without it",
                      "warning")
    if cfg.num_processes > 1:
        yield Problem("fused_backward_pass", "works on one GPU only (each weight is updated before "
                      "the GPUs have averaged its gradient); set num_processes=1 or drop "
                      "fused_backward_pass")


def _noise_and_loss(cfg: Config):
    """sd-scripts' rules for the noise, timestep and loss options (train_util.verify_training_args)."""
    if cfg.adaptive_noise_scale is not None and not cfg.noise_offset:
        yield Problem("adaptive_noise_scale", "needs noise_offset; set noise_offset (e.g. 0.05) or "
                      "drop adaptive_noise_scale")
    if cfg.noise_offset_random_strength and not cfg.noise_offset:
        yield Problem("noise_offset_random_strength", "has no effect without noise_offset",
                      "warning")
    if cfg.ip_noise_gamma_random_strength and not cfg.ip_noise_gamma:
        yield Problem("ip_noise_gamma_random_strength", "has no effect without ip_noise_gamma",
                      "warning")
    low, high = cfg.min_timestep, cfg.max_timestep
    if low is not None and high is not None and low > high:
        yield Problem("min_timestep", f"{low} is larger than max_timestep {high}; give "
                      "min_timestep <= max_timestep (equal pins one timestep)")
    if cfg.scale_v_pred_loss_like_noise_pred and not cfg.v_parameterization:
        yield Problem("scale_v_pred_loss_like_noise_pred", "works only with v_parameterization; set "
                      "v_parameterization or drop scale_v_pred_loss_like_noise_pred")
    if cfg.v_pred_like_loss and cfg.v_parameterization:
        yield Problem("v_pred_like_loss", "cannot be used with v_parameterization (the loss is "
                      "already a v loss); drop one of them")
    if cfg.zero_terminal_snr and not cfg.v_parameterization:
        yield Problem("zero_terminal_snr", "without v_parameterization the model cannot predict "
                      "the noise at the last timestep; training will be unexpected", "warning")
    if cfg.loss_type in ("huber", "smooth_l1") and cfg.huber_c <= 0:
        yield Problem("huber_c", f"{cfg.huber_c:g} must be above 0 for loss_type={cfg.loss_type}; "
                      "0.1 is the usual value")


_CHECKS = (_required, _resolution, _augmentation, _precision, _optimizer, _saving, _network,
           _model_flags, _memory_savers, _noise_and_loss)

# Options whose value must name something on disk (declared with must_exist=True).
_EXISTING = [o for o in BY_NAME.values() if o.must_exist and o.path in ("dir", "file")]
_MAYBE_HUB = [o for o in BY_NAME.values() if o.must_exist and o.path == "path"]


def _check_paths(cfg: Config):
    for option in _EXISTING:
        name, kind, what = option.name, option.path, option.expects
        value = cfg.get(name)
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            yield Problem(name, f"{value} does not exist; give {what}")
        elif kind == "dir" and not path.is_dir():
            yield Problem(name, f"{value} is a file; give {what}")
        elif kind == "file" and not path.is_file():
            yield Problem(name, f"{value} is a folder; give {what}")
    for option in _MAYBE_HUB:
        value = cfg.get(option.name)
        if value and looks_like_path(value) and not Path(value).expanduser().exists():
            yield Problem(option.name, f"{value} does not exist (not a file, folder or hub id)")
    if cfg.output_dir:
        problem = output_dir_problem(Path(cfg.output_dir).expanduser())
        if problem:
            yield Problem("output_dir", problem)
    yield from _check_sample_prompts(cfg)


def output_dir_problem(folder: Path) -> str | None:
    """Why models could not be written into `folder` (which may not exist yet), or None."""
    if folder.is_file():
        return f"{folder} is a file; give a folder"
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != folder and not existing.is_dir():
        return f"{folder} cannot be created: {existing} is a file; give another folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable; give a folder you can write to"
    return None


def _check_sample_prompts(cfg: Config):
    """Every line of the prompt file, so a bad value stops the run before training, not after."""
    path = Path(cfg.sample_prompts).expanduser() if cfg.sample_prompts else None
    if path is None or not path.is_file():
        return  # a missing file is reported by _check_paths
    from ..sample_prompts import read_prompts

    try:
        read_prompts(path)
    except UserError as err:
        yield Problem("sample_prompts", str(err))
