"""The dataset report as plain text for the terminal."""

from __future__ import annotations

import os
import sys
from typing import TextIO

BAR = 30


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _source_lines(summary: dict) -> list[str]:
    if summary["source"] == "dataset_config":
        return [f"Images come from dataset_config {summary['dataset_config']}"]
    lines = [f"Training images: train_data_dir {summary['train_data_dir']}"]
    if summary["reg_data_dir"]:
        lines.append(f"Regularization images: reg_data_dir {summary['reg_data_dir']}")
    return lines


def _size_line(size: dict) -> str:
    w, h = size["resolution"]
    if not size["enable_bucket"]:
        return (f"Training size {w}x{h}, bucketing off: every image is resized to cover it and "
                f"cropped")
    upscale = ", small images are not enlarged" if size["bucket_no_upscale"] else ""
    return (f"Bucketing on: buckets up to the area of {w}x{h}, sides {size['min_bucket_reso']}-"
            f"{size['max_bucket_reso']} px in steps of {size['bucket_reso_steps']}{upscale}")


def _concept_lines(summary: dict, is_reg: bool) -> list[str]:
    rows = [c for c in summary["concepts"] if c["is_reg"] == is_reg]
    if not rows:
        return []
    width = max(len(c["name"]) for c in rows)
    out = ["", "Regularization folders" if is_reg else "Training folders"]
    for c in rows:
        text = (f"  {c['name']:<{width}}  {_plural(c['images'], 'image')} x "
                f"{_plural(c['repeats'], 'repeat')}")
        if is_reg:
            text += f"; {c['images_used']} used, {c['samples_per_epoch']} samples per epoch"
        else:
            text += f" = {c['samples_per_epoch']} samples per epoch"
        prompt = f'prompt "{c["prompt"]}"' if c["prompt"] else "no folder prompt"
        text += f"; {prompt}"
        if c["captioned"]:
            text += f" ({c['captioned']} with their own caption file)"
        out.append(text)
    return out


def _bucket_lines(summary: dict) -> list[str]:
    buckets = summary["buckets"]
    top = max(buckets.values(), default=1)
    out = ["", "Buckets (samples per epoch)"]
    for name, count in buckets.items():
        out.append(f"  {name:>9}  {count:>6}  " + "#" * max(1, round(BAR * count / top)))
    if summary["cropped_fraction"] > 0:
        out.append(f"  cropping removes {summary['cropped_fraction']:.1%} of the resized pixels")
    return out


def _epoch_lines(report: dict, cfg) -> list[str]:
    s = report["summary"]
    out = ["", f"One epoch: {s['train_samples']} training"
               + (f" + {s['reg_samples']} regularization" if s["reg_samples"] else "")
               + f" samples = {s['samples_per_epoch']} samples"]
    procs = max(1, cfg.num_processes)
    out.append(f"Batches per epoch: {report['batches_per_epoch']} at batch size "
               f"{report['batch_size']} (train_batch_size {cfg.train_batch_size} x "
               f"{_plural(procs, 'process')}); a batch holds images of one bucket only")
    if report["optimizer_steps_per_epoch"] != report["batches_per_epoch"]:
        out.append(f"Optimizer steps per epoch: {report['optimizer_steps_per_epoch']} "
                   f"(gradient_accumulation_steps {cfg.gradient_accumulation_steps})")
    if "epochs_for_max_train_steps" in report:
        out.append(f"max_train_steps {cfg.max_train_steps} = "
                   f"{report['epochs_for_max_train_steps']} epochs")
    if "total_optimizer_steps" in report:
        out.append(f"max_train_epochs {cfg.max_train_epochs} = "
                   f"{report['total_optimizer_steps']} optimizer steps")
    return out


def _caption_lines(report: dict) -> list[str]:
    out = ["", "Captions of the first batches of epoch 1 (after shuffling and dropout)"]
    batch = None
    for sample in report["sample_captions"]:
        if sample["batch"] != batch:
            batch = sample["batch"]
            out.append(f"  batch {batch} ({sample['bucket'][0]}x{sample['bucket'][1]})")
        tags = " [reg]" if sample["is_reg"] else ""
        tags += " [flipped]" if sample["flip"] else ""
        name = os.path.join(os.path.basename(os.path.dirname(sample["path"])),
                            os.path.basename(sample["path"]))
        out.append(f"    {name}{tags}: \"{sample['caption']}\"")
    return out


def print_report(report: dict, cfg, file: TextIO = sys.stdout) -> None:
    out = ["Dataset report", "=============="]
    if report["ok"]:
        summary = report["summary"]
        out += _source_lines(summary)
        out += [_size_line(size) for size in summary["sizes"]]
        out += _concept_lines(summary, False) + _concept_lines(summary, True)
        out += _epoch_lines(report, cfg) + _bucket_lines(summary) + _caption_lines(report)
        if report["notes"]:
            out += ["", "Notes"] + [f"  - {note}" for note in report["notes"]]
    problems = report["warnings"]
    out += ["", f"Problems ({len(problems)})" if problems else "Problems: none found"]
    out += [f"  - {problem}" for problem in problems]
    if report["error"]:
        error = report["error"]
        hint = f" ({error['hint']})" if error.get("hint") else ""
        out += ["", f"error: {error['message']}{hint}"]
    if report["contact_sheet"]:
        out += ["", f"Contact sheet of the first batches: {report['contact_sheet']}"]
    elif report["ok"]:
        out += ["", "No contact sheet written: set output_dir to get one"]
    out.append("No model was loaded and nothing was trained (debug_dataset).")
    print("\n".join(out), file=file, flush=True)
