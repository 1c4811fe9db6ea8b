"""Small helpers for the LoRA tests: tiny model parts, fixed inputs, a LoRA that does something."""

from __future__ import annotations

from pathlib import Path


def load_parts(folder: Path):
    """(unet, text_encoder) of a tiny diffusers model folder, fresh and in float32."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
    text = CLIPTextModel.from_pretrained(str(folder / "text_encoder"))
    for part in (unet, text):
        # Weights read from a file sit wherever its header length puts them; the CPU's
        # vectorised sums differ in the last bits between aligned and unaligned memory, which
        # made comparisons of two models depend on the length of their metadata.
        for param in part.parameters():
            param.data = param.data.clone()
    return unet.eval(), text.eval()


def unet_inputs(seed: int = 0, batch: int = 1, context_dim: int = 32, size: int = 8):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, size, size, generator=gen), torch.tensor([500] * batch),
            torch.randn(batch, 77, context_dim, generator=gen))


def token_ids(seed: int = 0):
    import torch

    return torch.randint(0, 90, (1, 77), generator=torch.Generator().manual_seed(seed))


def unet_out(unet, inputs):
    import torch

    sample, timestep, context = inputs
    with torch.no_grad():
        return unet(sample.to(unet.dtype), timestep, context.to(unet.dtype)).sample.float()


def text_out(text_encoder, ids):
    import torch

    with torch.no_grad():
        return text_encoder(ids)[0].float()


def randomize(network, seed: int = 0, std: float = 0.05):
    """Give every lora_up random values (a fresh LoRA is all zero and changes nothing)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in network.loras:
            weight = layer.lora_up.weight
            weight.copy_(torch.randn(weight.shape, generator=gen) * std)
    return network


def load_lora_weights_without_complaints(pipe, path) -> None:
    """diffusers' load_lora_weights, failing on any warning of keys it skipped or missed."""
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    collect = Collect()
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft", "transformers")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        pipe.load_lora_weights(str(path))
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    complaints = ("unexpected", "not found", "not loaded", "ignored", "missing")
    assert not [m for m in collect.messages if any(c in m.lower() for c in complaints)]


def assert_clean_failure(result, *fragments):
    """A CLI refusal: exit 2, one last `error:` line holding each fragment, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]
