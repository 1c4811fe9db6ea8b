"""cache_text_encoder_outputs: every caption encoded once before training, kept in memory and
(with _to_disk) in a file beside its image that later runs reuse.

A disk file's metadata is its key: the caption, the text encoders' fingerprint, the token
settings and the dtype. A file whose key differs, or that cannot be read, is encoded again and
replaced atomically; it is never trusted.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from ..errors import UserError

FORMAT = "trainer-text/1"
SUFFIX = ".te_outputs.safetensors"


def wanted(cfg) -> bool:
    return bool(cfg.cache_text_encoder_outputs or cfg.cache_text_encoder_outputs_to_disk)


def check_cacheable(cfg, target, dataset) -> None:
    """Refuse in one line what would make cached outputs wrong."""
    flag = ("--cache_text_encoder_outputs_to_disk" if cfg.cache_text_encoder_outputs_to_disk
            else "--cache_text_encoder_outputs")
    if target.trains_text_encoder(0):
        raise UserError(f"{flag} needs frozen text encoders, but this run trains them",
                        "set --stop_text_encoder_training=0 (a LoRA: --network_train_unet_only) "
                        "or drop the caching option")
    if not dataset.fixed_captions() or cfg.no_token_padding:
        raise UserError(f"{flag} needs captions that never change, but shuffle_caption, "
                        "caption dropout, tag dropout or no_token_padding is set",
                        "turn those off or drop the caching option")


def park_encoders(encoders) -> None:
    """Frozen encoders whose outputs are all cached leave the GPU (SDXL's take 1.6 GB in
    fp16); sampling brings them back for its prompts."""
    import torch

    for encoder in encoders:
        encoder.to("cpu")
    torch.cuda.empty_cache()


def encoders_identity(encoders, extra: str) -> str:
    """A short fingerprint of the text encoders' weights (a strided sample of every tensor)."""
    import torch

    digest = hashlib.sha256(extra.encode())
    for encoder in encoders:
        for name, tensor in sorted(encoder.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 1024)
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(flat[::step][:1024].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_file(image_path: str) -> Path:
    path = Path(image_path)
    return path.with_name(path.name + SUFFIX)


def fill_text_cache(conditioning, dataset, cfg, *, write: bool, batch_size: int = 8) -> dict:
    """Put every used caption's outputs in the conditioning's cache; returns counts
    {"encoded": n, "reused": n}."""
    import torch

    from ..data.captions import process_caption

    settings, family = conditioning.settings, conditioning.family
    encoders = conditioning.target.forward_text_encoders()
    device = next(encoders[0].parameters()).device
    identity = encoders_identity(
        encoders, f"{family.name}/{settings}/{conditioning.precision.compute_dtype}")
    captions: dict[str, list[str]] = {}  # caption -> image paths that use it
    for index in dataset.cached_items():
        item = dataset.items[index]
        rules = dataset.subsets[item.subset].captions
        caption = process_caption(item.caption, rules, 0, random.Random(0))  # fixed: no draw
        captions.setdefault(caption, []).append(item.path)
    counts = {"encoded": 0, "reused": 0}
    missing = []
    for caption, paths in captions.items():
        key = {"format": FORMAT, "caption": caption, "encoders": identity}
        found = _read(cache_file(paths[0]), key) if cfg.cache_text_encoder_outputs_to_disk \
            else None
        if found is None:
            missing.append(caption)
            continue
        conditioning.store(caption, found[0].to(device), _to(found[1], device))
        counts["reused"] += 1
    with torch.no_grad():
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            text = conditioning.encode_frozen(chunk)
            for row, caption in enumerate(chunk):
                pooled = text.pooled[row] if text.pooled is not None else None
                conditioning.store(caption, text.hidden[row], pooled)
                counts["encoded"] += 1
                if cfg.cache_text_encoder_outputs_to_disk and write:
                    key = {"format": FORMAT, "caption": caption, "encoders": identity}
                    for path in captions[caption]:
                        _write(cache_file(path), key, text.hidden[row], pooled)
    return counts


def _to(tensor, device):
    return None if tensor is None else tensor.to(device)


def _read(file: Path, key: dict):
    """(hidden, pooled or None), or None when the file is missing, stale or unreadable."""
    if not file.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            meta = handle.metadata() or {}
            if any(meta.get(k) != v for k, v in key.items()):
                return None
            names = set(handle.keys())
            hidden = handle.get_tensor("hidden")
            pooled = handle.get_tensor("pooled") if "pooled" in names else None
        return hidden, pooled
    except Exception:  # a damaged file is encoded again
        return None


def _write(file: Path, key: dict, hidden, pooled) -> None:
    from safetensors.torch import save_file

    from .. import atomic

    tensors = {"hidden": hidden.detach().cpu().contiguous()}
    if pooled is not None:
        tensors["pooled"] = pooled.detach().cpu().contiguous()
    with atomic.atomic_path(file) as tmp:
        save_file(tensors, str(tmp), metadata=key)
