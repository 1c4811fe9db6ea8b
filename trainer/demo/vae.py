"""Train the demo VAE: plain reconstruction (MSE + a small KL term), before any diffusion.

Like Stable Diffusion's VAE it is a general image codec trained apart from the diffusion model;
it learns every shape the demo draws, the DreamBooth subject's included, so that the subject can
be represented at all. The diffusion model (U-Net and text encoder) never sees the subject.
"""

from __future__ import annotations

import random
from typing import Callable

from . import world

KL_WEIGHT = 1e-5


def image_pool(seed: int, count: int):
    """Float tensor [count, 3, 64, 64] in [-1, 1] of all shapes (rings too) in all colours."""
    import numpy as np
    import torch

    items = world.scenes(seed, count, shapes=world.SHAPES + ("ring",))
    pixels = np.stack([np.asarray(world.draw(scene)) for scene in items])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(vae, pool, steps: int, batch_size: int = 32, learning_rate: float = 1e-3,
              seed: int = 0, log: Callable[[str], None] = print):
    import torch

    torch.manual_seed(seed)
    order = random.Random(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps,
                                                   pct_start=0.05)
    vae.train()
    for step in range(1, steps + 1):
        images = pool[order.sample(range(len(pool)), batch_size)]
        posterior = vae.encode(images).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = torch.nn.functional.mse_loss(reconstruction, images)
        loss = mse + KL_WEIGHT * posterior.kl().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps:
            log(f"vae step {step}/{steps}: reconstruction mse {mse.item():.4f}")
    vae.eval()
    return vae


def latent_scale(vae, pool) -> float:
    """1 / the latents' standard deviation: SD's scaling_factor, measured for this VAE."""
    import torch

    with torch.no_grad():
        latents = torch.cat([vae.encode(pool[i:i + 64]).latent_dist.mode()
                             for i in range(0, len(pool), 64)])
    return float(1.0 / latents.std())


def reconstruct(vae, images):
    """PIL images -> the VAE's reconstructions (PIL)."""
    import numpy as np
    import torch
    from PIL import Image

    pixels = torch.from_numpy(np.stack([np.asarray(i.convert("RGB")) for i in images]))
    x = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        out = vae.decode(vae.encode(x).latent_dist.mode()).sample
    out = ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(o) for o in out]
