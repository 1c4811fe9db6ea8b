"""JSON-ready descriptions of a dataset: for events.jsonl, the report, and LoRA metadata."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class DatasetFacts:
    """What a LoRA file's metadata says about the dataset it was trained on. Only the facts:
    trainer.networks.metadata turns them into ss_* keys, and owns every key."""

    resolution: tuple[int, int]  # (width, height) of the (first) dataset
    enable_bucket: bool = False
    min_bucket_reso: int | None = None
    max_bucket_reso: int | None = None
    bucket_no_upscale: bool = False
    num_train_images: int = 0  # training samples per epoch (images x repeats)
    num_reg_images: int = 0
    num_batches_per_epoch: int = 0
    dataset_dirs: dict = field(default_factory=dict)  # {folder: {"n_repeats", "img_count"}}
    reg_dataset_dirs: dict = field(default_factory=dict)
    tag_frequency: dict = field(default_factory=dict)  # {folder: {tag: count}}
    bucket_info: dict | None = None


def dataset_facts(ds, global_batch_size: int) -> DatasetFacts:
    """The dataset part of the metadata that LoRA tools (and A1111) read."""
    dirs: dict[str, dict] = {}
    reg_dirs: dict[str, dict] = {}
    for row in concept_rows(ds):
        target = reg_dirs if row["is_reg"] else dirs
        target[row["name"]] = {"n_repeats": row["repeats"], "img_count": row["images"]}
    buckets = {str(k): {"resolution": [b[0], b[1]], "count": n}
               for k, (b, n) in enumerate(ds.bucket_counts().items())}
    sizing = ds.sizings[0]
    return DatasetFacts(
        resolution=(sizing.resolution[0], sizing.resolution[1]),
        enable_bucket=sizing.enable_bucket, min_bucket_reso=sizing.min_bucket_reso,
        max_bucket_reso=sizing.max_bucket_reso, bucket_no_upscale=sizing.bucket_no_upscale,
        num_train_images=ds.train_samples, num_reg_images=sum(ds.reg_uses.values()),
        num_batches_per_epoch=ds.steps_per_epoch(global_batch_size),
        dataset_dirs=dirs, reg_dataset_dirs=reg_dirs, tag_frequency=ds.tag_frequency(),
        bucket_info={"buckets": buckets, "mean_img_ar_error": mean_aspect_error(ds)},
    )
