"""JSON-ready descriptions of a dataset: for events.jsonl, the report, and LoRA metadata."""

from __future__ import annotations

import json
from collections import Counter


def _size(size) -> str:
    return f"{size[0]}x{size[1]}"


def concept_rows(ds) -> list[dict]:
    images = Counter(item.subset for item in ds.items)
    samples: Counter = Counter()
    used: Counter = Counter()
    for index, uses in ds.uses.items():
        samples[ds.items[index].subset] += uses
        used[ds.items[index].subset] += uses > 0
    rows = []
    for index, subset in enumerate(ds.subsets):
        rows.append({
            "name": subset.name, "folder": subset.folder, "is_reg": subset.is_reg,
            "prompt": subset.prompt, "identifier": subset.identifier,
            "class": subset.class_name, "repeats": subset.repeats,
            "images": images[index], "captioned": subset.captioned,
            "images_used": used[index], "samples_per_epoch": samples[index],
        })
    return rows


def summarize(ds) -> dict:
    cfg = ds.cfg
    reg_images = sum(ds.is_reg)
    reg_used = sum(1 for n in ds.reg_uses.values() if n > 0)
    reg_samples = sum(ds.reg_uses.values())
    return {
        "source": "dataset_config" if cfg.dataset_config else "folders",
        "train_data_dir": None if cfg.dataset_config else cfg.train_data_dir,
        "reg_data_dir": None if cfg.dataset_config else cfg.reg_data_dir,
        "dataset_config": cfg.dataset_config,
        "sizes": [{"resolution": list(s.resolution), "enable_bucket": s.enable_bucket,
                   "min_bucket_reso": s.min_bucket_reso, "max_bucket_reso": s.max_bucket_reso,
                   "bucket_reso_steps": s.bucket_reso_steps,
                   "bucket_no_upscale": s.bucket_no_upscale} for s in ds.sizings],
        "concepts": concept_rows(ds),
        "train_images": len(ds.items) - reg_images,
        "train_samples": ds.train_samples,
        "reg_images": reg_images,
        "reg_samples": reg_samples,
        "reg_images_used": reg_used,
        "reg_images_unused": reg_images - reg_used,
        "reg_max_uses": max(ds.reg_uses.values(), default=0),
        "samples_per_epoch": len(ds),
        "buckets": {_size(b): n for b, n in ds.bucket_counts().items()},
        "mean_aspect_error": round(mean_aspect_error(ds), 4),
        "cropped_fraction": round(cropped_fraction(ds), 4),
        "fixed_captions": ds.fixed_captions(),
        "seed": ds.seed,
        "warnings": list(ds.warnings),
    }


def mean_aspect_error(ds) -> float:
    errors = [abs(i.placement.bucket[0] / i.placement.bucket[1] - i.header.width / i.header.height)
              for i in ds.items]
    return sum(errors) / len(errors) if errors else 0.0


def cropped_fraction(ds) -> float:
    """Share of the resized pixels cut away by cropping, over all distinct images."""
    total = sum(i.placement.resized[0] * i.placement.resized[1] for i in ds.items)
    kept = sum(i.placement.bucket[0] * i.placement.bucket[1] for i in ds.items)
    return 1.0 - kept / total if total else 0.0


def kohya_metadata(ds, global_batch_size: int) -> dict[str, str]:
    """The dataset part of the ss_* metadata that LoRA tools (and A1111) read."""
    dirs, reg_dirs = {}, {}
    for row in concept_rows(ds):
        target = reg_dirs if row["is_reg"] else dirs
        target[row["name"]] = {"n_repeats": row["repeats"], "img_count": row["images"]}
    buckets = {str(k): {"resolution": [b[0], b[1]], "count": n}
               for k, (b, n) in enumerate(ds.bucket_counts().items())}
    sizing = ds.sizings[0]
    cfg = ds.cfg
    values = {
        "ss_num_train_images": ds.train_samples,
        "ss_num_reg_images": sum(ds.reg_uses.values()),
        "ss_num_batches_per_epoch": ds.steps_per_epoch(global_batch_size),
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_reg_dataset_dirs": json.dumps(reg_dirs),
        "ss_tag_frequency": json.dumps(ds.tag_frequency()),
        "ss_bucket_info": json.dumps({"buckets": buckets,
                                      "mean_img_ar_error": mean_aspect_error(ds)}),
        "ss_resolution": f"({sizing.resolution[0]}, {sizing.resolution[1]})",
        "ss_enable_bucket": sizing.enable_bucket,
        "ss_min_bucket_reso": sizing.min_bucket_reso,
        "ss_max_bucket_reso": sizing.max_bucket_reso,
        "ss_bucket_no_upscale": sizing.bucket_no_upscale,
        "ss_flip_aug": bool(cfg.flip_aug), "ss_color_aug": bool(cfg.color_aug),
        "ss_random_crop": bool(cfg.random_crop), "ss_shuffle_caption": bool(cfg.shuffle_caption),
        "ss_keep_tokens": cfg.keep_tokens, "ss_caption_dropout_rate": cfg.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": cfg.caption_dropout_every_n_epochs,
        "ss_caption_tag_dropout_rate": cfg.caption_tag_dropout_rate,
        "ss_prior_loss_weight": cfg.prior_loss_weight,
    }
    return {k: v if isinstance(v, str) else str(v) for k, v in values.items()}
