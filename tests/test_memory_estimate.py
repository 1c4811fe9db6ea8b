"""The peak-GPU-memory estimate: its parts against the real thing on the CPU, behaviour a user
would notice on the real SD 1.5 architecture (on meta, no weights allocated), and the surfaces
(CLI flag, dataset report, the GUI's Check)."""

from __future__ import annotations

import sys

import pytest
import torch

from helpers import REPO, make_db_dataset, run_cli
from trainer.config import Config, load_config, validate
from trainer.memory import estimate_vram
from trainer.memory.architecture import MetaModels, from_spec, meta_models
from trainer.memory.autocast import GpuLikeMode
from trainer.memory.saved import SavedLog, storage_key
from trainer.memory.step import place, trace_step

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser

GIB = 1024 ** 3
CPU = torch.device("cpu")


def _real(path) -> MetaModels:
    from trainer.models import load_model

    bundle = load_model(str(path))
    return MetaModels(bundle.unet, bundle.text_encoder, bundle.vae)


def _sd15(mode: str, **values):
    cfg = Config(mode, {"resolution": "512", **values})
    return estimate_vram(cfg, from_spec("sd15"))


# ------------------------------------------------------------------ against the real thing


@pytest.mark.parametrize("mode,values", [
    ("db", {"mixed_precision": "bf16", "gradient_checkpointing": True}),
    ("lora", {"mem_eff_attn": True, "conv_dim": 4}),
])
def test_meta_forward_saves_exactly_what_a_real_cpu_forward_saves(tiny_model, mode, values):
    cfg = Config(mode, {"resolution": "64", "train_batch_size": 2, **values})
    path = tiny_model("tiny-v1")
    meta = trace_step(cfg, place(cfg, meta_models(str(path))))
    real = trace_step(cfg, place(cfg, _real(path), CPU))
    assert meta.log.total() == real.log.total() > 0
    assert meta.log.total(with_blocks=False) == real.log.total(with_blocks=False)
    assert meta.log.backward_peak(False) == real.log.backward_peak(False)
    # On the CPU the log's bytes are those of the distinct real buffers it saw.
    buffers = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in real.log.refs}
    assert sum(buffers.values()) == real.log.total()


