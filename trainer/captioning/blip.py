"""Sentence captions from a BLIP-style image-to-text model (transformers)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

DEFAULT_MODEL = "Salesforce/blip-image-captioning-large"


def _load(model: str):
    from transformers import AutoProcessor, BlipForConditionalGeneration

    if Path(model).is_dir():
        return AutoProcessor.from_pretrained(model), \
            BlipForConditionalGeneration.from_pretrained(model)
    from ..models import hub

    if not hub.looks_like_hub_id(model):
        raise UserError(f"captioning model {model} does not exist",
                        "give a hub id or a folder saved with save_pretrained")
    try:
        return hub.from_hub(AutoProcessor.from_pretrained, model), \
            hub.from_hub(BlipForConditionalGeneration.from_pretrained, model)
    except LookupError:
        reason = "the machine is offline" if hub.offline() else "it could not be downloaded"
        raise UserError(f"captioning model {model!r} is not in the local hub cache and {reason}",
                        "download it once while online, or give its folder") from None


class Captioner:
    def __init__(self, model: str, *, num_beams: int = 1, max_length: int = 75,
                 min_length: int = 5):
        import torch

        self.processor, self.model = _load(model)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.settings = dict(num_beams=num_beams, max_length=max_length, min_length=min_length)

    def caption(self, images) -> list[str]:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.no_grad():
            ids = self.model.generate(pixel_values=inputs["pixel_values"], **self.settings)
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
