"""The GUI's logic without a browser: form values, commands, presets, kohya_ss import, folders."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from helpers import make_concept, make_image
from trainer.config import BY_NAME, MODES, OPTIONS, Config, load_config, validate
from trainer.config.kohya_import import import_kohya, looks_like_kohya
from trainer.errors import UserError
from ui import dataset_builder, tools
from ui.chart import loss_chart, smooth
from ui.formvalues import (check, command_line, config_from_widgets, launch_argv, to_widget,
                           widget_values)
from ui.presets import apply_preset, list_presets, read_preset, save_preset
from ui.workspace import BUILTIN_PRESETS, Workspace

REQUIRED = {"pretrained_model_name_or_path", "output_dir", "train_data_dir"}


def sample_value(option):
    """A valid value different from the option's default."""
    if option.choices:
        return next((c for c in reversed(option.choices) if c != option.default), option.default)
    if option.type is bool:
        return not option.default
    if option.type is int:
        return int(max(option.minimum or 0, 1)) + 2
    if option.type is float:
        return 0.25 if (option.maximum or 1) <= 1 else 2.5e-6
    if option.type is list:
        return ["a=1", "b=x y"]
    if option.name == "resolution":
        return "768,512"
    return "C:\\Users\\Zoë\\my \"quoted\" folder" if option.path else "text with space"


@pytest.mark.parametrize("mode", MODES)
def test_every_option_round_trips_through_its_widget(mode):
    cfg = Config(mode)
    for option in OPTIONS:
        if option.used_in(mode):
            setattr(cfg, option.name, sample_value(option))
    back, problems = config_from_widgets(mode, widget_values(cfg))
    assert problems == []
    for option in OPTIONS:
        if option.used_in(mode):
            assert back.get(option.name) == cfg.get(option.name), option.name
    assert config_from_widgets(mode, widget_values(Config(mode)))[0] == Config(mode)


def test_unreadable_widget_values_are_reported_per_option():
    raw = widget_values(Config("db"))
    raw.update(learning_rate="abc", resolution="500", max_train_steps="", seed="x")
    _, problems = check("db", raw, check_paths=False)
    text = [str(p) for p in problems]
    assert "--learning_rate: 'abc' is not a number" in text
    assert "--seed: 'x' is not a whole number" in text
    assert any(t.startswith("--max_train_steps: needs a value") for t in text)
    assert any(t.startswith("--resolution: 500 is not divisible by 64") for t in text)


def test_every_option_is_a_widget_of_the_form_with_its_help():
    import gradio as gr

    from ui.form import build_form, mode_radio

    with gr.Blocks():
        form = build_form(mode_radio("db"))
    assert list(form.widgets) == [o.name for o in OPTIONS]
    for option in OPTIONS:
        widget = form.widgets[option.name]
        assert widget.label == option.name and widget.info == option.help
        assert widget.visible == option.used_in("db")
    assert not form.groups["Network"].visible


def test_command_line_quotes_awkward_paths_for_the_shell():
    cfg = Config("lora", {"train_data_dir": "/data/it's \"here\" é/img",
                          "output_dir": "C:\\out dir\\run", "network_dim": 8, "cache_latents": True})
    argv = shlex.split(command_line(cfg, windows=False))
    assert argv[:4] == ["python", "-m", "trainer", "lora"]
    assert "--train_data_dir=/data/it's \"here\" é/img" in argv
    assert "--output_dir=C:\\out dir\\run" in argv and "--network_dim=8" in argv
    windows = command_line(cfg, windows=True)
    assert '"--output_dir=C:\\out dir\\run"' in windows


def test_the_trainer_is_started_the_same_way_for_several_gpus():
    # With num_processes > 1 the trainer relaunches itself through accelerate (and supervises).
    cfg = Config("db", {"num_processes": 2, "gpu_ids": "0,1"})
    assert launch_argv(cfg, python="py") == ["py", "-m", "trainer", "db"]
    assert "--num_processes=2" in command_line(cfg, windows=False)


