"""The training loop shared by DreamBooth / fine-tune and LoRA.

Importing this package is cheap; torch and diffusers load when `train` is called.
"""


def train(cfg) -> int:
    from .session import run

    return run(cfg)
