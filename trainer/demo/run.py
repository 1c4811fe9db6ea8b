"""`python -m trainer demo`: train the demo preset headless, then measure what was learned.

Runs the "Demo" preset (DreamBooth or LoRA) with the regularization images, and again without
them, then draws fixed-seed pictures from the base model and from both results and prints how
often they show the subject and how well the plain class survived.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import files, subject

MODE_NAMES = {"db": "DreamBooth", "lora": "LoRA"}
GRID_COLUMNS = 8  # pictures per prompt in demo_grid.png


@dataclass
class Trained:
    label: str
    output_dir: Path
    seconds: float


def train_preset(mode: str, output_dir: Path, with_reg: bool, **overrides) -> Trained:
    """One training run of the demo preset; returns where it went and how long it took."""
    from ..config import errors, normalize, validate
    from ..train import train
    from .presets import preset_config

    overrides = {"output_dir": str(output_dir), **overrides}
    if not with_reg:
        overrides["reg_data_dir"] = None
    cfg = preset_config(mode, **overrides)
    bad = errors(validate(cfg))
    if bad:
        raise UserError(f"the demo preset does not validate: {bad[0]}",
                        f"check {files.PRESETS[mode]}")
    cfg = normalize(cfg)
    started = time.monotonic()
    if train(cfg) != 0:
        raise UserError(f"the demo training in {output_dir} failed", "see the messages above")
    label = f"{MODE_NAMES[mode]} {'with' if with_reg else 'without'} reg images"
    return Trained(label, output_dir, time.monotonic() - started)


def load_base():
    from ..models import load_model

    return load_model(str(files.BASE_MODEL), tokenizer=str(files.TOKENIZER))


def trained_pipeline(mode: str, output_dir: Path):
    """A sampling pipeline of the run's final model (LoRA: merged into the base)."""
    from .generate import pipeline

    final = output_dir / "last.safetensors"
    if not final.is_file():
        raise UserError(f"the demo run left no {final}", "see the messages above")
    if mode == "db":
        from ..models import load_model

        return pipeline(load_model(str(final), tokenizer=str(files.TOKENIZER)))
    from ..networks.merge import merge_into

    bundle = load_base()
    merge_into(bundle.unet, bundle.text_encoder, str(final))
    return pipeline(bundle)


def measure_runs(mode: str, runs: list[Trained], samples: int) -> dict:
    from .generate import pipeline
    from .scores import base_accuracy, subject_scores

    from .grid import make_grid

    base = pipeline(load_base())
    results: dict[str, Any] = {"samples_per_prompt": samples, "instance_prompt": subject.INSTANCE_PROMPT,
               "class_prompt": subject.CLASS_PROMPT, "base_accuracy": base_accuracy(base),
               "runs": {}}
    scored = {"base model": subject_scores(base, samples)}
    results["runs"]["base model"] = scored["base model"].as_dict()
    for run in runs:
        scored[run.label] = subject_scores(trained_pipeline(mode, run.output_dir), samples)
        results["runs"][run.label] = {**scored[run.label].as_dict(),
                                      "train_seconds": round(run.seconds, 1)}
    rows = [(f"{label}\n'{prompt}'", pictures[:GRID_COLUMNS]) for label, scores in scored.items()
            for prompt, pictures in scores.pictures.items()]
    results["grid"] = str(make_grid(rows, runs[0].output_dir / "demo_grid.png"))
    return results


def table(results: dict) -> str:
    lines = [f"base model: {results['base_accuracy']:.0%} of 'a <colour> <shape>' pictures show "
             "that shape in that colour",
             f"{results['samples_per_prompt']} pictures per prompt, fixed seeds. "
             f"subject: '{results['instance_prompt']}' shows a {subject.SUBJECT_COLOR} "
             f"{subject.SUBJECT_SHAPE}; class: '{results['class_prompt']}' shows a solid "
             f"{subject.CLASS} (kept) or a {subject.SUBJECT_SHAPE} (drift)",
             f"{'':32} {'subject':>8} {'class kept':>11} {'class drift':>12} {'training':>9}"]
    for label, row in results["runs"].items():
        seconds = f"{row['train_seconds']:.0f} s" if "train_seconds" in row else ""
        lines.append(f"{label:32} {row['fidelity']:>8.0%} {row['class_kept']:>11.0%} "
                     f"{row['class_drift']:>12.0%} {seconds:>9}")
    return "\n".join(lines)


def run_demo(mode: str, output_dir: Path, compare: bool = True, samples: int = 32,
             **overrides) -> dict:
    runs = [train_preset(mode, output_dir, True, **overrides)]
    if compare:
        runs.append(train_preset(mode, output_dir / "without-reg", False, **overrides))
    results = measure_runs(mode, runs, samples)
    (output_dir / "demo_scores.json").write_text(json.dumps(results, indent=2) + "\n",
                                                 encoding="utf-8")
    return results
