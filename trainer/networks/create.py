"""Building LoRA networks: from options, from the layer shapes of a file, or from a config.

`text_encoders` is the model's list of text encoders: one for SD 1.x/2.x (`lora_te_…` layers),
two for SDXL (`lora_te1_…`, `lora_te2_…`). A single encoder module is accepted as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import UserError
from . import targets as T
from .module import LoRAModule
from .network import LoRANetwork, LoadReport, NetworkSettings


def encoder_list(text_encoders) -> list:
    """The text encoders as a list (None: none; one module: a list of it)."""
    if text_encoders is None:
        return []
    if isinstance(text_encoders, (list, tuple)):
        return [encoder for encoder in text_encoders if encoder is not None]
    return [text_encoders]


def base_is_v2(unet=None, text_encoder=None) -> bool | None:
    """SD 2.x has linear proj_in layers and a 1024-wide text encoder; SD 1.x neither."""
    if unet is not None:
        for name, module in unet.named_modules():
            if name.endswith("proj_in"):
                return not hasattr(module, "kernel_size")
    if text_encoder is not None:
        return text_encoder.config.hidden_size == 1024 or text_encoder.config.num_hidden_layers > 12
    return None


def model_family(unet=None, text_encoders=None) -> str | None:
    """'sdxl', 'sd2', 'sd1', or None when neither part is given."""
    encoders = encoder_list(text_encoders)
    if len(encoders) > 1 or (unet is not None and T.is_xl_unet(unet)):
        return "sdxl"
    v2 = base_is_v2(unet, encoders[0] if encoders else None)
    return None if v2 is None else ("sd2" if v2 else "sd1")


def create_network(unet, text_encoders, *, dim: int, alpha: float, conv_dim: int | None = None,
                   conv_alpha: float | None = None, dropout: float | None = None,
                   rank_dropout: float | None = None, module_dropout: float | None = None,
                   loraplus_lr_ratio: float | None = None, train_unet: bool = True,
                   train_text_encoder: bool = True) -> LoRANetwork:
    """A fresh network (lora_up zero, so the model is unchanged until trained).

    Targets: the U-Net's attention blocks (to_q/k/v/out.0 of attn1/attn2, ff.net.0.proj,
    ff.net.2, proj_in/proj_out) and each text encoder's q/k/v/out_proj and fc1/fc2. With
    `conv_dim`, also every layer of the ResNet blocks and down/upsamplers (LoCon): the 3x3
    convolutions at conv_dim/conv_alpha, their linear and 1x1 companions at dim/alpha.
    """
    if conv_dim is not None and conv_alpha is None:
        conv_alpha = 1.0
    settings = NetworkSettings(dim, alpha, conv_dim, conv_alpha, dropout, rank_dropout,
                               module_dropout, loraplus_lr_ratio)
    drops = dict(dropout=dropout, rank_dropout=rank_dropout, module_dropout=module_dropout)
    layers = []
    targets = _targets(unet, text_encoders, train_unet, train_text_encoder,
                       with_conv=conv_dim is not None)
    for target in targets:
        # 3x3 convolutions are targets only when conv_dim is set
        rank, scale_alpha = (conv_dim, conv_alpha) if target.is_conv3x3 and conv_dim is not None \
            else (dim, alpha)
        layers.append(LoRAModule(target.lora_name, target.module, rank, scale_alpha, **drops))
    return LoRANetwork(layers, settings, family=model_family(unet, text_encoders),
                       aliases=_aliases(targets))


def create_network_from_weights(unet, text_encoders, weights: str | os.PathLike | Mapping, *,
                                dropout: float | None = None, rank_dropout: float | None = None,
                                module_dropout: float | None = None,
                                loraplus_lr_ratio: float | None = None, train_unet: bool = True,
                                train_text_encoder: bool = True,
                                label: str | None = None) -> tuple[LoRANetwork, LoadReport]:
    """A network shaped like a LoRA file (its layers, ranks and alphas), with its weights loaded.

    This is `dim_from_weights`, and what merging and resizing use.
    """
    from .files import check_compatible, layer_shapes, read_network_file

    if isinstance(weights, Mapping):
        state_dict, label = dict(weights), label or "the given weights"
    else:
        state_dict, _ = read_network_file(weights)
        label = label or os.path.basename(os.fspath(weights))
    family = model_family(unet, text_encoders)
    check_compatible(state_dict, None, label, base_family=family)
    targets = _targets(unet, text_encoders, train_unet, train_text_encoder, with_conv=True)
    aliases = _aliases(targets)
    state_dict = T.rename_aliases(state_dict, aliases)
    shapes = layer_shapes(state_dict)
    drops = dict(dropout=dropout, rank_dropout=rank_dropout, module_dropout=module_dropout)
    layers = []
    for target in targets:
        if target.lora_name in shapes:
            rank, alpha = shapes[target.lora_name]
            layers.append(LoRAModule(target.lora_name, target.module, rank, alpha, **drops))
    if not layers:
        parts = " and ".join(p for p, on in (("U-Net", train_unet),
                                             ("text encoder", train_text_encoder)) if on)
        raise UserError(f"none of the layers of {label} belong to this model's {parts}",
                        "check that the LoRA and the base model belong together")
    settings = _settings_from(layers, dropout, rank_dropout, module_dropout, loraplus_lr_ratio)
    network = LoRANetwork(layers, settings, family=family, aliases=aliases)
    return network, network.load_weights(state_dict, strict=False, label=label)


def _targets(unet, text_encoders, train_unet, train_text_encoder, with_conv):
    found = []
    encoders = encoder_list(text_encoders)
    if train_text_encoder:
        for index, encoder in enumerate(encoders):
            prefix = T.text_encoder_prefix(index, len(encoders))
            found += list(T.text_encoder_targets(encoder, prefix))
    if train_unet and unet is not None:
        found += list(T.unet_targets(unet, with_conv=with_conv))
    return found


def _aliases(targets) -> dict[str, str]:
    return {target.alias: target.lora_name for target in targets if target.alias}


def _settings_from(layers, dropout, rank_dropout, module_dropout, ratio) -> NetworkSettings:
    """The most common rank/alpha of the linear layers and of the 3x3 convolutions."""
    def most_common(pairs):
        return max(set(pairs), key=pairs.count) if pairs else (None, None)

    linear = [(l.dim, float(l.alpha)) for l in layers if not _is_conv3x3(l)]
    conv = [(l.dim, float(l.alpha)) for l in layers if _is_conv3x3(l)]
    dim, alpha = most_common(linear)
    conv_dim, conv_alpha = most_common(conv)
    return NetworkSettings(dim or conv_dim, alpha if alpha is not None else conv_alpha, conv_dim,
                           conv_alpha, dropout, rank_dropout, module_dropout, ratio)


def _is_conv3x3(layer: LoRAModule) -> bool:
    return layer.is_conv and tuple(layer.lora_down.kernel_size) != (1, 1)


# ---------------------------------------------------------------------- from a config


@dataclass
class NetworkSetup:
    network: LoRANetwork
    notes: list[str] = field(default_factory=list)  # print these as info/warnings
    args: dict = field(default_factory=dict)  # parsed network_args, for ss_network_args


def network_args(cfg) -> dict:
    """network_args ["conv_dim=4", …] as typed values (keys checked by config validation)."""
    from ..config.validate import NETWORK_ARG_KEYS
    from ..config.values import parse_key_values

    raw = parse_key_values(cfg.network_args, "network_args")
    return {key: NETWORK_ARG_KEYS[key](value) for key, value in raw.items()
            if key in NETWORK_ARG_KEYS}


def create_network_for_config(cfg, unet, text_encoders) -> NetworkSetup:
    """The network a `lora` run trains: options, network_args, network_weights, dim_from_weights."""
    extras = network_args(cfg)
    common = dict(dropout=cfg.network_dropout, rank_dropout=extras.get("rank_dropout"),
                  module_dropout=extras.get("module_dropout"),
                  loraplus_lr_ratio=extras.get("loraplus_lr_ratio"),
                  train_unet=not cfg.network_train_text_encoder_only,
                  train_text_encoder=not cfg.network_train_unet_only)
    if cfg.network_weights and cfg.dim_from_weights:
        network, report = create_network_from_weights(unet, text_encoders, cfg.network_weights,
                                                      **common)
        return NetworkSetup(network, report.notes(), extras)
    conv_dim = cfg.conv_dim if cfg.conv_dim is not None else extras.get("conv_dim")
    conv_alpha = cfg.conv_alpha if cfg.conv_alpha is not None else extras.get("conv_alpha")
    network = create_network(unet, text_encoders, dim=cfg.network_dim, alpha=cfg.network_alpha,
                             conv_dim=conv_dim, conv_alpha=conv_alpha, **common)
    notes = []
    if cfg.network_weights:
        notes = network.load_weights(cfg.network_weights, strict=False).notes()
    return NetworkSetup(network, notes, extras)
