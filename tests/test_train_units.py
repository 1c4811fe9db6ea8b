"""Pieces of the training loop checked against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config import BY_NAME
from trainer.errors import UserError
from trainer.sample_prompts import parse_prompt_line
from trainer.train.noise import combine, draw_noise, min_snr_weights, per_sample_loss, target_for
from trainer.train.optim import build_optimizer, build_scheduler
from trainer.train.sampling import png_parameters
from trainer.train.text import TextSettings, encode, tokenize


@pytest.fixture(scope="module")
def tiny_parts(tiny_model):
    from transformers import CLIPTextModel, CLIPTokenizer

    out = {}
    for name in ("tiny-v1", "tiny-v2"):
        folder = tiny_model(name)
        out[name] = (CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
                     CLIPTextModel.from_pretrained(str(folder / "text_encoder")).eval())
    return out


def sd_alphas_cumprod():
    """SD's schedule from its definition: scaled-linear betas 0.00085..0.012 over 1000 steps."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def test_velocity_target_matches_its_definition():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", prediction_type="v_prediction")
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([1, 500, 999])
    ab = sd_alphas_cumprod()[t].float().view(-1, 1, 1, 1)
    expected = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    assert torch.allclose(target_for(scheduler, x0, noise, t, True), expected, atol=1e-5)
    assert torch.equal(target_for(scheduler, x0, noise, t, False), noise)


@pytest.mark.parametrize("v_prediction", [False, True])
def test_min_snr_weights_match_the_formula(v_prediction):
    ab = sd_alphas_cumprod()
    t = torch.tensor([0, 10, 300, 999])
    weights = min_snr_weights(ab.float(), t, 5.0, v_prediction)
    for i, step in enumerate(t.tolist()):
        snr = ab[step].item() / (1 - ab[step].item())
        expected = min(snr, 5.0) / (snr + 1 if v_prediction else snr)
        assert math.isclose(weights[i].item(), expected, rel_tol=1e-4)


def test_weighted_loss_is_the_mean_over_the_global_batch():
    pred, target = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    weights = torch.tensor([1.0, 1.0, 0.5, 0.5])  # two regularization samples, prior weight 0.5
    losses = per_sample_loss(pred, target)
    expected = sum(((pred[i] - target[i]) ** 2).mean() * weights[i] for i in range(4)) / 4
    assert torch.allclose(combine(losses, weights, global_count=4, world_size=1), expected)
    # split over two processes as 3 + 1 samples: DDP's average of the two equals the mean
    left = combine(losses[:3], weights[:3], global_count=4, world_size=2)
    right = combine(losses[3:], weights[3:], global_count=4, world_size=2)
    assert torch.allclose((left + right) / 2, expected)


def test_noise_of_a_sample_does_not_depend_on_its_batch():
    latents = torch.zeros(3, 4, 8, 8)
    keys = [(42, 0, 7), (42, 0, 8), (42, 0, 9)]
    together = draw_noise(latents, keys, num_timesteps=1000, noise_offset=0.1)
    alone = draw_noise(latents[1:2], keys[1:2], num_timesteps=1000, noise_offset=0.1)
    assert torch.equal(together.noise[1], alone.noise[0])
    assert together.timesteps[1] == alone.timesteps[0]
    other_epoch = draw_noise(latents[:1], [(42, 1, 7)], num_timesteps=1000)
    assert not torch.equal(other_epoch.noise[0], together.noise[0])


@pytest.mark.parametrize("name", ["tiny-v1", "tiny-v2"])
def test_long_prompts_are_encoded_in_windows_of_77(tiny_parts, name):
    tokenizer, text_encoder = tiny_parts[name]
    long_caption = ", ".join(["red circle"] * 40)  # more than 75 tokens
    settings = TextSettings(max_token_length=150)
    ids = tokenize(tokenizer, [long_caption, "a dog"], settings)
    assert ids.shape == (2, 154)
    for window in (ids[:, :77], ids[:, 77:]):
        assert (window[:, 0] == tokenizer.bos_token_id).all()
        assert (window[:, -1] == tokenizer.eos_token_id).all() or name == "tiny-v2"
    if name == "tiny-v2":  # the empty second window of "a dog" reads <BOS> <EOS> <PAD> ...
        assert ids[1, 78] == tokenizer.eos_token_id and ids[1, 79] == tokenizer.pad_token_id
        assert ids[0, 76] == tokenizer.eos_token_id  # a cut window still ends with EOS
    with torch.no_grad():
        states = encode(text_encoder, ids, settings)
        single = encode(text_encoder, tokenize(tokenizer, [long_caption], TextSettings()),
                        TextSettings())
    assert states.shape == (2, 152, text_encoder.config.hidden_size)
    # the first window is exactly the ordinary 77-token encoding, minus its EOS
    assert torch.allclose(states[:1, :76], single[:, :76], atol=1e-6)


