"""Several LoRA files into one LoRA file.

Concatenation is exact: each layer's update Σ wᵢ·(αᵢ/rᵢ)·upᵢ·downᵢ is one product of the
stacked factors, with rank Σ rᵢ and alpha equal to that rank. An SVD merge then lowers the rank
of that exact sum to the rank asked for (the resize's method), keeping the largest directions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

from ..errors import UserError


@dataclass(frozen=True)
class Source:
    label: str  # the file name, for messages and metadata
    tensors: Mapping  # kohya-format state dict
    metadata: Mapping[str, str]
    weight: float


def _layers(source: Source) -> dict[str, tuple]:
    from .files import layer_shapes

    return {name: (source.tensors[f"{name}.lora_up.weight"].float(),
                   source.tensors[f"{name}.lora_down.weight"].float(), rank, alpha)
            for name, (rank, alpha) in layer_shapes(source.tensors).items()}


def check_same_family(sources: list[Source]) -> None:
    from .files import families_clash, family_title, file_family

    families = {s.label: file_family(s.tensors) for s in sources}
    known = list(families.values())
    if any(families_clash(a, b) for a in known for b in known):
        listing = ", ".join(f"{label} ({family_title(f)})" for label, f in families.items())
        raise UserError(f"the LoRA files belong to different base models: {listing}",
                        "merge only LoRAs of one Stable Diffusion version")


def concat_loras(sources: list[Source]) -> dict:
    """One kohya state dict whose every layer applies the weighted sum of the sources' updates."""
    import torch

    check_same_family(sources)
    stacks: dict[str, list] = {}
    for source in sources:
        for name, (up, down, rank, alpha) in _layers(source).items():
            stacks.setdefault(name, []).append((source.label, up * (source.weight * alpha / rank),
                                                down))
    merged = {}
    for name, parts in stacks.items():
        shapes = {(up.shape[0], *down.shape[1:]) for _, up, down in parts}
        if len(shapes) > 1:
            raise UserError(f"layer {name} has different shapes in {parts[0][0]} and "
                            f"{parts[-1][0]}", "merge only LoRAs of one base model")
        up = torch.cat([p[1] for p in parts], dim=1)
        down = torch.cat([p[2] for p in parts], dim=0)
        merged[f"{name}.lora_up.weight"] = up.contiguous()
        merged[f"{name}.lora_down.weight"] = down.contiguous()
        merged[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))
    return merged


def merged_metadata(sources: list[Source], merged: Mapping) -> dict[str, str]:
    """The first source's description, the union of the sources' datasets and tags, the merged
    ranks, and what was merged with which weight."""
    meta = {k: v for k, v in sources[0].metadata.items() if not k.startswith("sshs_")}
    for key in ("ss_tag_frequency", "ss_dataset_dirs"):
        union: dict = {}
        for source in sources:
            try:
                union.update(json.loads(source.metadata.get(key) or "{}"))
            except (ValueError, TypeError):
                continue
        if union:
            meta[key] = json.dumps(union)
    ranks, conv_ranks = _ranks(merged)
    meta["ss_network_dim"] = meta["ss_network_alpha"] = str(max(ranks or conv_ranks))
    args = {}
    if conv_ranks:  # tools detect LoCon from these two
        args = {"conv_dim": str(max(conv_ranks)), "conv_alpha": str(max(conv_ranks))}
    meta["ss_network_args"] = json.dumps(args)
    meta["ss_merged_from"] = json.dumps([
        {"file": s.label, "weight": s.weight,
         "ss_network_dim": s.metadata.get("ss_network_dim"),
         "ss_network_alpha": s.metadata.get("ss_network_alpha"),
         "sshs_model_hash": s.metadata.get("sshs_model_hash")} for s in sources])
    return meta


def _ranks(tensors: Mapping) -> tuple[list[int], list[int]]:
    """Ranks of the linear / 1x1 layers and of the 3x3 convolutions."""
    ranks: list[int] = []
    conv_ranks: list[int] = []
    for key, down in tensors.items():
        if key.endswith(".lora_down.weight"):
            spatial = down.dim() == 4 and tuple(down.shape[2:]) != (1, 1)
            (conv_ranks if spatial else ranks).append(int(down.shape[0]))
    return ranks, conv_ranks
