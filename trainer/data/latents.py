"""Latent cache: encode every image once with the VAE, in memory and optionally on disk.

Disk files live in a '.latent_cache' folder inside each image folder, one safetensors file per
image and training size. Their metadata holds the key: the image file's size and modification
time, its bucket, resize and crop, and the VAE identity. A file whose key differs, or that is
damaged, is encoded again and replaced (atomically); it is never trusted.

`encode(images)` is supplied by the training loop: images [N, 3, H, W] in [-1, 1] ->
latents [N, C, H/8, W/8], the VAE posterior *mean*, not yet multiplied by the scaling factor
(see trainer.train.latents.encode_images). With flip_aug the mirrored image is cached too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import atomic
from .imageinfo import DamagedImage
from .samples import Choices, render, to_tensor
from .words import count, verb

CACHE_FOLDER = ".latent_cache"
SHARING_FOLDER = ".latents-sharing"  # memory caches of several GPUs meet here, then it goes
FORMAT = "trainer-latents/1"


@dataclass
class Job:
    items: list[int]  # dataset items with this image and placement (usually one)
    file: Path | None
    key: dict[str, str]
    flip: bool
    bucket: tuple[int, int]
    tensors: dict = field(default_factory=dict)  # "latent", "latent_flipped"


def _digest(text: str, length: int = 10) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def cache_file(item, root: Path | None = None) -> Path:
    p = item.placement
    tag = f"{p.bucket[0]}x{p.bucket[1]}.{_digest(f'{p.resized}/{p.crop}', 8)}"
    if root is None:
        path = Path(item.path)
        return path.parent / CACHE_FOLDER / f"{path.name}.{tag}.safetensors"
    return root / f"{_digest(item.path, 16)}.{tag}.safetensors"


def cache_key(item, vae_id: str) -> dict[str, str]:
    p = item.placement
    return {
        "format": FORMAT, "image": Path(item.path).name,
        "image_bytes": str(item.header.file_size), "image_mtime_ns": str(item.header.mtime_ns),
        "size": f"{p.size[0]}x{p.size[1]}", "bucket": f"{p.bucket[0]}x{p.bucket[1]}",
        "resized": f"{p.resized[0]}x{p.resized[1]}", "crop": f"{p.crop[0]},{p.crop[1]}",
        "vae": vae_id,
    }


def plan_jobs(ds, vae_id: str, root: Path | None, on_disk: bool) -> list[Job]:
    jobs: dict[tuple, Job] = {}
    for index in ds.cached_items():
        item = ds.items[index]
        flip = ds.subsets[item.subset].augment.flip_aug
        ident = (item.path, item.placement)
        if ident in jobs:
            jobs[ident].items.append(index)
            jobs[ident].flip |= flip
            continue
        jobs[ident] = Job([index], cache_file(item, root) if on_disk else None,
                          cache_key(item, vae_id), flip, item.placement.bucket)
    return sorted(jobs.values(), key=lambda j: (j.bucket, ds.items[j.items[0]].path))


def read_cached(job: Job) -> str:
    """Fill job.tensors from its file; returns 'ok', 'missing', 'stale' or 'corrupt'."""
    if job.file is None or not job.file.is_file():
        return "missing"
    try:
        import torch
        from safetensors import safe_open

        with safe_open(str(job.file), framework="pt") as handle:
            meta = handle.metadata() or {}
            if any(meta.get(k) != v for k, v in job.key.items()):
                return "stale"
            names = ["latent", "latent_flipped"] if job.flip else ["latent"]
            if not set(names) <= set(handle.keys()):
                return "stale"
            tensors = {name: handle.get_tensor(name) for name in names}
        shape = (job.bucket[1] // 8, job.bucket[0] // 8)
        for tensor in tensors.values():
            if tensor.ndim != 3 or tuple(tensor.shape[1:]) != shape \
                    or not torch.isfinite(tensor).all():
                return "corrupt"
    except Exception:  # unreadable header or data: damaged file
        return "corrupt"
    job.tensors = tensors
    return "ok"


def write_cached(job: Job) -> None:
    from safetensors.torch import save_file

    assert job.file is not None, "only jobs of a disk cache are written"
    tensors = {k: v.contiguous() for k, v in job.tensors.items()}
    with atomic.atomic_path(job.file) as tmp:
        save_file(tensors, str(tmp), metadata=job.key)


def _chunks(jobs: list[Job], batch_size: int):
    """Consecutive jobs of one bucket, at most batch_size images (a flip counts as one)."""
    chunk: list[Job] = []
    images = 0
    for job in jobs:
        cost = 2 if job.flip else 1
        if chunk and (job.bucket != chunk[0].bucket or images + cost > batch_size):
            yield chunk
            chunk, images = [], 0
        chunk.append(job)
        images += cost
    if chunk:
        yield chunk


def encode_jobs(ds, jobs: list[Job], encode: Callable, batch_size: int, progress, write: bool,
                warn: Callable[[str], None]) -> list[Job]:
    """Encode `jobs` (and write their files when asked); returns the jobs whose image could not
    be decoded: they are skipped with a warning naming the file."""
    import torch

    done, total = 0, len(jobs)
    if progress:
        progress(0, total)
    write_failed = False
    damaged = []
    for chunk in _chunks(jobs, batch_size):
        images, encoded = [], []
        for job in chunk:
            item = ds.items[job.items[0]]
            try:
                picture = render(item, Choices(False, item.placement.crop, 0.0))
            except DamagedImage as err:
                for index in job.items:
                    ds.skip_damaged(index, err)
                damaged.append(job)
                continue
            image = to_tensor([picture])[0]
            images.append(image)
            encoded.append(job)
            if job.flip:
                images.append(torch.flip(image, dims=[-1]))
        done += len(chunk)
        if not encoded:
            if progress:
                progress(done, total)
            continue
        with torch.no_grad():
            latents = encode(torch.stack(images)).detach().to("cpu")
        row = 0
        for job in encoded:
            job.tensors = {"latent": latents[row].clone()}
            row += 1
            if job.flip:
                job.tensors["latent_flipped"] = latents[row].clone()
                row += 1
            if write and not write_failed:
                try:
                    write_cached(job)
                except OSError as err:
                    write_failed = True
                    warn(f"latent cache files cannot be written next to the images "
                         f"({job.file.parent}: {err.strerror or err}); latents stay in memory "
                         "for this run only")
        if progress:
            progress(done, total)
    return damaged


def cache_latents(ds, encode: Callable, vae_id: str, *, batch_size: int, to_disk: bool,
                  progress=None, rank: int = 0, world_size: int = 1, barrier=None) -> dict:
    """Fill ds's latent cache; returns counts {images, reused, encoded, stale, corrupt, damaged}."""
    share_root = None
    if not to_disk and world_size > 1 and ds.output_dir:
        share_root = Path(ds.output_dir) / SHARING_FOLDER
    on_disk = to_disk or share_root is not None
    jobs = plan_jobs(ds, vae_id, share_root, on_disk)
    states = [read_cached(job) if to_disk else "missing" for job in jobs]
    stats = {"images": len(jobs), "reused": states.count("ok"), "encoded": 0,
             "stale": states.count("stale"), "corrupt": states.count("corrupt")}
    if stats["corrupt"]:
        example = next(j.file for j, s in zip(jobs, states) if s == "corrupt")
        n = stats["corrupt"]
        ds.warn(f"{count(n, 'latent cache file')} {verb(n, 'was', 'were')} damaged and "
                f"{verb(n, 'is', 'are')} encoded again "
                f"(e.g. {example})")
    pending = [job for job, state in zip(jobs, states) if state != "ok"]
    sharing = on_disk and world_size > 1
    if not sharing:  # one process, or several without a shared folder: encode everything here
        damaged = encode_jobs(ds, pending, encode, batch_size, progress, to_disk, ds.warn)
        stats["encoded"] = len(pending) - len(damaged)
    else:
        damaged = _encode_shared(ds, pending, encode, batch_size, progress, rank, world_size,
                                 barrier, stats)
    if share_root is not None and barrier is not None:
        barrier()  # everyone has read the shared files
        if rank == 0:
            shutil.rmtree(share_root, ignore_errors=True)
    stats["damaged"] = len(damaged)
    ds.store_latents([job for job in jobs if job.tensors])
    if damaged:  # every process found the same ones, so their plans stay equal
        ds.forget(index for job in damaged for index in job.items)
    return stats