def test_shipped_presets_load_and_validate():
    presets = {label: path for label, path in list_presets(Workspace.create()).items()
               if BUILTIN_PRESETS in path.parents}
    assert {"sd15-dreambooth-lowvram", "sd15-dreambooth-12gb", "sd15-dreambooth-24gb",
            "sd15-lora", "sd2-512-base", "sd2-768-v"} <= set(presets)
    for label, path in presets.items():
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert raw.get("description"), label
        cfg = load_config(path)
        problems = validate(cfg, check_paths=False)
        assert {p.option for p in problems if p.level == "error"} <= REQUIRED, (label, problems)
        assert {"v2", "v_parameterization", "resolution"} <= set(raw), label
    assert load_config(presets["sd2-768-v"]).v_parameterization
    # Whatever was loaded before, a preset leaves the form with its own model family and size.
    for first in presets.values():
        for second in presets.values():
            before = apply_preset(Config("db"), read_preset(first, "db"))
            after = apply_preset(before, read_preset(second, before.mode))
            alone = apply_preset(Config("db"), read_preset(second, "db"))
            for key in ("v2", "v_parameterization", "resolution", "learning_rate"):
                assert after.get(key) == alone.get(key), (first.name, second.name, key)


def test_preset_sets_only_its_keys_and_saved_preset_is_sparse(tmp_path):
    form = Config("db", {"output_name": "mine", "learning_rate": 3e-6})
    preset = read_preset(BUILTIN_PRESETS / "sd15-lora.json", "db")
    loaded = apply_preset(form, preset)
    assert loaded.mode == "lora" and loaded.network_dim == 16
    assert loaded.output_name == "mine"  # not in the preset
    assert loaded.learning_rate == 1e-4  # in the preset

    form.save_state = True
    path = save_preset(form, tmp_path / "p.json", "mine")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"config_version", "mode", "description", "output_name", "learning_rate",
                         "save_state"}
    again = apply_preset(Config("db"), read_preset(path, "db"))
    assert again == form


def test_kohya_ss_gui_config_maps_to_our_options():
    kohya = {
        "LoRA_type": "Kohya LoCon", "max_resolution": "512,768", "optimizer": "Lion",
        "learning_rate": "0.0001", "text_encoder_lr": "5e-05", "unet_lr": 0.0002,
        "max_train_steps": "", "epoch": 6, "lr_warmup": 5, "network_dim": 32,
        "network_alpha": 16, "conv_dim": 4, "conv_alpha": 1, "seed": 0, "clip_skip": 2,
        "save_every_n_epochs": 0, "xformers": "sdpa", "cache_latents": True,
        "lora_network_weights": "", "sample_prompts": "a sks dog --w 512",
        "additional_parameters": "--noise_offset 0.05 --keep_tokens=1 --unknown_flag",
        "vae_batch_size": 0, "stop_text_encoder_training": 0, "sdxl": False, "block_dims": "2,4",
        "gradient_accumulation_steps": 1.0, "max_data_loader_n_workers": "0",
    }
    assert looks_like_kohya(kohya) and not looks_like_kohya({"config_version": 1, "mode": "db"})
    result = import_kohya(kohya)
    values = result.values
    assert result.mode == "lora"
    assert values["resolution"] == "512,768" and values["optimizer_type"] == "Lion"
    assert values["max_train_epochs"] == 6 and values["max_train_steps"] == 1600
    assert values["conv_dim"] == 4 and values["network_dim"] == 32 and values["network_alpha"] == 16.0
    assert values["seed"] is None and values["save_every_n_epochs"] is None
    assert values["sdpa"] is True and values["clip_skip"] == 2 and values["vae_batch_size"] == 1
    assert values["noise_offset"] == 0.05 and values["keep_tokens"] == 1
    assert values["gradient_accumulation_steps"] == 1 and values["network_weights"] is None
    notes = "\n".join(result.notes)
    assert "lr_warmup is 5% of the steps" in notes  # no step count to convert it with
    assert "--unknown_flag" in notes and "block_dims" in notes and "sample_prompts" in notes
    cfg = Config("lora", values)
    assert not [p for p in validate(cfg, check_paths=False) if p.option not in REQUIRED and p.level == "error"]


def test_kohya_sdxl_config_imports_without_a_family_warning_and_flux_gets_one():
    """SDXL is trained here (told from the model's weights); Flux is not."""
    sdxl = import_kohya({"sdxl": True, "LoRA_type": "Standard", "network_dim": 16,
                         "max_resolution": "1024,1024"})
    assert sdxl.values["resolution"] == "1024,1024"
    assert not any("SDXL" in note or "sdxl" in note for note in sdxl.notes)
    flux = import_kohya({"flux1_checkbox": True, "LoRA_type": "Standard", "network_dim": 16})
    assert any("Flux config" in note for note in flux.notes)


