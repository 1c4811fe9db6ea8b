"""Prompt encoding as Stable Diffusion front ends do it: clip_skip, long prompts, padding rules.

Long prompts (max_token_length 150/225) are cut into chunks of 75 tokens, each encoded as its own
<BOS> … <EOS> window of 77, and the hidden states are joined again without the inner BOS/EOS.
SD 2 tokenizers pad with "!" instead of <EOS>, which changes how a chunk must end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WINDOW = 77  # CLIP's context
CHUNK = WINDOW - 2  # tokens between BOS and EOS


@dataclass(frozen=True)
class TextSettings:
    max_token_length: int | None = None  # None: 75
    clip_skip: int | None = None  # None or 1: last layer
    no_token_padding: bool = False

    @property
    def chunks(self) -> int:
        return (self.max_token_length or CHUNK) // CHUNK


def tokenize(tokenizer, captions: list[str], settings: TextSettings) -> torch.Tensor:
    """Token ids [B, chunks*77] (or [B, L<=77] with no_token_padding)."""
    if settings.no_token_padding and settings.chunks == 1:
        # Early diffusers DreamBooth: no padding to 77, only to the longest caption of the batch.
        ids = tokenizer(captions, truncation=True, max_length=WINDOW, padding="longest",
                        return_tensors="pt").input_ids
        return ids
    length = settings.chunks * CHUNK + 2
    ids = tokenizer(captions, truncation=True, max_length=length, padding="max_length",
                    return_tensors="pt").input_ids
    if settings.chunks == 1:
        return ids
    return torch.cat([_chunk(tokenizer, ids, i) for i in range(settings.chunks)], dim=1)


def _chunk(tokenizer, ids: torch.Tensor, index: int) -> torch.Tensor:
    """Window `index` of a long prompt: BOS + its 75 tokens + EOS."""
    start = 1 + index * CHUNK
    body = ids[:, start:start + CHUNK]
    window = torch.cat([ids[:, :1], body, ids[:, -1:]], dim=1).clone()
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad != eos:
        # SD 2 style padding: a window cut in the middle of the text must still end with EOS,
        # and a window holding no text at all reads <BOS> <EOS> <PAD> …
        last_text = window[:, -2]
        cut = (last_text != eos) & (last_text != pad)
        window[cut, -1] = eos
        empty = window[:, 1] == pad
        window[empty, 1] = eos
    assert (window[:, 0] == bos).all()
    return window


def encode(text_encoder, input_ids: torch.Tensor, settings: TextSettings) -> torch.Tensor:
    """Hidden states [B, tokens, dim] for the U-Net's cross-attention."""
    return encode_with_pooled(text_encoder, input_ids, settings)[0]


def encode_with_pooled(text_encoder, input_ids: torch.Tensor, settings: TextSettings,
                       *, fixed_layer: int | None = None,
                       pooled: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(hidden states [B, tokens, dim], pooled [B, dim] or None).

    fixed_layer: take this hidden layer as it is (SDXL: -2, no final layer norm) and ignore
    clip_skip. pooled: also return the projected output at the EOS token (SDXL's second
    encoder); a long prompt's pooled output is its first window's, as sd-scripts does.
    """
    windows = input_ids.shape[1] // WINDOW if input_ids.shape[1] > WINDOW else 1
    outputs = [_encode_window(text_encoder, input_ids[:, i * WINDOW:(i + 1) * WINDOW]
                              if windows > 1 else input_ids, settings, fixed_layer, pooled)
               for i in range(windows)]
    states = [hidden for hidden, _ in outputs]
    first_pooled = outputs[0][1]
    if windows == 1:
        return states[0], first_pooled
    inner = [s[:, 1:-1] for s in states]
    return torch.cat([states[0][:, :1], *inner, states[-1][:, -1:]], dim=1), first_pooled


def _encode_window(text_encoder, ids: torch.Tensor, settings: TextSettings,
                   fixed_layer: int | None, pooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids = ids.to(next(text_encoder.parameters()).device)
    if fixed_layer is not None:
        output = text_encoder(ids, output_hidden_states=True)
        return output.hidden_states[fixed_layer], (output.text_embeds if pooled else None)
    skip = settings.clip_skip or 1
    if skip <= 1:
        return text_encoder(ids)[0], None
    output = text_encoder(ids, output_hidden_states=True)
    hidden = output.hidden_states[-skip]
    return final_layer_norm(text_encoder)(hidden), None


def unused_parameters(text_encoder, settings: TextSettings, *, fixed_layer: int | None,
                      pooled: bool) -> list:
    """Weights the encoding above never reaches: the layers after the hidden layer taken, and
    the final LayerNorm when it is not applied. Training leaves them frozen (DDP refuses
    parameters that get no gradient, and they need no optimizer state)."""
    if pooled:  # the projected output is taken after the last layer and the final norm
        return []
    inner = getattr(text_encoder, "module", text_encoder)
    inner = getattr(inner, "text_model", inner)
    layer = fixed_layer if fixed_layer is not None else -(settings.clip_skip or 1)
    skipped = list(inner.encoder.layers)[len(inner.encoder.layers) + layer + 1:]
    params = [p for module in skipped for p in module.parameters()]
    if fixed_layer is not None:
        params += list(inner.final_layer_norm.parameters())
    return params


def final_layer_norm(text_encoder):
    """The CLIP final LayerNorm, whether or not the model has transformers 4's `text_model` level."""
    inner = getattr(text_encoder, "module", text_encoder)  # unwrap DDP
    inner = getattr(inner, "text_model", inner)
    return inner.final_layer_norm


def token_count(tokenizer, caption: str) -> int:
    """Tokens of a caption without BOS/EOS (what the 75/150/225 limits count)."""
    return len(tokenizer(caption, truncation=False).input_ids) - 2