def _measured_step_peak(cfg, placed) -> int:
    """Peak bytes the CPU allocator holds beyond the weights over two real training steps
    (from the profiler's allocation and free events): activations, gradients, optimizer state."""
    from torch.profiler import ProfilerActivity, profile

    from trainer.train.optim import build_optimizer
    from trainer.train.text import TextSettings, encode

    target, batch = placed.target, cfg.train_batch_size
    groups = [{"params": g["params"], "lr": g["lr"]} for g in target.param_groups()]
    opt = build_optimizer(cfg.optimizer_type, groups, 1e-4, [])
    ids, timesteps = torch.zeros(batch, 77, dtype=torch.long), torch.zeros(batch, dtype=torch.long)
    latents = torch.zeros(batch, 4, 16, 16)  # 128 px

    def step():
        with torch.set_grad_enabled(target.trains_text_encoder(0)):
            hidden = encode(target.forward_text_encoder(), ids, TextSettings())
        prediction = target.forward_unet()(latents, timesteps, hidden).sample
        torch.nn.functional.mse_loss(prediction.float(), latents).backward()
        torch.nn.utils.clip_grad_norm_(placed.trained, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    held = peak = 0
    for event in events:
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def test_estimate_matches_the_cpu_allocators_peak_over_real_steps(tiny_model):
    """In float32 the CPU runs the step as a GPU would (its SDPA is a fused kernel too), so the
    allocated peak beyond the weights can be compared with the allocator's real one. (LoRA:
    mostly activations. DreamBooth with checkpointing measured 1.05x, without 1.03x; the
    profiler makes each case slow, so one runs here.)"""
    path = tiny_model("tiny-v1")
    cfg = Config("lora", {"resolution": "128", "train_batch_size": 2})
    measured = _measured_step_peak(cfg, place(cfg, _real(path), CPU))
    estimate = estimate_vram(cfg, meta_models(str(path)))
    assert 0.95 * measured < estimate.allocated - estimate.weights < 1.2 * measured


def test_kernel_attention_is_what_keeps_the_n_by_n_scores_out():
    """At 512 px the U-Net's first level attends over 4096 tokens: the CUDA kernels keep q, k,
    v, the output and a logsumexp, where plain attention would keep the 4096 x 4096 scores."""
    unet = from_spec("sd15").unet
    totals = {}
    for kernel in (True, False):
        log = SavedLog(skip={storage_key(p) for p in unet.parameters()})
        latents = torch.zeros(1, 4, 64, 64, device="meta")
        context = torch.zeros(1, 77, 768, device="meta")
        with log.hooks(), GpuLikeMode(torch.float16, kernel_attention=kernel):
            unet(latents, torch.zeros(1, dtype=torch.long, device="meta"), context)
        totals[kernel] = log.total()
    scores = 8 * 4096 * 4096 * 2  # one fp16 score matrix of one first-level self-attention
    assert totals[False] - totals[True] > 5 * scores


def test_emulated_autocast_saves_what_torch_autocast_saves_for_matmuls_and_convs():
    """The ops autocast runs in the lower precision are the same on CPU and CUDA."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 8 * 8, 16), torch.nn.Linear(16, 4))
    x = torch.randn(2, 4, 8, 8)
    sums = []
    for context in (lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                    lambda: GpuLikeMode(torch.bfloat16)):
        log = SavedLog(skip={storage_key(p) for p in net.parameters()})
        with log.hooks(), context():
            net(x)
        sums.append(log.total())
    assert sums[0] == sums[1] > 0


def test_weights_gradients_and_optimizer_state_equal_a_real_training_setup(tiny_model):
    """The trainer's own placement and optimizers on the real tiny model, one real step."""
    from trainer.memory.optimizer_state import optimizer_bytes
    from trainer.train.optim import build_optimizer

    path = tiny_model("tiny-v1")
    cfg = Config("db", {"resolution": "64", "stop_text_encoder_training": 0})
    placed = place(cfg, _real(path), CPU)
    estimate = estimate_vram(cfg, meta_models(str(path)))
    weights = {p.data_ptr(): p.numel() * p.element_size() for p in placed.trained + placed.frozen}
    assert estimate.weights == sum(weights.values())
    assert estimate.gradients == sum(p.numel() * p.element_size() for p in placed.trained)
    meta = place(cfg, meta_models(str(path))).trained
    # Prodigy keeps a 1-element p0 for a tensor that is all zeros (freshly built biases here).
    zeros = sum(p.numel() * p.element_size() - p.element_size() for p in placed.trained
                if not p.detach().any())
    for optimizer in ("AdamW", "AdamW8bit", "Lion8bit", "Adafactor", "Prodigy"):
        groups = [{"params": g["params"], "lr": g["lr"]} for g in placed.target.param_groups()]
        opt = build_optimizer(optimizer, groups, 1e-4, [])
        for p in placed.trained:
            p.grad = torch.zeros_like(p)
        opt.step()
        # bitsandbytes' quantization tables (qmap*) are shared by all tensors: 1-2 KB in all
        states = sum(t.numel() * t.element_size() for state in opt.state.values()
                     for key, t in state.items() if torch.is_tensor(t)
                     and not key.startswith("qmap"))
        expected = states + (zeros if optimizer == "Prodigy" else 0)
        assert optimizer_bytes(optimizer, meta) == expected, optimizer
    assert estimate.optimizer == optimizer_bytes("AdamW", meta)


def test_single_file_and_diffusers_folder_give_the_same_estimate(tiny_model, tiny_single):
    values = {"resolution": "128", "mixed_precision": "fp16"}
    folder = estimate_vram(Config("db", {**values, "pretrained_model_name_or_path":
                                         str(tiny_model("tiny-v1"))}))
    single = estimate_vram(Config("db", {**values, "pretrained_model_name_or_path":
                                         str(tiny_single("tiny-v1", "safetensors"))}))
    assert (single.weights, single.gradients, single.optimizer) == \
        (folder.weights, folder.gradients, folder.optimizer)
    assert single.total == folder.total


# ------------------------------------------------------------------ what a user would notice


def test_batch_checkpointing_lora_8bit_and_fp16_move_the_estimate_the_right_way():
    base = dict(mixed_precision="fp16")
    one, two = _sd15("lora", **base), _sd15("lora", **base, train_batch_size=2)
    assert 1.8 < two.saved_activations / one.saved_activations < 2.2
    assert 1.6 < two.activations / one.activations < 2.2
    checkpointed = _sd15("lora", **base, gradient_checkpointing=True)
    assert checkpointed.saved_activations < 0.3 * one.saved_activations
    assert checkpointed.total < one.total
    db = _sd15("db", **base)
    assert one.total < 0.5 * db.total
    adam8 = _sd15("db", **base, optimizer_type="AdamW8bit")
    assert adam8.optimizer < 0.3 * db.optimizer and adam8.total < db.total
    half = _sd15("db", **base, full_fp16=True)
    assert half.weights < db.weights and half.gradients == db.gradients // 2
    sliced = _sd15("lora", **base, mem_eff_attn=True)
    assert sliced.saved_activations > 2 * one.saved_activations  # it keeps the N x N scores


PRESETS = ("sd15-dreambooth-lowvram", "sd15-dreambooth-12gb", "sd15-lora")


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_sd15_presets(name, capsys):
    cfg = load_config(REPO / "presets" / f"{name}.json")
    validate(cfg, check_paths=False)
    estimate = estimate_vram(cfg, from_spec("sd15"))
    with capsys.disabled():
        print(f"\n{name}: {estimate.summary()}\n{estimate.breakdown()}")
    unet_params = sum(p.numel() for p in from_spec("sd15").unet.parameters())
    if cfg.mode == "db":  # the U-Net's trained weights and their gradients are there
        assert estimate.allocated > 2 * (2 if cfg.full_fp16 else 4) * unet_params
    else:  # the frozen U-Net in bf16 is there
        assert estimate.weights > 2 * unet_params
    assert estimate.total == estimate.allocated + estimate.overhead
    assert estimate.card_gb() is not None and estimate.summary().startswith("about ")


# ------------------------------------------------------------------ surfaces


def test_cli_prints_the_estimate_and_trains_nothing(tiny_model, tmp_path):
    out = tmp_path / "run"
    result = run_cli("lora", "--estimate_memory", "--pretrained_model_name_or_path",
                     tiny_model("tiny-v1"), "--resolution", "128", "--output_dir", out,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "estimated peak GPU memory: about" in result.stdout
    assert "optimizer state" in result.stdout and "total on the card" in result.stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_bad_model_is_one_line_without_traceback(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"not a model")
    result = run_cli("db", "--estimate_memory", "--pretrained_model_name_or_path", fake,
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and str(fake) in result.stderr


def test_debug_dataset_adds_the_estimate_line_when_a_model_is_given(tiny_model, tmp_path):
    train, _ = make_db_dataset(tmp_path / "data", reg_images=0)
    result = run_cli("db", "--debug_dataset", "--train_data_dir", train,
                     "--pretrained_model_name_or_path", tiny_model("tiny-v1"),
                     "--resolution", "128", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("estimated peak GPU memory: about")
    assert "sks dog" in result.stdout  # the report itself follows


def test_gui_check_shows_the_estimate_after_the_problems(tiny_model, tmp_path):
    import gradio as gr

    from trainer.config import OPTIONS
    from ui import train_tab
    from ui.context import AppContext
    from ui.formvalues import widget_values
    from ui.runner import Runner
    from ui.workspace import Workspace

    model = tiny_model("tiny-v1")
    # the GUI opens only what lies in its allowed folders
    workspace = Workspace.create(tmp_path, roots=[str(tmp_path), str(model.parent)])
    ctx = AppContext(workspace, Runner(workspace))
    with gr.Blocks():
        tab = train_tab.build(ctx)
    train, _ = make_db_dataset(tmp_path / "data", reg_images=0)
    cfg = Config("lora", {"pretrained_model_name_or_path": str(tiny_model("tiny-v1")),
                          "train_data_dir": str(train), "output_dir": str(tmp_path / "out"),
                          "resolution": "128"})
    values = widget_values(cfg)
    args = ["lora", *(values[name] for name in tab.form.widgets)]
    shown = list(tab.handlers.check(*args))
    assert "ready to start" in shown[0]
    assert "Estimated peak GPU memory: about" in shown[-1] and "ready to start" in shown[-1]
    assert not (tmp_path / "out").exists()
    cfg.pretrained_model_name_or_path = None  # an error: the problems only, no estimate
    values = widget_values(cfg)
    shown = list(tab.handlers.check("lora", *(values[name] for name in tab.form.widgets)))
    assert len(shown) == 1 and "no base model given" in shown[0]
    assert len(OPTIONS) == len(tab.form.widgets)


@pytest.mark.parametrize("name", ["sd15-dreambooth-lowvram", "sd15-dreambooth-12gb",
                                  "sd15-dreambooth-24gb", "sd15-lora", "sd2-512-base",
                                  "sd2-768-v"])
def test_shipped_presets_fit_the_card_they_promise(name):
    """A preset that names a card size ('for 8 GB GPUs') must fit it by the estimate."""
    sys.path.insert(0, str(REPO / "bench" / "gpu"))
    from setup import promised_gb, read_preset

    promised = promised_gb(read_preset(name))
    assert promised, f"{name} names no card size"
    cfg = load_config(REPO / "presets" / f"{name}.json")
    spec = "sd21" if cfg.v_parameterization else "sd21-base" if cfg.v2 else "sd15"
    estimate = estimate_vram(cfg, from_spec(spec))
    assert estimate.card_gb() <= promised, f"{name}: {estimate.summary()}, promised {promised} GB"


# ------------------------------------------------------------------ SDXL

XL_PRESETS = {
    "sdxl-lora-12gb": dict(gradient_checkpointing=False, cache_text_encoder_outputs=False,
                           cache_text_encoder_outputs_to_disk=False,
                           network_train_unet_only=False),
    "sdxl-lora-24gb": dict(gradient_checkpointing=False),
    "sdxl-dreambooth-24gb": dict(full_bf16=False, fused_backward_pass=False,
                                 gradient_checkpointing=False),
}


def test_the_sdxl_architecture_has_the_real_sizes():
    models = from_spec("sdxl")
    millions = [sum(p.numel() for p in part.parameters()) / 1e6
                for part in (models.unet, models.text_encoder, models.text_encoder_2, models.vae)]
    for got, real in zip(millions, (2567, 123, 695, 84)):
        assert abs(got - real) < 0.01 * real, millions


@pytest.mark.parametrize("name", list(XL_PRESETS))
def test_sdxl_presets_fit_their_card_and_not_without_their_memory_savers(name, capsys):
    sys.path.insert(0, str(REPO / "bench" / "gpu"))
    from setup import promised_gb, read_preset

    promised = promised_gb(read_preset(name))
    cfg = load_config(REPO / "presets" / f"{name}.json")
    assert not [p for p in validate(cfg, check_paths=False) if p.level == "error"
                and p.option not in ("pretrained_model_name_or_path", "output_dir",
                                     "train_data_dir")]
    models = from_spec("sdxl")
    estimate = estimate_vram(cfg, models)
    with capsys.disabled():
        print(f"\n{name}: {estimate.summary()}\n{estimate.breakdown()}")
    assert estimate.card_gb() is not None and estimate.card_gb() <= promised, estimate.summary()
    unet = sum(p.numel() for p in models.unet.parameters())
    assert estimate.weights > 2 * unet  # the whole U-Net is there, in 16 bits at least
    without = cfg.copy()
    for option, value in XL_PRESETS[name].items():
        setattr(without, option, value)
    assert estimate_vram(without, from_spec("sdxl")).total > promised * GIB * 0.95


def test_full_bf16_and_fused_backward_pass_move_the_sdxl_estimate():
    base = Config("db", {"resolution": "1024", "mixed_precision": "bf16",
                         "gradient_checkpointing": True, "optimizer_type": "Adafactor",
                         "cache_text_encoder_outputs": True})
    plain = estimate_vram(base, from_spec("sdxl"))
    half = estimate_vram(Config("db", {**base.to_dict(), "full_bf16": True}), from_spec("sdxl"))
    fused = estimate_vram(Config("db", {**base.to_dict(), "full_bf16": True,
                                        "fused_backward_pass": True}), from_spec("sdxl"))
    unet = sum(p.numel() for p in from_spec("sdxl").unet.parameters())
    assert plain.gradients == 4 * unet and half.gradients == 2 * unet
    assert half.weights < 0.6 * plain.weights
    assert fused.gradients < 0.02 * half.gradients  # one tensor's gradient at a time
    assert plain.total > half.total > fused.total


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


def test_sdxl_meta_forward_saves_what_a_real_cpu_forward_saves(tiny_xl):
    from trainer.memory.xl import place_xl, trace_xl
    from trainer.models import load_model

    cfg = Config("lora", {"resolution": "64", "train_batch_size": 2,
                          "gradient_checkpointing": True})
    bundle = load_model(str(tiny_xl), xl=True)
    real_models = MetaModels(bundle.unet, bundle.text_encoder, bundle.vae, bundle.text_encoder_2)
    meta = trace_xl(cfg, place_xl(cfg, meta_models(str(tiny_xl))))
    real = trace_xl(cfg, place_xl(cfg, real_models, CPU))
    assert meta.log.total() == real.log.total() > 0
    assert meta.log.backward_peak(False) == real.log.backward_peak(False)


def test_cli_estimates_an_sdxl_folder_and_single_file_alike(tiny_xl, tmp_path):
    from trainer.models import load_model, save_model

    single = save_model(load_model(str(tiny_xl), xl=True), tmp_path / "tiny-xl.safetensors")
    shown = []
    for model in (tiny_xl, single):
        result = run_cli("lora", "--estimate_memory", "--pretrained_model_name_or_path", model,
                         "--resolution", "128", "--network_train_unet_only",
                         "--cache_text_encoder_outputs", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "text encoders off the GPU" in result.stdout
        shown.append(result.stdout)
    assert shown[0] == shown[1]