def test_kohya_standard_lora_ignores_conv_and_converts_percentages():
    result = import_kohya({"LoRA_type": "Standard", "conv_dim": 8, "max_train_steps": 1000,
                           "lr_warmup": 10, "network_dim": 8, "optimizer": "DAdaptation"})
    assert "conv_dim" not in result.values and result.values["lr_warmup_steps"] == 100
    assert any("optimizer" in n and "DAdaptation" in n for n in result.notes)
    db = import_kohya({"max_resolution": "512,512", "max_train_steps": 400,
                       "stop_text_encoder_training": 25, "lr_warmup": 0, "optimizer": "AdamW"})
    assert db.mode == "db" and db.values["stop_text_encoder_training"] == 100


def test_folder_builder_copies_into_the_seed_layout(tmp_path):
    source = make_concept(tmp_path / "my photos", 3, captions={0: "sks dog on grass"})
    (source / "notes.pdf").write_bytes(b"%PDF")
    reg = make_concept(tmp_path / "reg pics", 4, color_index=2)
    dest = tmp_path / "dataset é"
    result = dataset_builder.build(dest, [source], "sks", "dog", 10, [reg], 1)
    assert result.concept_dir == dest / "img" / "10_sks dog"
    assert sorted(p.name for p in result.concept_dir.iterdir()) == [
        "img000.caption", "img000.png", "img001.png", "img002.png"]
    assert len(list((dest / "reg" / "1_dog").iterdir())) == 4
    assert result.copied == 4 and result.reg_copied == 4 and result.skipped == ["notes.pdf: not an image"]
    assert len(list(source.iterdir())) == 5  # the user's files are still there
    again = dataset_builder.build(dest, [source], "sks", "dog", 10, [reg], 1)
    assert again.copied == 0  # identical files are not copied twice
    make_image(tmp_path / "other" / "img000.png", color=(1, 2, 3), seed=9)
    with pytest.raises(UserError, match="already exists with other content"):
        dataset_builder.build(dest, [tmp_path / "other"], "sks", "dog", 10)
    with pytest.raises(UserError, match="identifier"):
        dataset_builder.build(dest, [source], "sk/s", "dog", 10)
    with pytest.raises(UserError, match="repeats must be at most 10,000"):
        dataset_builder.build(tmp_path / "dated", [source], "sks", "dog", 20230115)
    assert not (tmp_path / "dated").exists()  # refused before any folder is made


def test_balance_rule_with_numbers_and_suggested_repeats():
    short = dataset_builder.balance(images=5, repeats=20, reg_images=200, reg_repeats=1)
    assert short.samples == 100 and short.reg_samples == 200 and short.used_reg == 100
    assert short.suggested_repeats == 40
    assert "20 repeats × 5 images = 100" in short.text and "does not hold" in short.text
    fine = dataset_builder.balance(images=5, repeats=40, reg_images=200, reg_repeats=1)
    assert "holds" in fine.text and "does not hold" not in fine.text
    alone = dataset_builder.balance(images=5, repeats=20, reg_images=0, reg_repeats=1)
    assert alone.suggested_repeats == 20 and "No regularization images" in alone.text


def test_run_folders_are_proposed_fresh_and_browsing_is_limited(tmp_path):
    ws = Workspace.create(tmp_path / "home", roots=[str(tmp_path / "extra")])
    first = ws.propose_run_dir("sks dog/x")
    assert first.parent == ws.outputs and first.name.startswith("sks-dog-x-")
    first.mkdir(parents=True)
    assert ws.propose_run_dir("sks dog/x") != first
    second = ws.propose_run_dir("a")
    assert ws.propose_run_dir("a", avoid=(str(second),)) != second  # "New run folder" twice
    assert ws.allowed(ws.outputs / "a" / "b") and ws.allowed(tmp_path / "extra" / "f.png")
    assert ws.allowed(tmp_path / "home" / "datasets" / "x")
    assert not ws.allowed(tmp_path / "elsewhere") and not ws.allowed(tmp_path / "home-other")
    # The working directory is not a root (keys, .env), and nothing hidden is one either.
    assert not ws.allowed(tmp_path / "home" / "a") and not ws.allowed(tmp_path / "home")
    assert not ws.allowed(tmp_path / "extra" / ".ssh" / "id_rsa")
    assert not ws.allowed(ws.outputs / ".runs.json")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "link").symlink_to(tmp_path / "elsewhere")
    assert not ws.allowed(tmp_path / "extra" / "link" / "f.png")  # resolved, then checked


