"""The Train tab in a real browser: form from the schema, Check, Print command, presets."""

from __future__ import annotations

import json
import shlex

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from helpers import make_db_dataset

pytestmark = [needs_chromium, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A working directory with a space, quotes and non-ASCII letters, as users' folders have.
    home = tmp_path_factory.mktemp("train") / "my runs é 'q'"
    app = AppServer(home).start()
    yield app
    app.stop()


@pytest.fixture
def gui(page, server):
    return Gui(page, server).open()


def test_page_serves_fast_and_proposes_a_fresh_run_folder(gui, server):
    assert server.start_seconds < 20, f"first page after {server.start_seconds:.1f} s"
    print(f"\npage start time: {server.start_seconds:.2f} s")
    output_dir = gui.value("output_dir")
    assert output_dir.startswith(str(server.home / "outputs" / "db-"))
    assert gui.value("logging_dir") == output_dir + "/logs"
    gui.click("train-new-folder")
    gui.page.wait_for_function(
        "old => { const e = document.querySelector('#opt-output_dir input'); return !!e && e.value !== old; }", arg=output_dir)


def test_check_shows_every_problem_in_the_page(gui):
    gui.set("resolution", "500")
    gui.set("learning_rate", "abc")
    gui.set("train_data_dir", "no such folder")
    text = gui.press("train-check", expect="error")
    assert "--resolution: 500 is not divisible by 64" in text
    assert "--learning_rate: 'abc' is not a number" in text
    assert "--pretrained_model_name_or_path: no base model given" in text
    assert "--train_data_dir: no such folder does not exist" in text
    gui.set("resolution", "512")
    gui.set("learning_rate", "1e-6")
    text = gui.press("train-check", expect="error")
    assert "resolution" not in text and "learning_rate" not in text


def test_print_command_shows_a_copyable_command_line(gui, server):
    data = server.home / "data 'x' é"
    train, reg = make_db_dataset(data)
    gui.set("pretrained_model_name_or_path", str(server.home / "model.safetensors"))
    gui.set("train_data_dir", str(train))
    gui.set("reg_data_dir", str(reg))
    gui.set("learning_rate", "1e-6")
    gui.set("mixed_precision", "bf16")
    gui.set("cache_latents", True)
    gui.click("train-print")
    command = gui.page.locator("#train-command textarea")
    command.wait_for()
    gui.page.wait_for_function("() => document.querySelector('#train-command textarea')?.value")
    argv = shlex.split(command.input_value())
    assert argv[:4] == ["python", "-m", "trainer", "db"]
    assert f"--train_data_dir={train}" in argv and f"--reg_data_dir={reg}" in argv
    assert {"--learning_rate=1e-06", "--mixed_precision=bf16", "--cache_latents"} <= set(argv)
    assert gui.page.locator("#train-command button").count() >= 1  # the copy button


def test_lora_mode_shows_the_network_options(gui):
    assert not gui.page.locator("#group-network").is_visible()
    assert gui.value("learning_rate") == "2e-06"
    gui.page.locator("#train-mode label", has_text="LoRA").click()
    gui.page.locator("#group-network").wait_for()
    assert gui.value("learning_rate") == "0.0001"  # LoRA's own default
    assert gui.value("network_dim") == "4"
    assert not gui.page.locator("#opt-stop_text_encoder_training").is_visible()
    gui.page.locator("#train-mode label", has_text="DreamBooth").click()
    gui.page.locator("#group-network").wait_for(state="hidden")
    assert gui.value("learning_rate") == "2e-06"


def test_builtin_preset_sets_only_its_keys(gui):
    gui.set("output_name", "kept")
    gui.choose("#preset-select", "sd15-lora")
    gui.wait_text("preset-about", "rank 16")
    gui.press("preset-load", expect="Loaded sd15-lora.json")
    assert gui.page.locator("#train-mode input[value=lora]").is_checked()
    assert gui.value("network_dim") == "16"
    assert gui.value("network_alpha") == "8"
    assert gui.value("lr_scheduler") == "cosine"
    assert gui.value("cache_latents") is True
    assert gui.value("output_name") == "kept"  # not in the preset: untouched


def test_saved_preset_loads_back_into_the_same_form(gui, server):
    gui.choose("#preset-select", "sd15-dreambooth-12gb")
    gui.press("preset-load", expect="Loaded")
    gui.set("learning_rate", "3e-6")
    gui.set("train_batch_size", "3")
    gui.set("output_name", "my model")
    gui.page.locator("#preset-name input").fill("my subject")
    gui.page.locator("#preset-description input").fill("twelve gig, tuned")
    gui.press("preset-save-as", expect="Saved")
    saved = json.loads((server.home / "user_presets" / "my-subject.json").read_text())
    assert saved["mode"] == "db" and saved["description"] == "twelve gig, tuned"
    assert saved["learning_rate"] == 3e-6 and saved["train_batch_size"] == 3
    assert "network_dim" not in saved and "lr_scheduler" not in saved  # sparse: defaults left out
    assert saved["resolution"] == "512"  # the preset's size, not the model's native one

    gui.set("learning_rate", "9e-6")
    gui.set("train_batch_size", "7")
    gui.set("output_name", "other")
    gui.choose("#preset-select", "user: my-subject")
    gui.press("preset-load", expect="Loaded my-subject.json")
    assert gui.value("learning_rate") == "3e-06"
    assert gui.value("train_batch_size") == "3"
    assert gui.value("output_name") == "my model"
    assert gui.value("save_state") is True

    gui.click("preset-download")
    link = gui.page.locator("#preset-file a").first
    link.wait_for()
    with gui.page.expect_download() as download:
        link.click()
    downloaded = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert downloaded["learning_rate"] == 3e-6 and downloaded["output_name"] == "my model"


def test_kohya_ss_config_is_imported_from_a_file(gui, tmp_path):
    kohya = {"LoRA_type": "Standard", "max_resolution": "768,512", "optimizer": "AdamW8bit",
             "learning_rate": "0.0002", "max_train_steps": "2000", "lr_warmup": "10",
             "network_dim": 32, "network_alpha": 16, "epoch": 1, "xformers": "xformers",
             "lora_network_weights": "", "seed": "1234", "block_dims": "2,2,2"}
    path = tmp_path / "kohya config.json"
    path.write_text(json.dumps(kohya), encoding="utf-8")
    text = gui.upload("preset-upload", [path], expect="Loaded")
    assert "lr_warmup: 10% of 2000 steps -> lr_warmup_steps=200" in text
    assert "block_dims" in text  # no equivalent: named, not dropped silently
    assert gui.page.locator("#train-mode input[value=lora]").is_checked()
    assert gui.value("resolution") == "768,512"
    assert gui.value("optimizer_type") == "AdamW8bit"
    assert gui.value("network_dim") == "32"
    assert gui.value("lr_warmup_steps") == "200"
    assert gui.value("xformers") is True


def test_browse_puts_folder_and_file_paths_into_the_form(gui, server):
    datasets = server.home / "datasets"  # an allowed folder; the working directory is not
    train, _ = make_db_dataset(datasets / "browse me", reg_images=0)
    prompts = datasets / "browse me" / "prompts.txt"
    prompts.write_text("a sks dog\n", encoding="utf-8")
    gui.open_accordion("browse")
    gui.page.locator("#browse-root input[role=combobox]").click()  # (the path holds a quote)
    gui.page.locator("#browse-root li[role=option]", has_text="datasets").click()
    gui.page.locator("#browse-entries", has_text="browse me/").wait_for()
    entries = gui.page.locator("#browse-entries")
    entries.get_by_text("browse me/", exact=True).click()
    entries.get_by_text("img/", exact=True).click()
    entries.get_by_text("5_sks dog/", exact=True).wait_for()
    gui.click("browse-use-here")
    gui.page.wait_for_function(
        "v => document.querySelector('#opt-train_data_dir input')?.value === v", arg=str(train))
    gui.click("browse-up")
    entries.get_by_text("prompts.txt", exact=True).click()
    gui.choose("#browse-target", "sample_prompts")
    gui.click("browse-use")
    gui.reveal("sample_prompts")
    gui.page.wait_for_function(
        "v => document.querySelector('#opt-sample_prompts input')?.value === v", arg=str(prompts))
    gui.click("browse-up")
    gui.click("browse-up")  # never above the allowed folder
    assert entries.get_by_text("browse me/", exact=True).is_visible()
