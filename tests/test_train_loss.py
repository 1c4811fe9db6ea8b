"""The training loss, recomputed independently, and shown to fall when the model trains."""

from __future__ import annotations

import pytest
import torch

from helpers import make_db_dataset

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_db_dataset(tmp_path_factory.mktemp("loss-data"), repeats=1, images=3,
                           reg_images=3)


def make_session(model, dataset, out, **options):
    from trainer.config import Config
    from trainer.train.session import Session

    train, reg = dataset
    cfg = Config("db", {"pretrained_model_name_or_path": str(model), "train_data_dir": str(train),
                        "reg_data_dir": str(reg), "output_dir": str(out), "resolution": "64",
                        "train_batch_size": 4, "seed": 5, "cache_latents": True, **options})
    session = Session(cfg)
    session.setup()
    return session


def sd_alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def independent_loss(session, refs, prior_loss_weight, gamma, v_prediction):
    """The objective written out from its definition, with the trainer's noise and timesteps."""
    from trainer.train.noise import draw_noise

    batch = session.dataset.load_batch(refs, 0)
    x0 = batch["latents"] * 0.18215
    tokenizer, text_encoder = session.bundle.tokenizer, session.bundle.text_encoder
    ids = tokenizer(batch["captions"], padding="max_length", max_length=77, truncation=True,
                    return_tensors="pt").input_ids
    hidden = text_encoder(ids)[0]
    draw = draw_noise(x0, [(session.cfg.seed, 0, r.pos) for r in refs], num_timesteps=1000)
    ab = sd_alphas_cumprod()[draw.timesteps].view(-1, 1, 1, 1)
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * draw.noise
    prediction = session.bundle.unet(noisy, draw.timesteps, hidden).sample
    target = ab.sqrt() * draw.noise - (1 - ab).sqrt() * x0 if v_prediction else draw.noise
    per_sample = ((prediction - target) ** 2).mean(dim=(1, 2, 3))
    weights = torch.tensor([prior_loss_weight if r.is_reg else 1.0 for r in refs])
    if gamma:
        snr = (ab / (1 - ab)).flatten()
        weights = weights * torch.clamp(snr, max=gamma) / (snr + 1 if v_prediction else snr)
    return (per_sample * weights).mean()


@pytest.mark.parametrize("model, prior, gamma", [
    ("tiny-v1", 1.0, None),
    ("tiny-v1", 0.5, 5.0),
    ("tiny-v2-v", 0.5, 5.0),
])
def test_loss_equals_the_objective_written_out(tiny_model, dataset, tmp_path, model, prior, gamma):
    from trainer.train.feed import BatchFeed
    from trainer.train.loop import build_loop

    v_prediction = model.endswith("-v")
    session = make_session(tiny_model(model), dataset, tmp_path, prior_loss_weight=prior,
                           min_snr_gamma=gamma, v2=model != "tiny-v1",
                           v_parameterization=v_prediction)
    refs = next(b for b in session.dataset.epoch_batches(0, 4) if len({r.is_reg for r in b}) == 2)
    runner = build_loop(session).runner
    feed = BatchFeed(session.dataset, rank=0, batch_size=4, accumulation=1, workers=0)
    with torch.no_grad():
        loss = runner.loss(feed.load(refs, 0), 0, 0, len(refs))
        expected = independent_loss(session, refs, prior, gamma, v_prediction)
    assert torch.allclose(loss, expected, rtol=1e-4), (loss.item(), expected.item())
    session.reporter.close()


def test_loss_on_the_training_images_falls(tiny_model, dataset, tmp_path):
    from trainer.train.feed import BatchFeed
    from trainer.train.loop import build_loop, train_loop

    session = make_session(tiny_model("tiny-v1"), dataset, tmp_path, learning_rate=5e-4,
                           max_train_steps=30, stop_text_encoder_training=0)
    runner = build_loop(session).runner
    feed = BatchFeed(session.dataset, rank=0, batch_size=4, accumulation=1, workers=0)
    loaded = [feed.load(refs, 0) for refs in session.dataset.epoch_batches(0, 4)]

    def fixed_loss() -> float:  # same samples, noise and timesteps every time
        with torch.no_grad():
            return sum(runner.loss(b, 0, 0, len(b.refs)).item() for b in loaded) / len(loaded)

    before = fixed_loss()
    assert train_loop(session) == "finished"
    after = fixed_loss()
    session.reporter.close()
    print(f"fixed-noise loss before {before:.4f} after {after:.4f}")
    assert after < 0.8 * before, (before, after)
