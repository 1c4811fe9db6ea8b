"""Text conditioning for each batch: encoded live while the text encoder learns, cached otherwise."""

from __future__ import annotations

import torch

from .text import TextSettings, encode, tokenize


class Conditioning:
    def __init__(self, tokenizer, settings: TextSettings, target, precision, *, cacheable: bool):
        """cacheable: the captions never change (no dropout, shuffling...), so while the text
        encoder is frozen each caption is encoded once and reused."""
        self.tokenizer, self.settings = tokenizer, settings
        self.target, self.precision = target, precision
        self.cacheable = cacheable
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str], step: int) -> torch.Tensor:
        target = self.target
        if target.trains_text_encoder(step):
            return self._encode(target.forward_text_encoder(), captions)
        with torch.no_grad():
            if not self.cacheable:
                return self._encode(target.forward_text_encoder(), captions)
            missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
            if missing:
                states = self._encode(target.forward_text_encoder(), missing)
                self._cache.update(zip(missing, states))
            return torch.stack([self._cache[c] for c in captions])

    def _encode(self, text_encoder, captions: list[str]) -> torch.Tensor:
        ids = tokenize(self.tokenizer, captions, self.settings)
        with self.precision.autocast():
            return encode(text_encoder, ids, self.settings)

    def for_sampling(self, text_encoder, prompt: str) -> torch.Tensor:
        """Sample prompts always pad to full windows (so prompt and negative line up)."""
        settings = TextSettings(self.settings.max_token_length, self.settings.clip_skip, False)
        ids = tokenize(self.tokenizer, [prompt], settings)
        with torch.no_grad(), self.precision.autocast():
            return encode(text_encoder, ids, settings)


def conditioning_for_run(cfg, dataset, tokenizer, target, precision, warn) -> Conditioning:
    """The run's conditioning; captions longer than the token window are reported first."""
    from ..data.tokens import long_captions_warning
    from .text import token_count

    captions = [(item.path, item.caption) for item in dataset.items]
    warning = long_captions_warning(captions, lambda text: token_count(tokenizer, text), cfg)
    if warning:
        warn(warning)
    settings = TextSettings(cfg.max_token_length, cfg.clip_skip, cfg.no_token_padding)
    return Conditioning(tokenizer, settings, target, precision,
                        cacheable=dataset.fixed_captions() and not cfg.no_token_padding)
