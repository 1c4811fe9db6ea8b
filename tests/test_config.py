"""The option schema: one declaration drives the CLI, files and validation."""

from __future__ import annotations

import ast
import dataclasses
import json
import pickle
import typing
from pathlib import Path

import pytest

from helpers import run_cli
from trainer.config import (BY_NAME, MODES, OPTIONS, Config, current_version, load_config,
                            normalize, options_for, parse_args, read_file, register_migration,
                            rename_option, save_config, to_argv, validate)
from trainer.config import migrations
import trainer.config.schema
from trainer.config.validate import errors
from trainer.errors import UserError

SEED_OPTIONS = """pretrained_model_name_or_path train_data_dir reg_data_dir output_dir output_name
prior_loss_weight resolution train_batch_size learning_rate max_train_steps use_8bit_adam xformers
mem_eff_attn mixed_precision cache_latents gradient_checkpointing enable_bucket min_bucket_reso
max_bucket_reso color_aug flip_aug seed save_every_n_epochs save_state resume save_precision
save_model_as logging_dir log_prefix lr_scheduler lr_warmup_steps full_fp16 v2 v_parameterization
debug_dataset stop_text_encoder_training vae no_token_padding caption_extension
shuffle_caption""".split()

AWKWARD_TEXT = "C:\\Users\\Zoë \"Q\"/my 'data' #1"


def non_default(option, mode):
    """A valid value for `option` that differs from its default."""
    default = option.default_for(mode)
    if option.choices:
        return next((c for c in option.choices if c != default), default)
    if option.type is bool:
        return not default
    if option.type is int:
        low = int(option.minimum) if option.minimum is not None else 0
        value = low + 3
        return value if value != default else value + 1
    if option.type is float:
        value = (option.minimum or 0.0) + 0.25
        if option.maximum is not None:
            value = min(value, option.maximum)
        return value if value != default else value / 2
    if option.type is list:
        return ["weight_decay=0.01", "betas=0.9,0.99"]
    if option.name == "resolution":
        return "768,512"
    return AWKWARD_TEXT


def full_config(mode):
    return Config(mode, {o.name: non_default(o, mode) for o in options_for(mode)})


def test_seed_options_exist():
    missing = [name for name in SEED_OPTIONS if name not in BY_NAME]
    assert not missing


def test_options_are_typed_fields_of_config():
    """A type checker sees cfg.keep_tokens as an int: every option is an annotated field."""
    hints = typing.get_type_hints(Config)
    expected = {str: str, int: int, float: float, bool: bool, list: list[str]}
    for option in OPTIONS:
        annotation = expected[option.type]
        assert hints[option.name] == (annotation | None if option.nullable else annotation)
    assert hints["keep_tokens"] is int and hints["seed"] == int | None
    assert [f.name for f in dataclasses.fields(Config) if f.name != "mode"] == list(BY_NAME)


def test_config_keeps_mode_defaults_and_refuses_unknown_names():
    lora, db = Config("lora"), Config("db")
    assert (lora.learning_rate, db.learning_rate) == (1e-4, 2e-6)
    assert lora.optimizer_args == [] and lora.optimizer_args is not Config("lora").optimizer_args
    for cfg, name in ((lora, "learning_rat"), (lora, "mode"), (db, "__dict__")):
        with pytest.raises(AttributeError, match="no option named"):
            setattr(cfg, name, 1)
    lora.seed = 7
    assert lora.changed() == {"seed": 7} and lora.copy() == lora != Config("lora")
    assert lora.get("seed") == 7 and lora.get("mode", "none") == "none"
    assert pickle.loads(pickle.dumps(lora)) == lora


def test_the_option_schema_does_not_import_the_option_table():
    """schema.py (the shape of an option) is below options.py (the options): no cycle."""
    source = (Path(trainer.config.schema.__file__)).read_text(encoding="utf-8")
    assert "options" not in {node.module for node in ast.walk(ast.parse(source))
                             if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.must_exist], ids=lambda o: o.name)
