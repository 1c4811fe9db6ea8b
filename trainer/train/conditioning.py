"""Text conditioning for each batch: encoded live while the text encoder learns, cached otherwise."""

from __future__ import annotations

import torch

from .text import TextSettings, encode, tokenize


class Conditioning:
    def __init__(self, session):
        self.session = session
        cfg = session.cfg
        self.settings = TextSettings(cfg.max_token_length, cfg.clip_skip, cfg.no_token_padding)
        self.tokenizer = session.bundle.tokenizer
        # Frozen encoder + fixed captions: each caption is encoded once and reused.
        self.cacheable = session.dataset.fixed_captions() and not cfg.no_token_padding
        self._cache: dict[str, torch.Tensor] = {}
        self._warn_long_captions()

    def _warn_long_captions(self) -> None:
        from ..data.tokens import long_captions_warning
        from .text import token_count

        captions = [(item.path, item.caption) for item in self.session.dataset.items]
        warning = long_captions_warning(captions, lambda text: token_count(self.tokenizer, text),
                                        self.session.cfg)
        if warning:
            self.session.reporter.warning(warning)

    def __call__(self, captions: list[str], step: int) -> torch.Tensor:
        target = self.session.target
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
        with self.session.precision.autocast():
            return encode(text_encoder, ids, self.settings)

    def for_sampling(self, text_encoder, prompt: str) -> torch.Tensor:
        """Sample prompts always pad to full windows (so prompt and negative line up)."""
        settings = TextSettings(self.settings.max_token_length, self.settings.clip_skip, False)
        ids = tokenize(self.tokenizer, [prompt], settings)
        with torch.no_grad(), self.session.precision.autocast():
            return encode(text_encoder, ids, settings)
