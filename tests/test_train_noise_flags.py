"""sd-scripts' noise, timestep and loss options (issue 17): each formula against values worked out
by hand, the refusals of combinations sd-scripts refuses, and one run that takes them all."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import run_cli
from test_train_db import base_args, dataset, events  # noqa: F401
from trainer.config import Config
from trainer.config.validate import errors, validate
from trainer.train.noise import (LossOptions, NoiseOptions, draw_noise, enforce_zero_terminal_snr,
                                 huber_threshold, loss_weights, multires_noise, per_sample_loss)
from trainer.train.seeding import generator

KEY = (42, 0, 7)
SHAPE = (4, 8, 8)


def draw(options: NoiseOptions, latents=None, keys=(KEY,)):
    latents = torch.zeros(len(keys), *SHAPE) if latents is None else latents
    return draw_noise(latents, list(keys), num_timesteps=1000, options=options)


# ---------------------------------------------------------------- timesteps and noise
def test_without_new_options_the_draw_is_what_it_always_was():
    gen = generator(*KEY, "noise")
    noise, step = torch.randn(SHAPE, generator=gen), torch.randint(0, 1000, (1,), generator=gen)
    got = draw(NoiseOptions())
    assert torch.equal(got.noise[0], noise) and got.timesteps.tolist() == step.tolist()
    assert got.input_noise is None


def test_equal_min_and_max_timestep_pin_the_timestep():
    keys = [(1, 0, i) for i in range(20)]
    assert draw(NoiseOptions(min_timestep=500, max_timestep=500), keys=keys).timesteps.tolist() \
        == [500] * 20
    narrow = draw(NoiseOptions(min_timestep=10, max_timestep=12), keys=keys).timesteps
    assert set(narrow.tolist()) == {10, 11}  # max is exclusive, as in sd-scripts


def test_noise_offset_random_strength_and_adaptive_scale():
    latents = torch.zeros(1, *SHAPE)
    latents[0, 1] = 0.5  # channel 1 has mean 0.5, the others 0
    gen = generator(*KEY, "noise")
    base = torch.randn(SHAPE, generator=gen)
    strength = float(torch.rand(1, generator=gen)) * 0.1
    offsets = torch.randn((SHAPE[0], 1, 1), generator=gen)
    got = draw(NoiseOptions(noise_offset=0.1, noise_offset_random_strength=True,
                            adaptive_noise_scale=2.0), latents)
    per_channel = torch.tensor([strength, strength + 1.0, strength, strength]).view(4, 1, 1)
    assert 0 <= strength < 0.1
    assert torch.allclose(got.noise[0], base + per_channel * offsets)
    # a negative adaptive scale can lower the offset, never below 0
    lowered = draw(NoiseOptions(noise_offset=0.1, adaptive_noise_scale=-1.0), latents)
    gen = generator(*KEY, "noise")
    base = torch.randn(SHAPE, generator=gen)
    offsets = torch.randn((SHAPE[0], 1, 1), generator=gen)
    expected = base + torch.tensor([0.1, 0.0, 0.1, 0.1]).view(4, 1, 1) * offsets
    assert torch.allclose(lowered.noise[0], expected)


def test_multires_noise_adds_discounted_levels_and_keeps_unit_std():
    gen = generator(*KEY, "noise")
    base = torch.randn(SHAPE, generator=gen)
    torch.randint(0, 1000, (1,), generator=gen)  # the timestep comes before the pyramid
    torch.rand(1, generator=gen)  # level 0 shrinks by factor ** 0 = 1: full size
    level0 = torch.randn((1, *SHAPE), generator=gen)[0]
    expected = base + level0 * 0.3 ** 0
    got = draw(NoiseOptions(multires_noise_iterations=1, multires_noise_discount=0.3))
    assert torch.allclose(got.noise[0], expected / expected.std(), atol=1e-6)
    deep = multires_noise(torch.randn(SHAPE), generator(1), iterations=6, discount=0.3)
    assert deep.shape == SHAPE and math.isclose(float(deep.std()), 1.0, rel_tol=1e-5)
    # a sample's noise does not depend on its batch
    keys = [(42, 0, 7), (42, 0, 8)]
    options = NoiseOptions(multires_noise_iterations=6)
    assert torch.equal(draw(options, keys=keys).noise[1], draw(options, keys=keys[1:]).noise[0])


@pytest.mark.parametrize("random_strength", [False, True])
def test_ip_noise_perturbs_the_input_only(random_strength):
    gen = generator(*KEY, "noise")
    noise = torch.randn(SHAPE, generator=gen)
    torch.randint(0, 1000, (1,), generator=gen)
    gamma = float(torch.rand(1, generator=gen)) * 0.1 if random_strength else 0.1
    extra = torch.randn(SHAPE, generator=gen)
    got = draw(NoiseOptions(ip_noise_gamma=0.1, ip_noise_gamma_random_strength=random_strength))
    assert torch.equal(got.noise[0], noise)  # the target keeps the plain noise
    assert torch.allclose(got.noise_for_input[0], noise + gamma * extra)


def test_zero_terminal_snr_ends_the_schedule_in_pure_noise():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, num_train_timesteps=1000)
    first = float(scheduler.alphas_cumprod[0])
    assert float(scheduler.alphas_cumprod[-1]) > 0.004  # SD's schedule never reaches pure noise
    enforce_zero_terminal_snr(scheduler)
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-12)
    assert float(scheduler.alphas_cumprod[0]) == pytest.approx(first, rel=1e-6)
    assert torch.all(scheduler.alphas_cumprod[1:] <= scheduler.alphas_cumprod[:-1])


# ---------------------------------------------------------------- losses
PRED = torch.tensor([[1.0, -2.0], [3.0, 0.0]])  # two samples of two values; the target is 0
TARGET = torch.zeros(2, 2)


def test_l1_and_l2_losses_of_known_tensors():
    assert per_sample_loss(PRED, TARGET, "l1").tolist() == [1.5, 1.5]  # (1+2)/2, (3+0)/2
    assert per_sample_loss(PRED, TARGET, "l2").tolist() == [2.5, 4.5]  # (1+4)/2, (9+0)/2


def test_huber_and_smooth_l1_losses_of_known_tensors():
    c = torch.tensor([1.0, 0.5])
    huber = per_sample_loss(PRED, TARGET, "huber", c)
    # 2c(sqrt(e^2 + c^2) - c) per value, then the mean of each sample
    first = (2 * (math.sqrt(2) - 1) + 2 * (math.sqrt(5) - 1)) / 2
    second = (2 * 0.5 * (math.sqrt(9.25) - 0.5) + 0) / 2
    assert huber.tolist() == pytest.approx([first, second])
    smooth = per_sample_loss(PRED, TARGET, "smooth_l1", c)
    assert smooth.tolist() == pytest.approx([first, second / 0.5])


def test_huber_threshold_schedules():
    alphas_cumprod = torch.tensor([1.0, 0.5, 0.8, 0.0])
    t = torch.tensor([1, 2])
    constant = LossOptions(huber_schedule="constant", huber_c=0.1, huber_scale=2.0)
    assert huber_threshold(constant, alphas_cumprod, t, 1000).tolist() == pytest.approx([0.2, 0.2])
    exponential = LossOptions(huber_schedule="exponential", huber_c=0.1, huber_scale=2.0)
    ends = huber_threshold(exponential, alphas_cumprod, torch.tensor([0, 1000]), 1000)
    assert ends.tolist() == pytest.approx([2.0, 0.2])  # scale at t=0, c * scale at t=T
    snr_schedule = LossOptions(huber_schedule="snr", huber_c=0.1, huber_scale=5.0)
    # alpha 0.5: sigma = 1, (1 - c) / 4 + c; alpha 0.8: sigma = 0.5, (1 - c) / 2.25 + c
    assert huber_threshold(snr_schedule, alphas_cumprod, t, 1000).tolist() == \
        pytest.approx([0.9 / 4 + 0.1, 0.9 / 2.25 + 0.1])


ALPHAS = torch.tensor([1.0, 0.5, 0.8])  # SNR: clipped to 1000, 1, 4
STEPS = torch.tensor([0, 1, 2])
ONES = torch.ones(3)


def test_debiased_estimation_weights():
    options = LossOptions(debiased_estimation_loss=True)
    eps = loss_weights(options, ALPHAS, STEPS, ONES, v_prediction=False)
    assert eps.tolist() == pytest.approx([1 / math.sqrt(1000), 1.0, 0.5])
    v = loss_weights(options, ALPHAS, STEPS, ONES, v_prediction=True)
    assert v.tolist() == pytest.approx([1 / 1001, 0.5, 0.2])


def test_v_prediction_loss_scales():
    scaled = loss_weights(LossOptions(scale_v_pred_loss_like_noise_pred=True), ALPHAS, STEPS,
                          ONES, v_prediction=True)
    assert scaled.tolist() == pytest.approx([1000 / 1001, 0.5, 0.8])
    added = loss_weights(LossOptions(v_pred_like_loss=0.5), ALPHAS, STEPS, ONES,
                         v_prediction=False)
    assert added.tolist() == pytest.approx([1 + 0.5 * 1001 / 1000, 2.0, 1 + 0.5 / 0.8])


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("values, option, words", [
    ({"adaptive_noise_scale": 0.1}, "adaptive_noise_scale", "needs noise_offset"),
    ({"min_timestep": 600, "max_timestep": 500}, "min_timestep", "larger than max_timestep"),
    ({"scale_v_pred_loss_like_noise_pred": True}, "scale_v_pred_loss_like_noise_pred",
     "only with v_parameterization"),
    ({"v_pred_like_loss": 0.2, "v_parameterization": True, "v2": True}, "v_pred_like_loss",
     "cannot be used with v_parameterization"),
    ({"loss_type": "huber", "huber_c": 0.0}, "huber_c", "must be above 0"),
])
def test_combinations_sd_scripts_refuses(values, option, words):
    problems = errors(validate(Config("db", values), check_paths=False))
    assert [p.option for p in problems if p.option == option] == [option]
    assert words in next(str(p) for p in problems if p.option == option)


@pytest.mark.parametrize("flag", ["--max_timestep=1001", "--min_timestep=-1",
                                  "--loss_type=l3", "--huber_schedule=linear"])
def test_out_of_range_values_are_refused_in_one_line(tiny_model, dataset, tmp_path, flag):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model("tiny-v1"), dataset, out, "--max_train_steps=1",
                                      flag))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    name = flag.split("=")[0]
    assert len([line for line in result.stderr.splitlines() if name in line]) == 1
    assert not out.exists()


# ---------------------------------------------------------------- one run with all of them
NOISE_FLAGS = ["--min_timestep=100", "--max_timestep=900", "--noise_offset=0.05",
               "--noise_offset_random_strength", "--adaptive_noise_scale=0.01",
               "--multires_noise_iterations=3", "--multires_noise_discount=0.3",
               "--ip_noise_gamma=0.1", "--ip_noise_gamma_random_strength", "--zero_terminal_snr",
               "--debiased_estimation_loss", "--min_snr_gamma=5"]


@pytest.mark.slow
@pytest.mark.parametrize("model, extra", [
    ("tiny-v2-v", ["--v2", "--v_parameterization", "--scale_v_pred_loss_like_noise_pred",
                   "--loss_type=huber", "--huber_c=0.1", "--huber_schedule=snr",
                   "--huber_scale=1.0"]),
    ("tiny-v1", ["--v_pred_like_loss=0.2", "--loss_type=smooth_l1",
                 "--huber_schedule=exponential", "--huber_scale=2"]),
])
def test_a_run_with_every_noise_and_loss_flag_finishes(tiny_model, dataset, tmp_path, model, extra):
    out = tmp_path / "out"
    result = run_cli("db", *base_args(tiny_model(model), dataset, out, "--max_train_steps=2",
                                      "--cache_latents", *NOISE_FLAGS, *extra))
    assert result.returncode == 0, result.stderr
    losses = [e["loss"] for e in events(out) if e["kind"] == "step"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert events(out)[-1]["status"] == "finished"
    assert "loss_type = " in (out / "config.toml").read_text()