def test_paths_declared_must_exist_are_checked(tmp_path, option):
    mode = "lora" if option.used_in("lora") else "db"
    missing = tmp_path / "gone" / ("model.safetensors" if option.path == "path" else "x")
    problems = validate(Config(mode, {option.name: str(missing)}))
    mine = [str(p) for p in problems if p.option == option.name]
    assert mine and f"{missing} does not exist" in mine[0]
    if option.expects:
        assert mine[0].endswith(f"; give {option.expects}")


def test_every_option_is_fully_declared():
    for option in OPTIONS:
        assert option.help.strip() and option.group, option.name
        assert option.modes and set(option.modes) <= set(MODES), option.name
        if option.choices and option.default is not None:
            assert option.default in option.choices, option.name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_every_option_round_trips_through_files(tmp_path, mode, suffix):
    cfg = full_config(mode)
    changeable = {o.name for o in options_for(mode) if not o.choices or len(o.choices) > 1}
    assert cfg.changed().keys() == changeable
    path = save_config(cfg, tmp_path / f"run{suffix}")
    assert load_config(path, mode) == cfg


@pytest.mark.parametrize("mode", MODES)
def test_every_option_round_trips_through_the_command_line(mode):
    cfg = full_config(mode)
    parsed, _ = parse_args(mode, to_argv(cfg))
    assert parsed == cfg


@pytest.mark.parametrize("mode", MODES)
def test_defaults_round_trip_through_toml(tmp_path, mode):
    cfg = Config(mode)  # unset (None) values are absent from TOML and come back unset
    assert load_config(save_config(cfg, tmp_path / "c.toml"), mode) == cfg


@pytest.mark.parametrize("mode", MODES)
def test_help_lists_every_option_of_the_mode(mode):
    result = run_cli(mode, "--help", check=True)
    for option in OPTIONS:
        shown = f"{option.flag} " in result.stdout or f"{option.flag}\n" in result.stdout
        assert shown == option.used_in(mode), option.name


def test_seed_command_line_parses():
    argv = ("--pretrained_model_name_or_path=model.safetensors --train_data_dir=img "
            "--reg_data_dir=reg --output_dir=out --resolution=768,512 --train_batch_size=20 "
            "--learning_rate=5e-6 --max_train_steps=800 --use_8bit_adam --xformers "
            "--mixed_precision=bf16 --save_every_n_epochs=1 --save_state --save_precision=bf16 "
            "--logging_dir=logs --enable_bucket --min_bucket_reso=384 --max_bucket_reso=1280 "
            "--color_aug --flip_aug --gradient_checkpointing --seed 42").split()
    cfg, _ = parse_args("db", argv)
    assert cfg.resolution == "768,512" and cfg.learning_rate == 5e-6 and cfg.seed == 42
    assert cfg.use_8bit_adam and cfg.flip_aug and not cfg.cache_latents
    assert cfg.mixed_precision == "bf16" and cfg.max_bucket_reso == 1280


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"mode": "db", "learning_rate": 1e-5, "cache_latents": True}))
    cfg, _ = parse_args("db", ["--config", str(path), "--learning_rate=3e-6",
                               "--cache_latents=false"])
    assert cfg.learning_rate == 3e-6 and cfg.cache_latents is False


def test_mode_defaults_differ_where_declared():
    assert Config("lora").learning_rate == 1e-4 and Config("db").learning_rate == 2e-6