def test_clip_skip_uses_an_earlier_layer_through_the_final_norm(tiny_parts):
    tokenizer, text_encoder = tiny_parts["tiny-v1"]
    ids = tokenize(tokenizer, ["a photo of sks dog"], TextSettings())
    with torch.no_grad():
        skipped = encode(text_encoder, ids, TextSettings(clip_skip=2))
        hidden = text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = text_encoder.final_layer_norm(hidden)
        last = encode(text_encoder, ids, TextSettings())
    assert torch.allclose(skipped, expected) and not torch.allclose(skipped, last)


def test_no_token_padding_pads_only_to_the_longest_caption(tiny_parts):
    tokenizer, _ = tiny_parts["tiny-v1"]
    ids = tokenize(tokenizer, ["a dog", "a photo of sks dog"], TextSettings(no_token_padding=True))
    assert ids.shape == (2, 7)


def test_sample_prompt_line_options():
    sample = parse_prompt_line("a photo of sks dog, sitting --n blurry, ugly --w 512 --h 768 "
                               "--d 42 --l 6.5 --s 25")
    assert (sample.prompt, sample.negative) == ("a photo of sks dog, sitting", "blurry, ugly")
    assert (sample.width, sample.height, sample.seed, sample.scale, sample.steps) == \
        (512, 768, 42, 6.5, 25)
    assert "Negative prompt: blurry, ugly" in png_parameters(sample, 42, "ddim", 512, 768)
    with pytest.raises(UserError, match="--s 'many'"):
        parse_prompt_line("a dog --s many")


@pytest.mark.parametrize("name", BY_NAME["optimizer_type"].choices)
def test_every_optimizer_takes_a_step(name):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(64, 64))
    before = weight.detach().clone()
    lr = 1.0 if name == "Prodigy" else 1e-2
    optimizer = build_optimizer(name, [{"params": [weight], "lr": lr}], lr, [])
    (weight ** 2).sum().backward()
    optimizer.step()
    assert not torch.equal(before, weight.detach())


def test_optimizer_args_are_parsed_as_python_values():
    weight = torch.nn.Parameter(torch.randn(4))
    optimizer = build_optimizer("AdamW", [{"params": [weight]}], 1e-3,
                                ["weight_decay=0.05", "betas=0.8,0.95"])
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(UserError, match="optimizer_args do not fit AdamW"):
        build_optimizer("AdamW", [{"params": [weight]}], 1e-3, ["nonsense=1"])


@pytest.mark.parametrize("name", BY_NAME["lr_scheduler"].choices)
def test_schedules_warm_up_and_end_as_named(name):
    weight = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = build_scheduler(name, optimizer, warmup_steps=10, total_steps=100,
                                num_cycles=2, power=2.0)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if name != "constant":
        assert lrs[0] == 0.0 and math.isclose(lrs[10], 1.0, rel_tol=1e-6)
    if name in ("linear", "cosine", "polynomial"):
        assert lrs[-1] < 0.05
    if name == "cosine_with_restarts":
        assert max(lrs[60:]) > 0.9  # the second cycle restarts high


def test_cadences_say_which_steps_and_epochs_act():
    from trainer.train.schedule import Cadence, Position

    every = Cadence(every_steps=3, every_epochs=2)
    assert [s for s in range(1, 10) if every.due_at_step(s)] == [3, 6, 9]
    assert [e for e in range(1, 7) if every.due_at_epoch(e)] == [2, 4, 6]
    assert not any(Cadence().due_at_step(s) or Cadence().due_at_epoch(s) for s in range(1, 9))
    assert every.ever and Cadence(every_epochs=1).ever and not Cadence().ever
    # the end of a run that just sampled (step 6, or the end of epoch 4) does not sample again
    assert every.met_at(Position(step=6, epoch=3, batch=2))
    assert every.met_at(Position(step=7, epoch=4, batch=0))
    assert not every.met_at(Position(step=7, epoch=4, batch=1))


def test_both_training_targets_implement_the_one_interface():
    from trainer.train.lora_target import LoRATarget
    from trainer.train.targets import DreamBoothTarget, TrainingTarget

    wanted = {"place", "param_groups", "trainable_modules", "set_prepared", "checkpoint_objects",
              "describe_run", "trains_text_encoder", "on_step", "forward_unet",
              "forward_text_encoders", "sampling_modules", "save"}
    assert TrainingTarget.__abstractmethods__ == wanted
    for target in (DreamBoothTarget, LoRATarget):
        assert issubclass(target, TrainingTarget) and not target.__abstractmethods__