def _encode_shared(ds, pending, encode, batch_size, progress, rank, world_size, barrier, stats):
    """Each process encodes a disjoint share and writes it; then all read everyone's files."""
    if barrier is None:
        raise ValueError("cache_latents with world_size > 1 needs a barrier callable")
    barrier()  # every process has decided what is missing before anyone writes
    mine = pending[rank::world_size]
    damaged = encode_jobs(ds, mine, encode, batch_size, progress, True, ds.warn)
    stats["encoded"] = len(mine) - len(damaged)
    barrier()  # all shares are on disk
    others = [job for k, job in enumerate(pending) if k % world_size != rank]
    missing = [job for job in others if read_cached(job) != "ok"]
    if missing:  # another process could not write (read-only folder, damaged image): try here
        more = encode_jobs(ds, missing, encode, batch_size, None, False, ds.warn)
        stats["encoded"] += len(missing) - len(more)
        damaged += more
    return damaged


def vae_identity(vae, extra: str = "") -> str:
    """A short fingerprint of a VAE's config and weights (a strided sample of every tensor), so
    a different VAE never reuses cached latents. Add e.g. the dtype through `extra`."""
    import torch

    digest = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    digest.update(extra.encode())
    for name, tensor in sorted(vae.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 1024)
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(flat[::step][:1024].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]