@pytest.mark.parametrize("args, needle", [
    (["--resolution=500"], "--resolution: 500 is not divisible by 64"),
    (["--resolution=512,abc"], "--resolution: '512,abc' is not N or W,H"),
    (["--learning_rate=fast"], "--learning_rate: 'fast' is not a number"),
    (["--train_batch_size=0"], "--train_batch_size: 0 is below the minimum 1"),
    (["--mixed_precision=fp8"], "--mixed_precision: 'fp8' is not one of: no, fp16, bf16"),
    (["--cache_latents", "--color_aug"], "--color_aug: cannot be used with cache_latents"),
    (["--full_fp16", "--mixed_precision=bf16"], "--full_fp16: needs mixed_precision=fp16"),
    (["--train_data_dir="], "--train_data_dir: no training images given"),
    (["--learnig_rate=1"], "did you mean --learning_rate?"),
    (["--network_dim=8"], "unrecognized arguments: --network_dim"),
])
def test_bad_values_give_one_named_line(tmp_path, args, needle):
    base = ["--pretrained_model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o"),
            "--train_data_dir", str(tmp_path)]
    result = run_cli("db", *base, *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines and all(len(line) < 300 for line in error_lines)


def test_validate_reports_every_problem_at_once(tmp_path):
    cfg = Config("db", {"resolution": "500", "cache_latents": True, "color_aug": True,
                        "full_fp16": True, "mixed_precision": "bf16"})
    named = {p.option for p in errors(validate(cfg))}
    assert {"resolution", "color_aug", "full_fp16", "pretrained_model_name_or_path",
            "output_dir", "train_data_dir"} <= named


def test_unknown_key_in_a_file_is_named(tmp_path):
    path = tmp_path / "preset.json"
    path.write_text(json.dumps({"learning_rte": 1e-5}))
    with pytest.raises(UserError, match="unknown option 'learning_rte'.*learning_rate"):
        load_config(path, "db")


def test_config_of_the_other_mode_is_refused(tmp_path):
    path = save_config(Config("lora"), tmp_path / "lora.toml")
    result = run_cli("db", "--config", path)
    assert result.returncode == 2 and "is a LoRA config" in result.stderr


def test_lora_only_key_in_db_file_is_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"network_dim": 8}))
    with pytest.raises(UserError, match="network_dim.*only used by LoRA"):
        load_config(path, "db")


def test_output_config_writes_the_resolved_file(tmp_path):
    out = tmp_path / "resolved.toml"
    result = run_cli("lora", "--pretrained_model_name_or_path", str(tmp_path), "--output_dir",
                     str(tmp_path), "--train_data_dir", str(tmp_path), "--network_dim=16",
                     "--use_8bit_adam", "--output_config", str(out))
    assert result.returncode == 0, result.stderr
    cfg = load_config(out, "lora")
    assert cfg.network_dim == 16 and cfg.optimizer_type == "AdamW8bit"


@pytest.mark.parametrize("text", ["a\x7fb", "tab\there", "bell\x07", "line\nbreak"])
def test_control_characters_in_text_options_read_back(tmp_path, text):
    """A config the trainer writes must load again: TOML forbids raw control characters."""
    out = tmp_path / "run.toml"
    result = run_cli("db", "--pretrained_model_name_or_path", str(tmp_path), "--output_dir",
                     str(tmp_path), "--train_data_dir", str(tmp_path), "--output_name", text,
                     "--output_config", str(out))
    assert result.returncode == 0, result.stderr
    assert load_config(out).output_name == text


def test_validate_changes_nothing_and_normalize_returns_the_completed_config():
    cfg = Config("lora", {"use_8bit_adam": True, "cache_latents_to_disk": True,
                          "color_aug": True, "caption_extension": "txt",
                          "network_args": ["conv_dim=4", "conv_alpha=2"]})
    before = cfg.copy()
    problems = validate(cfg, check_paths=False)
    assert cfg == before
    # judged as the trainer will see it: cache_latents_to_disk turns cache_latents on
    assert "color_aug" in {p.option for p in errors(problems)}
    assert [p.option for p in problems if p.level == "warning"] == ["caption_extension"]
    done = normalize(cfg)
    assert cfg == before
    assert (done.optimizer_type, done.cache_latents, done.caption_extension) == \
        ("AdamW8bit", True, ".txt")
    assert (done.conv_dim, done.conv_alpha) == (4, 2.0)


def test_cli_still_trains_with_the_normalized_config(tmp_path):
    out = tmp_path / "resolved.toml"
    result = run_cli("db", "--pretrained_model_name_or_path", str(tmp_path), "--output_dir",
                     str(tmp_path), "--train_data_dir", str(tmp_path), "--use_8bit_adam",
                     "--caption_extension=txt", "--output_config", str(out))
    assert result.returncode == 0, result.stderr
    assert "'txt' has no leading dot" in result.stderr
    written = read_file(out)
    assert written["optimizer_type"] == "AdamW8bit" and written["caption_extension"] == ".txt"


