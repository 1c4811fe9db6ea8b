"""LoRA networks in kohya format: build, inject, train, save, load, merge, resize.

SD 1.x/2.x (one text encoder, `lora_te_…`) and SDXL (two, `lora_te1_…` / `lora_te2_…`, U-Net
layers under their original SGM names); `text_encoders` is a list of the model's encoders (a
single encoder module is accepted too).

Public API (imported lazily, so `import trainer.networks` does not load torch):
    create_network(unet, text_encoders, *, dim, alpha, conv_dim=None, conv_alpha=None,
                   dropout=None, rank_dropout=None, module_dropout=None,
                   loraplus_lr_ratio=None, train_unet=True, train_text_encoder=True)
    create_network_from_weights(unet, text_encoders, path_or_state_dict, ...) -> (net, report)
    create_network_for_config(cfg, unet, text_encoders) -> NetworkSetup(network, notes, args)
    LoRANetwork: apply(), remove(), set_multiplier(m), param_groups(unet_lr, te_lr, lr),
                 trainable_parameters(), state_dict_kohya(), load_weights(src, strict=True),
                 save(path, dtype=None, metadata=None)
    read_network_file(path) -> (state_dict, metadata); layer_shapes(state_dict)
    file_family(state_dict) -> "sd1" | "sd2" | "sdxl" | "sd" | None
    build_metadata(cfg, network, ...), for_save(metadata, steps=, epoch=)
    merge_into(unet, text_encoders, state_dict, multiplier)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "create_network": "create", "create_network_from_weights": "create",
    "create_network_for_config": "create", "NetworkSetup": "create", "network_args": "create",
    "LoRANetwork": "network", "LoadReport": "network", "NetworkSettings": "network",
    "LoRAModule": "module",
    "read_network_file": "files", "save_network_file": "files", "layer_shapes": "files",
    "file_is_v2": "files", "file_family": "files",
    "build_metadata": "metadata", "for_save": "metadata",
    "merge_into": "merge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
