"""SDXL in the peak-memory estimate: the architecture on meta (U-Net, CLIP ViT-L, OpenCLIP bigG,
VAE), where a run puts each part, and one traced step at the run's size.

Placement follows what SDXL trainers do on the GPU (kohya-ss sd-scripts' sdxl_train.py and
sdxl_train_network.py): frozen parts in the compute dtype, trained ones in float32 (bf16 with
full_bf16, fp16 with full_fp16); with cache_text_encoder_outputs both text encoders leave the
GPU once the captions are encoded and the step feeds cached states; a text encoder trains only
when its learning rate (learning_rate_te1 / learning_rate_te2, else text_encoder_lr or
learning_rate) is not 0 and stop_text_encoder_training allows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .architecture import MetaModels, _on_meta, _TokenIds
from .autocast import GpuLikeMode
from .saved import SavedLog, storage_key
from .step import META, StepTrace, _cached_outside_log, _route_checkpointing, attention_kind
from .step import image_size

CLIP_VOCAB = 49408
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def from_xl_configs(unet_config: dict, vae_config: dict, text1: dict, text2: dict) -> MetaModels:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def clean(config: dict) -> dict:
        return {k: v for k, v in config.items() if not k.startswith("_")}

    return MetaModels(
        unet=_on_meta(lambda: UNet2DConditionModel.from_config(clean(unet_config))),
        text_encoder=_on_meta(lambda: CLIPTextModel(CLIPTextConfig(**clean(text1)))),
        vae=_on_meta(lambda: AutoencoderKL.from_config(clean(vae_config))),
        text_encoder_2=_on_meta(
            lambda: CLIPTextModelWithProjection(CLIPTextConfig(**clean(text2)))))


def from_xl_spec(name: str) -> MetaModels:
    """An xl_factory spec ("sdxl": the real SDXL 1.0 base sizes) on meta."""
    from ..models import xl_factory as xf

    s = xf.xl_spec(name)
    vocab, ids = max(s.vocab_size, CLIP_VOCAB), _TokenIds()
    return from_xl_configs(xf.unet_config(s), xf.vae_config(s),
                           xf.text_config(s.text1, "quick_gelu", vocab, ids, s.text1[0]),
                           xf.text_config(s.text2, "gelu", vocab, ids, s.pooled_dim))


def _read(file: Path) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        from ..models.loading import MODEL_HINT

        raise UserError(f"{file} cannot be read ({type(err).__name__})", MODEL_HINT) from None


def from_xl_folder(folder: Path) -> MetaModels:
    return from_xl_configs(*(_read(folder / part / "config.json")
                             for part in ("unet", "vae", "text_encoder", "text_encoder_2")))


def from_xl_single(path: Path, state: dict) -> MetaModels:
    """From the configs our own files carry, else from the tensor shapes (as the loader does)."""
    from ..models.checkpoint_io import read_metadata
    from ..models.ldm_config import _vae_params
    from ..models.ldm_import import vae_config
    from ..models.xl_loading import (XL_VAE_SCALING, embedded_configs, text_configs_from_shapes,
                                     unet_config_from_shapes)

    configs = embedded_configs(read_metadata(path))
    try:
        unet = configs["unet"] if configs else unet_config_from_shapes(state)
        text1, text2 = ((configs["text_encoder"], configs["text_encoder_2"]) if configs
                        else text_configs_from_shapes(state))
        vae_ldm = {"model": {"params": {"scale_factor": XL_VAE_SCALING,
                                        "first_stage_config": {"params": _vae_params(state)}}}}
        vae = vae_config(state, vae_ldm, unet["sample_size"])
    except (KeyError, IndexError, StopIteration, ValueError) as err:
        raise UserError(f"{path} does not have the SDXL layout (no {err})",
                        "give a whole SDXL base model") from None
    ids = _TokenIds()
    for text in (text1, text2):
        text.update(bos_token_id=ids.bos_token_id, eos_token_id=ids.eos_token_id,
                    pad_token_id=ids.pad_token_id)
    return from_xl_configs(unet, vae, text1, text2)


# ---------------------------------------------------------------- placement


@dataclass
class XLPlaced:
    unet: Any
    encoders: list  # (text encoder, trained?) of those on the GPU during the step
    compute: torch.dtype
    trained: list
    frozen: list
    fused: bool = False  # fused_backward_pass: each gradient is applied and freed at once
    notes: list = field(default_factory=list)


def train_dtype(cfg) -> torch.dtype:
    return torch.bfloat16 if cfg.full_bf16 else torch.float16 if cfg.full_fp16 else torch.float32


def _te_rates(cfg) -> tuple[float, float]:
    base = cfg.text_encoder_lr if cfg.text_encoder_lr is not None else cfg.learning_rate
    one = cfg.learning_rate_te1 if cfg.learning_rate_te1 is not None else base
    two = cfg.learning_rate_te2 if cfg.learning_rate_te2 is not None else base
    return one or 0.0, two or 0.0


def _trains_text(cfg) -> tuple[bool, bool]:
    if cfg.cache_text_encoder_outputs or cfg.cache_text_encoder_outputs_to_disk:
        return False, False  # cached outputs come from frozen encoders
    if cfg.mode == "lora":
        if cfg.network_train_unet_only:
            return False, False
        return True, True
    if cfg.stop_text_encoder_training == 0:
        return False, False
    one, two = _te_rates(cfg)
    return bool(one), bool(two)


def _freeze(module, dtype, device):
    module.requires_grad_(False)
    module.eval()
    return module.to(device=device, dtype=dtype)


def _lora(cfg, unet, text_encoder, text_encoder_2, trains: tuple[bool, bool]) -> list:
    """The LoRA parameters the run trains: the trainer's own network on the U-Net (and the
    first encoder), and the same kind of layers on the second encoder."""
    from ..networks import create_network_for_config
    from .step import _without_weights

    cfg = _without_weights(cfg)
    unet_cfg = cfg.copy()
    unet_cfg.network_train_unet_only = not trains[0]
    params = []
    setup = create_network_for_config(unet_cfg, unet, text_encoder)
    setup.network.apply()
    params += [p for g in setup.network.param_groups(cfg.unet_lr, cfg.text_encoder_lr,
                                                     cfg.learning_rate) for p in g["params"]]
    if trains[1]:
        te2_cfg = cfg.copy()
        te2_cfg.network_train_text_encoder_only = True
        te2_cfg.network_train_unet_only = False
        second = create_network_for_config(te2_cfg, unet, text_encoder_2).network
        second.apply()
        params += [p for g in second.param_groups(0, cfg.text_encoder_lr, cfg.learning_rate)
                   for p in g["params"]]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def place_xl(cfg, models: MetaModels, device: torch.device = META) -> XLPlaced:
    compute = DTYPES[cfg.mixed_precision]
    vae_dtype = torch.float32 if cfg.no_half_vae else compute
    unet, te1, te2 = models.unet, models.text_encoder, models.text_encoder_2
    trains = _trains_text(cfg)
    cached = cfg.cache_text_encoder_outputs or cfg.cache_text_encoder_outputs_to_disk
    encoders = [] if cached else [(te1, trains[0]), (te2, trains[1])]
    with device:
        _freeze(models.vae, vae_dtype, device)
        if cfg.mode == "lora":
            for module in (unet, te1, te2):
                _freeze(module, compute, device)
            trained = _lora(cfg, unet, te1, te2, trains)
        else:
            unet.requires_grad_(True).train()
            unet.to(device=device, dtype=train_dtype(cfg))
            trained = list(unet.parameters())
            for module, learns in ((te1, trains[0]), (te2, trains[1])):
                if learns:
                    module.requires_grad_(True).train()
                    module.to(device=device, dtype=train_dtype(cfg))
                    trained += list(module.parameters())
                else:
                    _freeze(module, compute, device)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        unet.train()
        for module, learns in encoders:
            if learns:
                module.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
                module.train()
    ids = {id(p) for p in trained}
    on_gpu = [unet, models.vae] + [m for m, _ in encoders]
    frozen = {id(p): p for m in on_gpu for p in m.parameters() if id(p) not in ids}
    notes = ["text encoders off the GPU: their outputs are cached"] if cached else []
    return XLPlaced(unet, encoders, compute, trained, list(frozen.values()),
                    fused=bool(cfg.fused_backward_pass), notes=notes)


# ---------------------------------------------------------------- one step


def _encode(encoders, ids: torch.Tensor, compute):
    """SDXL's conditioning: both encoders' penultimate states side by side, and bigG's
    projected end-of-text state (the pooled embedding)."""
    states, pooled = [], None
    for module, learns in encoders:
        with GpuLikeMode(compute), torch.set_grad_enabled(learns):
            output = module(ids, output_hidden_states=True)
        states.append(output.hidden_states[-2])
        pooled = getattr(output, "text_embeds", pooled)
    return torch.cat(states, dim=-1), pooled


def trace_xl(cfg, placed: XLPlaced) -> StepTrace:
    unet, device = placed.unet, META if placed.unet.device.type == "meta" else placed.unet.device
    log = SavedLog(skip={storage_key(p) for p in placed.trained + placed.frozen})
    trained = {id(p) for p in placed.trained}
    if not placed.fused:  # fused: a gradient is freed as soon as it is applied
        log.watch_gradients(unet, trained)
        for module, _ in placed.encoders:
            log.watch_gradients(module, trained)
    _route_checkpointing(log, unet, *(m for m, _ in placed.encoders))
    if attention_kind(cfg) == "sliced":
        unet.set_attention_slice("auto")
    compute = placed.compute if placed.compute != torch.float32 else None
    batch, (width, height) = cfg.train_batch_size, image_size(cfg)
    tokens = 77 * ((cfg.max_token_length or 75) // 75)
    latents = torch.zeros(batch, unet.config.in_channels, height // 8, width // 8, device=device)
    timesteps = torch.zeros(batch, dtype=torch.long, device=device)
    context = unet.config.cross_attention_dim
    pooled_width = unet.config.projection_class_embeddings_input_dim - \
        6 * unet.config.addition_time_embed_dim
    with log.hooks():
        if placed.encoders:
            ids = torch.zeros(batch, tokens, dtype=torch.long, device=device)
            hidden, pooled = _encode(placed.encoders, ids, compute)
        else:  # cached outputs, read in the compute dtype
            dtype = placed.compute
            hidden = torch.zeros(batch, tokens, context, device=device, dtype=dtype)
            pooled = torch.zeros(batch, pooled_width, device=device, dtype=dtype)
        sizes = {"text_embeds": pooled, "time_ids": torch.zeros(batch, 6, device=device)}
        with GpuLikeMode(compute) as unet_mode:
            prediction = unet(latents, timesteps, hidden, added_cond_kwargs=sizes).sample
        torch.nn.functional.mse_loss(prediction.float(), latents)
    return StepTrace(log, _cached_outside_log(log, unet_mode.cache.values()))
