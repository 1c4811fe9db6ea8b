"""`python -m trainer lora-info FILE`: what a LoRA file holds (layers, ranks, alphas, metadata)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

# Metadata values that are JSON documents; summarized in the text view.
_JSON_KEYS = ("ss_tag_frequency", "ss_dataset_dirs", "ss_reg_dataset_dirs", "ss_bucket_info",
              "ss_datasets", "ss_network_args")


def describe_file(path: str) -> dict:
    """Everything lora-info shows, as plain data (also for the GUI)."""
    from .files import file_family, layer_shapes, read_network_file
    from .targets import encoder_of, part_of

    state_dict, metadata = read_network_file(path)
    layers = []
    for name, (rank, alpha) in layer_shapes(state_dict).items():
        down = state_dict[f"{name}.lora_down.weight"]
        kind = "linear" if down.dim() == 2 else \
            ("conv1x1" if tuple(down.shape[2:]) == (1, 1) else "conv3x3")
        layers.append({"name": name, "part": part_of(name), "encoder": encoder_of(name),
                       "kind": kind, "rank": rank, "alpha": alpha})
    dtypes = Counter(str(v.dtype).replace("torch.", "") for v in state_dict.values())
    return {
        "file": str(path),
        "size_bytes": Path(path).stat().st_size,
        "dtype": dtypes.most_common(1)[0][0],
        "base_model": _base_model(file_family(state_dict), metadata),
        "parameters": sum(v.numel() for k, v in state_dict.items() if not k.endswith(".alpha")),
        "layers": layers,
        "metadata": metadata,
    }


# base_model values: the names of ss_base_model_version, "unknown" when the file does not tell.
_BASE_TITLES = {"sd_v1": "Stable Diffusion 1.x", "sd_v2": "Stable Diffusion 2.x",
                "sdxl": "Stable Diffusion XL"}


def _base_model(family: str | None, metadata: dict) -> str:
    """sd_v1 / sd_v2 / sdxl from the layers; where they cannot tell, from the metadata."""
    known = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl"}
    if family in known:
        return known[family]
    if metadata.get("ss_base_model_version", "").startswith("sdxl"):
        return "sdxl" if family is None else "unknown"  # "sd": a lora_te_ file is no SDXL one
    if metadata.get("ss_v2") in ("True", "False"):
        return "sd_v2" if metadata["ss_v2"] == "True" else "sd_v1"
    return "unknown"


def _summary_lines(info: dict) -> list[str]:
    layers = info["layers"]
    parts = Counter(layer["part"] for layer in layers)
    encoders = Counter(layer.get("encoder") for layer in layers)
    kinds = Counter(layer["kind"] for layer in layers)
    base = _BASE_TITLES.get(info["base_model"], "unknown")
    if encoders.get("te1") or encoders.get("te2"):
        text = (f"text encoder 1 (CLIP-L) {encoders.get('te1', 0)}, "
                f"text encoder 2 (OpenCLIP bigG) {encoders.get('te2', 0)}")
    else:
        text = f"text encoder {parts.get('text_encoder', 0)}"
    lines = [
        f"file:        {info['file']} ({info['size_bytes'] / 1e6:.1f} MB, {info['dtype']})",
        f"base model:  {base}",
        f"layers:      {len(layers)} (U-Net {parts.get('unet', 0)}, {text}; "
        f"3x3 convolutions {kinds.get('conv3x3', 0)})",
    ]
    for label, group in (("rank/alpha:", [l for l in layers if l["kind"] != "conv3x3"]),
                         ("conv:", [l for l in layers if l["kind"] == "conv3x3"])):
        if group:
            pairs = Counter((l["rank"], l["alpha"]) for l in group)
            text = ", ".join(f"rank {r} alpha {a:g} (scale {a / r:.3g}) ×{n}"
                             for (r, a), n in pairs.most_common())
            lines.append(f"{label:<12} {text}")
    lines.append(f"parameters:  {info['parameters']:,}")
    return lines


def _metadata_lines(metadata: dict) -> list[str]:
    if not metadata:
        return ["metadata:    none"]
    lines = [f"metadata:    {len(metadata)} keys"]
    for key in sorted(metadata):
        value = metadata[key]
        if key in _JSON_KEYS:
            value = _summarize_json(key, value)
        elif len(value) > 200:
            value = value[:200] + "…"
        lines.append(f"  {key}: {value}")
    return lines


def _summarize_json(key: str, text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    if key == "ss_tag_frequency" and isinstance(data, dict):
        tags: Counter[str] = Counter()
        for folder in data.values():
            if isinstance(folder, dict):
                tags.update({t: int(n) for t, n in folder.items() if isinstance(n, (int, float))})
        top = ", ".join(f"{tag} ({n})" for tag, n in tags.most_common(10))
        counts = f"{_plural(len(data), 'folder')}, {_plural(len(tags), 'tag')}"
        return counts + (f"; top: {top}" if top else "")
    compact = json.dumps(data, ensure_ascii=False)
    return compact if len(compact) <= 200 else compact[:200] + "…"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer lora-info",
                                     description="Show the layers, ranks, alphas and metadata "
                                                 "of a LoRA file.")
    parser.add_argument("file", help="the LoRA file (.safetensors, .ckpt, .pt)")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--layers", action="store_true", help="list every layer")
    args = parser.parse_args(argv)
    info = describe_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    lines = _summary_lines(info)
    if args.layers:
        lines += [f"  {l['name']}  {l['kind']} rank {l['rank']} alpha {l['alpha']:g}"
                  for l in info["layers"]]
    print("\n".join(lines + _metadata_lines(info["metadata"])))
    return 0
