"""Text conditioning for each batch: encoded live while a text encoder learns, cached otherwise.

The family table says how: SD 1.x/2.x use one encoder's hidden states (clip_skip picks the
layer); SDXL joins the penultimate states of both encoders on the feature axis and adds the
second encoder's pooled output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.family import Family
from .text import TextSettings, encode_with_pooled, tokenize


@dataclass
class TextConditions:
    hidden: torch.Tensor  # [B, tokens, dim]: cross-attention context
    pooled: torch.Tensor | None  # [B, dim]: SDXL's pooled text embedding, else None


class Conditioning:
    def __init__(self, tokenizers: list, settings: TextSettings, target, precision,
                 family: Family, *, cacheable: bool):
        """tokenizers: one per text encoder, in the order of target.forward_text_encoders().
        cacheable: the captions never change (no dropout, shuffling...), so while the text
        encoders are frozen each caption is encoded once and reused."""
        self.tokenizers, self.settings, self.family = tokenizers, settings, family
        self.target, self.precision = target, precision
        self.cacheable = cacheable
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def __call__(self, captions: list[str], step: int) -> TextConditions:
        target = self.target
        if target.trains_text_encoder(step):
            return self._encode(target.forward_text_encoders(), captions, self.settings)
        with torch.no_grad():
            if not self.cacheable:
                return self._encode(target.forward_text_encoders(), captions, self.settings)
            missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
            if missing:
                fresh = self._encode(target.forward_text_encoders(), missing, self.settings)
                pooled = fresh.pooled if fresh.pooled is not None else [None] * len(missing)
                self._cache.update(zip(missing, zip(fresh.hidden, pooled)))
            hidden = torch.stack([self._cache[c][0] for c in captions])
            pooled = None
            if self.family.pooled_text:
                pooled = torch.stack([self._cache[c][1] for c in captions])
            return TextConditions(hidden, pooled)

    def store(self, caption: str, hidden: torch.Tensor, pooled: torch.Tensor | None) -> None:
        """Put one caption's outputs in the cache (cache_text_encoder_outputs)."""
        self._cache[caption] = (hidden, pooled)

    def encode_frozen(self, captions: list[str]) -> TextConditions:
        with torch.no_grad():
            return self._encode(self.target.forward_text_encoders(), captions, self.settings)

    def _encode(self, text_encoders, captions: list[str], settings: TextSettings) -> TextConditions:
        family = self.family
        fixed_layer = None if family.clip_skip_applies else family.hidden_layer
        states, pooled = [], None
        with self.precision.autocast():
            for index, (tokenizer, encoder) in enumerate(zip(self.tokenizers, text_encoders)):
                ids = tokenize(tokenizer, captions, settings)
                wants_pooled = family.pooled_text and index == len(self.tokenizers) - 1
                hidden, pooled_here = encode_with_pooled(encoder, ids, settings,
                                                         fixed_layer=fixed_layer,
                                                         pooled=wants_pooled)
                states.append(hidden)
                if wants_pooled:
                    pooled = pooled_here
        hidden = states[0] if len(states) == 1 else torch.cat(states, dim=2)
        return TextConditions(hidden, pooled)

    def for_sampling(self, text_encoders, prompt: str) -> TextConditions:
        """Sample prompts always pad to full windows (so prompt and negative line up)."""
        settings = TextSettings(self.settings.max_token_length, self.settings.clip_skip, False)
        with torch.no_grad():
            return self._encode(text_encoders, [prompt], settings)


def conditioning_for_run(cfg, dataset, bundle, target, precision, warn) -> Conditioning:
    """The run's conditioning; captions longer than the token window are reported first."""
    from ..data.tokens import long_captions_warning
    from ..models.family import family_of
    from .text import token_count

    family = family_of(bundle)
    tokenizers = [bundle.tokenizer, bundle.tokenizer_2][:family.text_encoders]
    captions = [(item.path, item.caption) for item in dataset.items]
    warning = long_captions_warning(captions, lambda text: token_count(tokenizers[0], text), cfg)
    if warning:
        warn(warning)
    if cfg.clip_skip and cfg.clip_skip > 1 and not family.clip_skip_applies:
        warn(f"clip_skip {cfg.clip_skip} is ignored: {family.title} always uses the "
             "penultimate layer of its text encoders")
    settings = TextSettings(cfg.max_token_length, cfg.clip_skip, cfg.no_token_padding)
    return Conditioning(tokenizers, settings, target, precision, family,
                        cacheable=dataset.fixed_captions() and not cfg.no_token_padding)
