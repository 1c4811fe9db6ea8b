"""The trainer's model and LoRA tools as subprocesses (python -m trainer <tool> …), streamed.

Argument lists are built here, from the form of the Utilities tab; nothing goes through a shell.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from trainer.errors import UserError

from .runner import trainer_env

DEFAULT = "(default)"
PRECISIONS = ("float", "fp16", "bf16")
MODEL_FORMATS = ("safetensors", "ckpt", "diffusers", "diffusers_safetensors")


def available(command: str) -> bool:
    from trainer.commands import COMMANDS

    return command in COMMANDS


def _need(value: str | None, what: str) -> str:
    if not value or not str(value).strip():
        raise UserError(f"no {what} given", f"type the {what}")
    return str(value).strip()


def _options(save_model_as=None, save_precision=None, v2=False, v_parameterization=False,
             overwrite=False, tokenizer=None) -> list[str]:
    argv = []
    if tokenizer and str(tokenizer).strip():
        argv += ["--tokenizer", str(tokenizer).strip()]
    if save_model_as and save_model_as != DEFAULT:
        argv += ["--save_model_as", save_model_as]
    if save_precision and save_precision != DEFAULT:
        argv += ["--save_precision", save_precision]
    if v2:
        argv.append("--v2")
    if v_parameterization:
        argv.append("--v_parameterization")
    if overwrite:
        argv.append("--overwrite")
    return argv


def convert_argv(src, dst, save_model_as=None, save_precision=None, v2=False,
                 v_parameterization=False, overwrite=False, tokenizer=None) -> list[str]:
    """tokenizer: for a single-file source, which holds none."""
    return ["convert", _need(src, "source model"), _need(dst, "destination"),
            *_options(save_model_as, save_precision, v2, v_parameterization, overwrite, tokenizer)]


def lora_lines(text: str) -> list[tuple[str, float | None]]:
    """Lines 'path' or 'path : weight' -> (path, weight or None) (paths may hold spaces)."""
    pairs: list[tuple[str, float | None]] = []
    for line in (text or "").splitlines():
        line = line.strip().strip('"')
        if not line:
            continue
        path, sep, weight = line.rpartition(":")
        if sep and weight.strip() and _is_number(weight) and path.strip():
            pairs.append((path.strip().strip(chr(34)), float(weight)))
        else:
            pairs.append((line, None))
    if not pairs:
        raise UserError("no LoRA file given", "one LoRA file per line, optionally ': weight'")
    return pairs


def parse_loras(text: str) -> list[str]:
    """Lines 'path' or 'path : weight' -> FILE[:WEIGHT] arguments."""
    return [path if weight is None else f"{path}:{weight:g}" for path, weight in lora_lines(text)]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def merge_argv(base, loras_text, out, save_model_as=None, save_precision=None, v2=False,
               v_parameterization=False, overwrite=False, tokenizer=None) -> list[str]:
    """tokenizer: for a single-file base model, which holds none."""
    return ["lora-merge", "--base", _need(base, "base model"), "--lora", *parse_loras(loras_text),
            "--out", _need(out, "output path"),
            *_options(save_model_as, save_precision, v2, v_parameterization, overwrite, tokenizer)]


def combine_argv(loras_text, out, new_rank=None, save_precision=None, overwrite=False) -> list[str]:
    """LoRA files into one LoRA (lora-merge without --base); new_rank: SVD to that rank."""
    argv = ["lora-merge", "--lora", *parse_loras(loras_text), "--out", _need(out, "output file")]
    if new_rank not in (None, "", 0):
        if int(new_rank) < 1:
            raise UserError("the new rank must be 1 or more", "or leave it empty to keep every rank")
        argv += ["--new_rank", str(int(new_rank))]
    return argv + _options(save_precision=save_precision, overwrite=overwrite)


def extract_argv(model_org, model_tuned, save_to, dim, conv_dim=None, clamp_quantile=0.99,
                 save_precision=None, overwrite=False, tokenizer=None) -> list[str]:
    """A LoRA from a fine-tuned model and its base; conv_dim: also the 3x3 convolutions."""
    if not dim or int(dim) < 1:
        raise UserError("the rank must be 1 or more", "type the LoRA rank, e.g. 32")
    argv = ["lora-extract", "--model_org", _need(model_org, "base model"),
            "--model_tuned", _need(model_tuned, "fine-tuned model"),
            "--save_to", _need(save_to, "output file"), "--dim", str(int(dim))]
    if conv_dim not in (None, "", 0):
        argv += ["--conv_dim", str(int(conv_dim))]
    if clamp_quantile not in (None, ""):
        argv += ["--clamp_quantile", f"{float(clamp_quantile):g}"]
    return argv + _options(save_precision=save_precision, overwrite=overwrite, tokenizer=tokenizer)


def reg_generate_argv(cfg, class_prompt, count, out, negative="", steps=30, scale=7.5,
                      sampler="euler_a") -> list[str]:
    """reg-generate with the Train tab's model, resolution and bucket options (`cfg`)."""
    if not count or int(count) < 1:
        raise UserError("the number of images must be 1 or more", "e.g. 200")
    argv = ["reg-generate", "--pretrained_model_name_or_path",
            _need(cfg.pretrained_model_name_or_path, "base model (Train tab)"),
            "--class_prompt", _need(class_prompt, "class prompt"), "--count", str(int(count)),
            "--out", _need(out, "output folder"), "--resolution", str(cfg.resolution),
            "--steps", str(int(steps or 30)), "--scale", f"{float(scale):g}", "--sampler", sampler,
            "--seed", str(cfg.seed or 0)]
    if negative and negative.strip():
        argv += ["--negative_prompt", negative.strip()]
    if cfg.enable_bucket and cfg.train_data_dir:
        argv += ["--enable_bucket", "--train_data_dir", str(cfg.train_data_dir),
                 "--min_bucket_reso", str(cfg.min_bucket_reso),
                 "--max_bucket_reso", str(cfg.max_bucket_reso)]
    for flag in ("tokenizer", "vae"):
        if cfg.get(flag):
            argv += [f"--{flag}", str(cfg.get(flag))]
    for flag in ("v2", "v_parameterization"):
        if cfg.get(flag):
            argv.append(f"--{flag}")
    return argv