def test_every_config_error_is_a_user_error_naming_the_option(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"learning_rate": "fast"}))
    with pytest.raises(UserError) as err:
        load_config(path, "db")
    assert err.value.option == "learning_rate" and err.value.hint is None
    assert str(err.value) == f"--learning_rate: {err.value.message}"
    assert str(UserError("no images", "add some", option="train_data_dir")) == \
        "--train_data_dir: no images (add some)"


@pytest.fixture
def renamed_learning_rate(monkeypatch):
    """A program one version on, in which learning_rate was once called 'lr'."""
    monkeypatch.setattr(migrations, "MIGRATIONS", list(migrations.MIGRATIONS))
    old_version = current_version()
    register_migration(rename_option("lr", "learning_rate"))
    return old_version


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_an_older_config_file_is_migrated_when_read(tmp_path, renamed_learning_rate, suffix):
    old = tmp_path / f"old{suffix}"
    if suffix == ".toml":
        old.write_text(f'config_version = {renamed_learning_rate}\nmode = "db"\nlr = 5e-5\n')
    else:
        old.write_text(json.dumps({"config_version": renamed_learning_rate, "lr": 5e-5}))
    assert load_config(old).learning_rate == 5e-5
    cfg, _ = parse_args("db", ["--config", str(old)])
    assert cfg.learning_rate == 5e-5
    # written again, it carries the new version and the new name, and is not migrated twice
    again = save_config(cfg, tmp_path / f"again{suffix}")
    assert read_file(again)["config_version"] == renamed_learning_rate + 1
    current = tmp_path / "current.json"
    current.write_text(json.dumps({"config_version": renamed_learning_rate + 1, "lr": 5e-5}))
    with pytest.raises(UserError, match="unknown option 'lr'"):
        load_config(current)


def test_a_config_file_from_a_newer_program_is_refused_in_one_line(tmp_path):
    path = tmp_path / "future.toml"
    path.write_text(f'config_version = {current_version() + 1}\nmode = "db"\n')
    result = run_cli("db", "--config_file", str(path), "--output_config", str(tmp_path / "o.toml"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path} was written by a newer version of this program (config_version "
        f"{current_version() + 1}; this one reads up to {current_version()}) (update the program "
        "to read it)"]
    assert not (tmp_path / "o.toml").exists()


@pytest.mark.parametrize("version", ["2", 0, True, 1.5])
def test_a_config_version_that_is_not_a_version_is_named(tmp_path, version):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"config_version": version}))
    with pytest.raises(UserError, match=r"odd.json: config_version .* is not a version number"):
        load_config(path)


@pytest.mark.parametrize("index, text_config, expected", [
    ({"text_encoder": [], "text_encoder_2": []}, {}, "1024"),
    ({"text_encoder": []}, {"hidden_act": "quick_gelu"}, "512"),
    ({"text_encoder": []}, {"hidden_act": "gelu"}, "512"),
])
def test_an_unset_resolution_becomes_the_base_models_native_size(tmp_path, index, text_config,
                                                                  expected):
    """SDXL trains around 1024 px unless told otherwise; SD 1.x/2.x-base around 512. Read from
    the model folder's configs, before anything is loaded."""
    model = tmp_path / "model"
    (model / "text_encoder").mkdir(parents=True)
    (model / "model_index.json").write_text(json.dumps(index))
    (model / "text_encoder" / "config.json").write_text(json.dumps(text_config))
    out = tmp_path / "resolved.toml"
    common = ["--pretrained_model_name_or_path", str(model), "--output_dir", str(tmp_path),
              "--train_data_dir", str(tmp_path), "--output_config", str(out)]
    result = run_cli("db", *common)
    assert result.returncode == 0, result.stderr
    assert load_config(out).resolution == expected
    result = run_cli("db", *common, "--resolution", "768,512")
    assert result.returncode == 0, result.stderr
    assert load_config(out).resolution == "768,512"
