"""Previews for the GUI and the dataset report (the `--debug_dataset` output).

Nothing here imports torch: the GUI calls these functions directly and cheaply.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..errors import UserError
from .dataset import Dataset, build_dataset
from .summary import cropped_fraction

REPORT_BATCHES = 4  # batches shown in the report and on the contact sheet
REPORT_COLUMNS = 8  # samples per batch drawn on the contact sheet
CONTACT_SHEET = "dataset_report.png"


def global_batch_size(cfg) -> int:
    return max(1, cfg.train_batch_size) * max(1, cfg.num_processes)


def caption_preview(cfg) -> list[dict]:
    """Every usable image with the caption it trains with (before shuffling or dropout)."""
    ds = build_dataset(cfg, warn=lambda message: None)
    return [{"path": item.path, "caption": item.caption, "source": item.caption_source,
             "is_reg": ds.is_reg[index], "concept": ds.subsets[item.subset].name}
            for index, item in enumerate(ds.items)]


def bucket_preview(cfg) -> dict:
    """Per image: bucket, scale, crop box (original pixels); bucket histogram; crop loss."""
    ds = build_dataset(cfg, warn=lambda message: None)
    images: list[dict] = []
    histogram: dict[str, int] = {}
    for index, item in enumerate(ds.items):
        p = item.placement
        key = f"{p.bucket[0]}x{p.bucket[1]}"
        histogram[key] = histogram.get(key, 0) + 1
        images.append({"path": item.path, "is_reg": ds.is_reg[index], "size": list(p.size),
                       "bucket": list(p.bucket), "scale": round(p.scale, 4),
                       "resized": list(p.resized), "crop": p.crop_box_in_original(),
                       "cropped_fraction": round(p.cropped_fraction, 4),
                       "uses_per_epoch": ds.uses.get(index, 0)})
    gbs = global_batch_size(cfg)
    return {"images": images, "histogram": dict(sorted(histogram.items())),
            "samples": {f"{b[0]}x{b[1]}": n for b, n in ds.bucket_counts().items()},
            "cropped_fraction": round(cropped_fraction(ds), 4), "batch_size": gbs,
            "steps_per_epoch": ds.steps_per_epoch(gbs), "warnings": list(ds.warnings)}


def _notes(ds: Dataset, summary: dict) -> list[str]:
    notes = []
    reg_rows = [c for c in summary["concepts"] if c["is_reg"]]
    if summary["reg_images_unused"]:
        notes.append(f"{summary['reg_images_unused']} of {summary['reg_images']} regularization "
                     f"images are not used: an epoch has {summary['train_samples']} training "
                     f"samples (repeats x images) and regularization fills the same number; raise "
                     f"the training repeats to use more of them")
    most_asked = max((c["repeats"] for c in reg_rows), default=0)
    if reg_rows and summary["reg_max_uses"] > most_asked:
        notes.append(f"there are few regularization images for {summary['train_samples']} "
                     f"training samples, so each is shown up to {summary['reg_max_uses']} times "
                     f"per epoch; add regularization images or lower the training repeats")
    if ds.cfg.seed is None:
        notes.append("seed is not set: the batches shown use seed 0, while training picks a "
                     "random seed; set --seed to see exactly what training will use")
    if not reg_rows and ds.cfg.mode == "db" and not ds.cfg.dataset_config:
        notes.append("no regularization images: without them the whole class drifts toward "
                     "your subject (set reg_data_dir to a folder such as '1_dog')")
    return notes


def _sample_batches(ds: Dataset, gbs: int) -> tuple[list, list[dict]]:
    batches = ds.epoch_batches(0, gbs)[:REPORT_BATCHES]
    shown = []
    for number, refs in enumerate(batches, 1):
        captions, picks = ds.sample_choices(refs, 0)
        for ref, caption, pick in zip(refs, captions, picks):
            bucket = ds.items[ref.item].placement.bucket
            shown.append({"batch": number, "path": ds.items[ref.item].path, "caption": caption,
                          "is_reg": ref.is_reg, "bucket": list(bucket), "flip": pick.flip})
    return batches, shown


def dataset_report(cfg, contact_sheet: str | Path | None = None) -> dict:
    """Everything the report prints, as data. Never raises for dataset problems: `ok` is False
    and `error` holds the message when no usable training image remains."""
    warnings: list[str] = []
    report: dict = {"ok": False, "error": None, "warnings": warnings, "summary": None,
                    "notes": [], "contact_sheet": None}
    try:
        ds = build_dataset(cfg, warn=warnings.append)
    except UserError as err:
        report["error"] = {"message": err.message, "hint": err.hint}
        return report
    from .tokens import long_captions_in

    long_captions = long_captions_in(ds, cfg)
    if long_captions:
        warnings.append(long_captions)
    summary = ds.summary()
    gbs = global_batch_size(cfg)
    steps = ds.steps_per_epoch(gbs)
    accumulation = max(1, cfg.gradient_accumulation_steps)
    batches, shown = _sample_batches(ds, gbs)
    report.update(ok=True, summary=summary, notes=_notes(ds, summary), batch_size=gbs,
                  batches_per_epoch=steps,
                  optimizer_steps_per_epoch=math.ceil(steps / accumulation),
                  sample_captions=shown)
    if cfg.max_train_epochs:
        report["total_optimizer_steps"] = cfg.max_train_epochs * math.ceil(steps / accumulation)
    elif cfg.max_train_steps:
        report["epochs_for_max_train_steps"] = round(
            cfg.max_train_steps / max(1, math.ceil(steps / accumulation)), 2)
    if contact_sheet and batches:
        from .contact_sheet import write_contact_sheet

        title = (f"First {len(batches)} batches of epoch 1 (seed {ds.seed}, batch size {gbs}), "
                 "as the model sees them")
        trimmed = [refs[:REPORT_COLUMNS] for refs in batches]
        try:
            report["contact_sheet"] = str(write_contact_sheet(ds, trimmed, 0, contact_sheet,
                                                              title))
        except UserError as err:  # not one of the images shown could be decoded
            warnings.append(f"no contact sheet: {err.message}")
    return report


def run_debug_dataset(cfg) -> int:
    """`--debug_dataset`: print the report, write the contact sheet, load no model."""
    sheet = Path(cfg.output_dir).expanduser() / CONTACT_SHEET if cfg.output_dir else None
    report = dataset_report(cfg, contact_sheet=sheet)
    from .report_text import print_report

    print_report(report, cfg, sys.stdout)
    return 0 if report["ok"] else 2