def caption_argv(folder, method, model="", prefix="", caption_extension=".caption",
                 thresh=0.35, undesired="", overwrite=False, recursive=True,
                 preview=False) -> list[str]:
    argv = ["caption", _need(folder, "image folder"), "--method", method,
            "--caption_extension", caption_extension or ".caption"]
    if model and model.strip():
        argv += ["--model", model.strip()]
    if prefix and prefix.strip():
        argv += ["--prefix", prefix.strip()]
    if method == "wd14":
        argv += ["--thresh", f"{float(thresh):g}", "--remove_underscore"]
        if undesired and undesired.strip():
            argv += ["--undesired_tags", undesired.strip()]
    for flag, on in (("--overwrite", overwrite), ("--recursive", recursive),
                     ("--preview", preview)):
        if on:
            argv.append(flag)
    return argv


def info_argv(file, layers: bool = False) -> list[str]:
    return ["lora-info", _need(file, "LoRA file"), *(["--layers"] if layers else [])]


def resize_argv(file, new_dim, out=None, save_precision=None, overwrite=False) -> list[str]:
    if not new_dim or int(new_dim) < 1:
        raise UserError("the new rank must be 1 or more", "type the rank to reduce to")
    argv = ["lora-resize", _need(file, "LoRA file"), "--new_dim", str(int(new_dim))]
    if out and str(out).strip():
        argv += ["--out", str(out).strip()]
    return argv + _options(save_precision=save_precision, overwrite=overwrite)


def stream(argv: list[str], cwd: Path, every: float = 0.3) -> Iterator[tuple[str, int | None]]:
    """Run `python -m trainer <argv>`; yield (output so far, exit code or None while running)."""
    process = subprocess.Popen([sys.executable, "-m", "trainer", *argv], cwd=str(cwd),
                               env=trainer_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                               errors="replace")
    lines: list[str] = []
    last = 0.0
    assert process.stdout is not None
    for line in process.stdout:  # text mode reads a progress bar's \r as a line end too
        if line.strip():
            lines.append(line.rstrip("\n"))
        if time.monotonic() - last >= every:
            last = time.monotonic()
            yield "\n".join(lines[-300:]), None
    code = process.wait()
    yield "\n".join(lines[-300:]), code
