"""The dataset the training loop uses: index, epoch plans, batches, latent cache, summary."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable

from ..errors import UserError
from .buckets import Bucketer, Sizing, bucket_sizes, cover
from .captions import process_caption, tags
from .concepts import Item, Subset
from .dataset_toml import load_dataset_toml
from .folders import folder_subsets
from .imageinfo import DamagedImage
from .index import index_subsets
from .plan import EpochPlan, EpochPlanner, SampleRef, balance_reg, rank_slice, sample_rng
from .samples import choices, render, to_tensor
from .size_facts import SizeFacts, size_facts


class DatasetError(UserError):
    """Nothing usable in the dataset (the warnings before it say why). A kind of its own only
    because the CLI prints the collected warnings before this error, and not before others."""


def _sizing_from_cfg(cfg) -> Sizing:
    from ..config import parse_resolution

    try:
        resolution = parse_resolution(cfg.resolution)
    except ValueError as err:
        raise UserError(f"--resolution: {err}") from None
    return Sizing(resolution, cfg.enable_bucket, cfg.min_bucket_reso, cfg.max_bucket_reso,
                  cfg.bucket_reso_steps, cfg.bucket_no_upscale)


def _check_sizing(sizing: Sizing, where: str) -> None:
    from ..config.validate import resolution_problem

    width, height = sizing.resolution
    problem = resolution_problem(width, height)
    if problem:
        raise UserError(f"{where}: resolution {width},{height} {problem}")
    if sizing.enable_bucket and not sizing.bucket_no_upscale and not bucket_sizes(sizing):
        raise UserError(f"{where}: no bucket fits between min_bucket_reso "
                        f"{sizing.min_bucket_reso} and max_bucket_reso {sizing.max_bucket_reso} "
                        f"with the area of {width}x{height}",
                        "lower min_bucket_reso or raise the resolution")


def build_dataset(cfg, warn: Callable[[str], None] = print) -> "Dataset":
    """Index train_data_dir/reg_data_dir (or dataset_config). Problems go to warn(), one line
    each; raises DatasetError when no usable training image remains."""
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    if cfg.dataset_config:
        if cfg.train_data_dir or cfg.reg_data_dir:
            note("dataset_config is set, so train_data_dir and reg_data_dir are ignored")
        sizings, subsets = load_dataset_toml(cfg.dataset_config, cfg, note)
        where = f"dataset_config {cfg.dataset_config}"
    else:
        sizings, subsets = [_sizing_from_cfg(cfg)], folder_subsets(cfg, note)
        where = "--resolution"
    for sizing in sizings:
        _check_sizing(sizing, where)
    wanted_reg = any(s.is_reg for s in subsets)
    subsets, items = index_subsets(subsets, [Bucketer(s) for s in sizings], note)
    if not any(not subsets[item.subset].is_reg for item in items):
        if cfg.dataset_config:
            raise DatasetError(f"no usable training images in {cfg.dataset_config}",
                               "see the problems listed above; each subset's image_dir must be "
                               "a folder of png, jpg, webp or bmp files")
        raise DatasetError(f"no usable training images in {cfg.train_data_dir}",
                           "see the problems listed above; image folders are named "
                           "'<repeats>_<identifier> <class>' and hold png, jpg, webp or bmp files")
    if wanted_reg and not any(s.is_reg for s in subsets):
        note("no usable regularization images; training runs without them")
    return Dataset(cfg, sizings, subsets, items, warnings, note)


class Dataset:
    def __init__(self, cfg, sizings: list[Sizing], subsets: list[Subset], items: list[Item],
                 warnings: list[str], warn: Callable[[str], None]):
        self.cfg, self.sizings, self.subsets, self.items = cfg, sizings, subsets, items
        self.warnings, self.warn = warnings, warn
        self.seed = cfg.seed if cfg.seed is not None else 0
        self.prior_loss_weight = cfg.prior_loss_weight
        self.output_dir = cfg.output_dir
        self.is_reg = [subsets[item.subset].is_reg for item in items]
        self.broken: set[int] = set()  # items whose pixels turned out undecodable
        self._broken_lock = threading.Lock()
        self.latents: dict[tuple[int, bool], object] = {}
        self._plan()

    def _plan(self) -> None:
        """Samples per epoch of each usable item, and the planner over them."""
        items, subsets, is_reg = self.items, self.subsets, self.is_reg
        usable = [i for i in range(len(items)) if i not in self.broken]
        self.train_samples = sum(subsets[items[i].subset].repeats for i in usable if not is_reg[i])
        reg_order = [(i, subsets[items[i].subset].repeats) for i in usable if is_reg[i]]
        self.reg_uses = balance_reg(self.train_samples, reg_order)
        self.uses = {i: subsets[items[i].subset].repeats for i in usable if not is_reg[i]}
        self.uses.update(self.reg_uses)
        self.planner = EpochPlanner([item.placement.bucket for item in items], is_reg,
                                    self.uses, self.seed)

    def forget(self, indices: Iterable[int]) -> None:
        """Leave damaged images out of every epoch planned from now on (used once the latent
        cache has found them, before the schedule is computed)."""
        self.broken.update(indices)
        self._plan()
        if not self.train_samples:
            raise DatasetError("no training image could be decoded",
                               "replace the damaged files named above")

    # ---- plans -----------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, global_batch_size: int,
                      world_size: int = 1) -> EpochPlan:
        """The whole epoch (0-based) as batches of one bucket each, in training order: a
        sequence whose batches are computed when indexed (memory does not grow with repeats).

        With world_size > 1, an incomplete batch is topped up (with repeats of its own samples)
        so each process gets an equal share: use rank_slice(batch, rank, world_size).
        """
        return self.planner.batches(epoch, global_batch_size, world_size)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return self.planner.steps(global_batch_size)

    rank_slice = staticmethod(rank_slice)

    def cached_items(self) -> list[int]:
        """Items that appear in epochs (unused regularization images are never loaded)."""
        return sorted(i for i, n in self.uses.items() if n > 0)

    def fixed_captions(self) -> bool:
        return all(s.captions.fixed for s in self.subsets)

    # ---- batches ---------------------------------------------------------------------------
    def load_batch(self, refs: list[SampleRef], epoch: int) -> dict:
        """One batch (all refs of one bucket), as a dict:

        images        float32 [B, 3, H, W] in [-1, 1]  (absent once latents are cached)
        latents       float32 [B, C, H/8, W/8]: the VAE posterior mean, not yet multiplied
                      by the VAE scaling factor (present once
                      trainer.data.latents.cache_latents filled the cache)
        captions      list[str] after caption dropout, shuffling and tag dropout
        time_ids      int64 [B, 6]: SDXL's size conditioning of each sample (see size_facts)
        loss_weights  float32 [B]: 1.0, or prior_loss_weight for regularization samples
        is_reg, paths lists of bool / str

        Flip, crop, hue and caption randomness come from (seed, epoch, ref.pos) only.
        """
        import torch

        images = None
        if not self.latents:
            refs, images = self.render_samples(refs, epoch)
        captions, picks = self.sample_choices(refs, epoch)
        batch = {
            "captions": captions,
            "loss_weights": torch.tensor([self.prior_loss_weight if self.is_reg[r.item] else 1.0
                                          for r in refs], dtype=torch.float32),
            "is_reg": [self.is_reg[r.item] for r in refs],
            "paths": [self.items[r.item].path for r in refs],
            "time_ids": torch.tensor([self.size_facts(r, p.flip).time_ids()
                                      for r, p in zip(refs, picks)], dtype=torch.int64),
        }
        if self.latents:
            batch["latents"] = torch.stack([self._latent(r.item, p.flip) for r, p in
                                            zip(refs, picks)]).float()
        else:
            batch["images"] = to_tensor(images)
        return batch

    def sample_item(self, ref: SampleRef) -> Item:
        """The item of a sample, placed in the sample's bucket (a stand-in for a damaged image
        may come from another bucket)."""
        item = self.items[ref.item]
        if item.placement.bucket == ref.bucket:
            return item
        return replace(item, placement=cover((item.header.width, item.header.height), ref.bucket))

    def size_facts(self, ref: SampleRef, flip: bool) -> SizeFacts:
        """Original size, crop offset and bucket of a sample, as SDXL is conditioned on them."""
        placement = self.sample_item(ref).placement
        return size_facts(placement.size, placement.bucket, flip)

    def render_samples(self, refs: list[SampleRef], epoch: int) -> tuple[list[SampleRef], list]:
        """The training pictures of `refs`, and the refs they show: an image that cannot be
        decoded is skipped with a warning, and another image stands in for it."""
        shown, images = [], []
        for ref in refs:
            while True:
                if ref.item in self.broken:
                    ref = self._stand_in(ref)
                item = self.sample_item(ref)
                pick = choices(item, self.subsets[item.subset], ref, self.seed, epoch)
                try:
                    images.append(render(item, pick))
                    break
                except DamagedImage as err:
                    self.skip_damaged(ref.item, err)
            shown.append(ref)
        return shown, images

    def skip_damaged(self, index: int, err: DamagedImage) -> None:
        with self._broken_lock:
            if index in self.broken:
                return
            self.broken.add(index)
        self.warn(f"{err.message}; it is skipped for the rest of the run")

    def _stand_in(self, ref: SampleRef) -> SampleRef:
        """A decodable image for a damaged one's sample: of the same bucket and kind when there
        is one, chosen by the sample's position so reruns pick the same."""
        usable = [i for i, n in self.uses.items() if n > 0 and i not in self.broken]
        if not usable:
            raise DatasetError("no image of the dataset can be decoded",
                               "replace the damaged files named above")

        def distance(i: int) -> tuple[bool, bool]:
            return self.items[i].placement.bucket != ref.bucket, self.is_reg[i] != ref.is_reg

        nearest = min(distance(i) for i in usable)
        closest = sorted(i for i in usable if distance(i) == nearest)
        chosen = closest[ref.pos % len(closest)]
        return SampleRef(chosen, ref.pos, self.is_reg[chosen], ref.bucket)

    def sample_choices(self, refs: list[SampleRef], epoch: int) -> tuple[list[str], list]:
        """Each sample's caption as used and its random choices (flip, crop, hue)."""
        captions, picks = [], []
        for ref in refs:
            item = self.sample_item(ref)
            subset = self.subsets[item.subset]
            picks.append(choices(item, subset, ref, self.seed, epoch))
            rng = sample_rng(self.seed, epoch, ref.pos, "caption")
            captions.append(process_caption(item.caption, subset.captions, epoch, rng))
        return captions, picks

    # ---- latent cache (filled by trainer.data.latents.cache_latents) ----------------------
    def store_latents(self, jobs) -> None:
        for job in jobs:
            for index in job.items:
                self.latents[(index, False)] = job.tensors["latent"]
                if "latent_flipped" in job.tensors:
                    self.latents[(index, True)] = job.tensors["latent_flipped"]

    def _latent(self, item: int, flip: bool):
        key = (item, flip)
        if key not in self.latents:
            raise RuntimeError(f"no cached latent for {self.items[item].path} (flip={flip})")
        return self.latents[key]

    # ---- summaries -------------------------------------------------------------------------
    def bucket_counts(self) -> dict[tuple[int, int], int]:
        return self.planner.bucket_counts()

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """{folder name: {tag: images whose caption has it}}, as ss_tag_frequency."""
        result: dict[str, dict[str, int]] = {}
        for index, subset in enumerate(self.subsets):
            counts: Counter = Counter()
            for item in self.items:
                if item.subset == index:
                    counts.update(set(tags(item.caption)))
            result[self._unique_name(subset, index, result)] = dict(counts.most_common())
        return result

    def _unique_name(self, subset: Subset, index: int, taken: dict) -> str:
        name, n = subset.name, 2
        while name in taken:
            name, n = f"{subset.name} ({n})", n + 1
        return name

    def summary(self) -> dict:
        from .summary import summarize

        return summarize(self)

    def lora_facts(self, global_batch_size: int):
        """The DatasetFacts a LoRA file's metadata reports."""
        from .summary import dataset_facts

        return dataset_facts(self, global_batch_size)

    def __len__(self) -> int:
        return self.planner.samples_per_epoch

    def __repr__(self) -> str:
        return f"Dataset({len(self.items)} images, {len(self)} samples per epoch)"