def test_loss_chart_draws_raw_and_smoothed_points():
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    svg = loss_chart([(i, 1.0 / i) for i in range(1, 51)])
    assert 'data-points="50"' in svg and svg.count("<polyline") == 2
    assert 'data-points="0"' in loss_chart([])
    assert 'data-points="1"' in loss_chart([(5, 0.3)])


def test_widget_for_optional_whole_numbers_can_be_empty():
    option = BY_NAME["max_train_epochs"]
    assert to_widget(option, None) == ""
    cfg, problems = config_from_widgets("db", {"max_train_epochs": "", "seed": "0"})
    assert problems == [] and cfg.max_train_epochs is None and cfg.seed == 0


def test_gui_help_runs_without_heavy_imports():
    from helpers import PYTHON, REPO

    result = subprocess.run([PYTHON, "app.py", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "--root DIR" in result.stdout


def test_tool_arguments_keep_awkward_paths_whole():
    argv = tools.merge_argv("C:\\models\\base 1.5.safetensors",
                            "C:\\loras\\my subject.safetensors : 0.7\n\n/home/zoë/style's.safetensors\n",
                            "out dir/merged.safetensors", save_precision="fp16", overwrite=True)
    assert argv == ["lora-merge", "--base", "C:\\models\\base 1.5.safetensors", "--lora",
                    "C:\\loras\\my subject.safetensors:0.7", "/home/zoë/style's.safetensors",
                    "--out", "out dir/merged.safetensors", "--save_precision", "fp16", "--overwrite"]
    assert tools.convert_argv("a", "b.ckpt", save_model_as="(default)", v2=True) == \
        ["convert", "a", "b.ckpt", "--v2"]
    assert tools.resize_argv("x.safetensors", 4) == ["lora-resize", "x.safetensors", "--new_dim", "4"]


def test_folder_browser_stays_inside_the_allowed_folders(tmp_path):
    from ui.browser import FolderBrowser

    ws = Workspace.create(tmp_path / "home", roots=[str(tmp_path / "home" / "data")])
    data = ws.home / "data"
    (data / "5_sks dog").mkdir(parents=True)
    (data / "prompts.txt").write_text("x", encoding="utf-8")
    (data / ".env").write_text("x", encoding="utf-8")
    (tmp_path / "secret").mkdir()
    browser = FolderBrowser(ws)
    assert browser.entries(data) == [
        ("5_sks dog/", str(data / "5_sks dog")), ("prompts.txt", str(data / "prompts.txt"))]
    assert browser.enter(data, str(data / "5_sks dog")) == data / "5_sks dog"
    assert browser.enter(data, str(tmp_path / "secret")) is None
    assert browser.enter(data, str(data / "prompts.txt")) is None
    assert browser.entries(tmp_path / "secret") == [] and browser.entries(ws.home) == []
    assert browser.parent(data) == data  # not above the root
    assert browser.parent(data / "5_sks dog") == data


def test_app_refuses_half_a_login_and_unknown_roots(tmp_path):
    from helpers import PYTHON, REPO

    def app(*args):
        return subprocess.run([PYTHON, str(REPO / "app.py"), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    result = app("--username", "me")
    assert result.returncode == 2 and "--username and --password go together" in result.stderr
    result = app("--root", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "nowhere: not a folder" in result.stderr


def test_config_paths_must_be_inside_the_roots_but_hub_ids_pass(tmp_path):
    from trainer.config import Config
    from ui.paths import config_problems

    ws = Workspace.create(tmp_path / "home", roots=[str(tmp_path / "models")])
    (tmp_path / "models").mkdir()
    cfg = Config("db", {"pretrained_model_name_or_path": "runwayml/stable-diffusion-v1-5",
                        "train_data_dir": str(ws.outputs / "data"),
                        "output_dir": str(ws.outputs / "run"),
                        "vae": str(tmp_path / "models" / "vae.safetensors")})
    assert config_problems(ws, cfg) == []
    cfg.sample_prompts = str(tmp_path / "home" / ".env")
    cfg.pretrained_model_name_or_path = "../elsewhere/model.ckpt"
    assert [p.option for p in config_problems(ws, cfg)] == ["pretrained_model_name_or_path",
                                                             "sample_prompts"]
