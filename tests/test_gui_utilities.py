"""The Utilities tab runs the trainer's own tools as subprocesses and streams their output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from trainer.commands import COMMANDS

pytestmark = [needs_chromium, pytest.mark.slow]


def needs_command(name: str):
    return pytest.mark.skipif(name not in COMMANDS,
                              reason=f"'python -m trainer {name}' is not registered in this version")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("utilities") / "home").start()
    yield app
    app.stop()


@needs_command("convert")
def test_convert_a_diffusers_model_to_a_single_file(page, server, tiny_model):
    target = server.home / "models é" / "tiny converted.safetensors"
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.locator("#convert-src input").fill(str(tiny_model("tiny-v1")))
    gui.page.locator("#convert-dst input").fill(str(target))
    gui.choose("#convert-precision", "fp16")
    status = gui.press("convert-run", "convert-status", expect="Done", timeout=180)
    assert "python -m trainer convert" in status
    assert target.is_file() and target.stat().st_size > 0
    status = gui.press("convert-run", "convert-status", expect="Failed", timeout=180)
    assert "exists" in status  # never overwritten without asking


def test_a_missing_tool_argument_is_reported_in_the_page(page, server):
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.get_by_role("tab", name="Merge LoRA").click()
    status = gui.press("merge-run", "merge-status", expect="no base model given")
    assert "type the base model" in status


@pytest.fixture(scope="module")
def lora_file(server, tiny_model):
    """A real kohya-format LoRA for the tiny model, with non-zero weights."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from trainer.networks import create_network

    model = tiny_model("tiny-v1")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder")
    network = create_network(unet, text_encoder, dim=4, alpha=2.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(std=0.05)
    return network.save(server.home / "loras é" / "my subject.safetensors")


@needs_command("lora-info")
def test_inspect_a_lora_file(page, server, lora_file):
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.get_by_role("tab", name="Inspect LoRA").click()
    gui.page.locator("#info-file input").fill(str(lora_file))
    gui.press("info-run", "info-status", expect="Done", timeout=180)
    output = gui.page.locator("#info-output textarea").input_value()
    assert "layers:      216 (U-Net 192, text encoder 24" in output
    assert "rank 4 alpha 2" in output and "my subject.safetensors" in output


@needs_command("lora-merge")
def test_merge_a_lora_into_the_base_model(page, server, tiny_model, lora_file):
    merged = server.home / "merged" / "with lora.safetensors"
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.get_by_role("tab", name="Merge LoRA").click()
    gui.page.locator("#merge-base input").fill(str(tiny_model("tiny-v1")))
    gui.page.locator("#merge-loras textarea").fill(f"{lora_file} : 0.8")
    gui.page.locator("#merge-out input").fill(str(merged))
    status = gui.press("merge-run", "merge-status", expect="Done", timeout=240)
    assert "my subject.safetensors:0.8" in status
    assert merged.is_file() and merged.stat().st_size > 100_000


# ------------------------------------------------------------------ single-file models
def test_the_demo_model_converts_with_the_tokenizer_field_through_the_api(server):
    from gui_api import GradioAPI
    from trainer.demo import files

    client = GradioAPI(server.base, server.token)
    target = server.home / "outputs" / "demo converted"
    status = client.call("convert-run", **{"convert-src": str(files.BASE_MODEL),
                                           "convert-dst": str(target)})[0]
    assert "Failed" in status and "tokenizer" in status and not target.exists()

    hidden = server.home / ".private" / "tokenizer"  # a dot-folder: never given to a tool
    shutil.copytree(files.TOKENIZER, hidden)
    status = client.call("convert-run", **{"convert-src": str(files.BASE_MODEL),
                                           "convert-dst": str(target),
                                           "convert-tokenizer": str(hidden)})[0]
    assert "tokenizer" in status and "outside the folders" in status and not target.exists()

    status = client.call("convert-run", **{"convert-src": str(files.BASE_MODEL),
                                           "convert-dst": str(target),
                                           "convert-tokenizer": str(files.TOKENIZER)})[0]
    assert "Done" in status and f"--tokenizer {files.TOKENIZER}" in status, status
    assert (target / "model_index.json").is_file() and (target / "tokenizer").is_dir()


@needs_command("lora-merge")
def test_merge_into_a_single_file_base_with_the_tokenizer_field(server, tiny_model, tiny_single,
                                                                lora_file):
    from gui_api import GradioAPI

    client = GradioAPI(server.base, server.token)
    merged = server.home / "outputs" / "merged single.safetensors"
    status = client.call("merge-run", **{"merge-base": str(tiny_single("tiny-v1")),
                                         "merge-loras": str(lora_file), "merge-out": str(merged),
                                         "merge-tokenizer": str(tiny_model("tiny-v1"))})[0]
    assert "Done" in status and "--tokenizer" in status, status
    assert merged.is_file() and merged.stat().st_size > 100_000


def test_convert_the_demo_model_in_the_page_with_its_tokenizer(page, server):
    from trainer.demo import files

    target = server.home / "outputs" / "demo in page.safetensors"
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.locator("#convert-src input").fill(str(files.BASE_MODEL))
    gui.page.locator("#convert-tokenizer input").fill(str(files.TOKENIZER))
    gui.page.locator("#convert-dst input").fill(str(target))
    status = gui.press("convert-run", "convert-status", expect="Done", timeout=180)
    assert "--tokenizer" in status
    assert target.is_file() and target.stat().st_size > 1_000_000


# ------------------------------------------------------------------ combine and extract
@needs_command("lora-extract")
def test_extract_a_lora_from_a_finetune_in_the_page(page, server, tiny_model, tiny_single,
                                                    lora_file):
    """The 'fine-tune' is the base with a LoRA merged in: extraction finds that LoRA again."""
    from trainer.models import load_model, save_model
    from trainer.networks.files import read_network_file
    from trainer.networks.merge import merge_into

    tuned = server.home / "models" / "tuned.safetensors"
    bundle = load_model(str(tiny_model("tiny-v1")))
    merge_into(bundle.unet, bundle.text_encoder, lora_file)
    save_model(bundle, tuned)
    out = server.home / "outputs" / "extracted lora.safetensors"
    gui = Gui(page, server).open()
    gui.tab("Utilities")
    gui.page.get_by_role("tab", name="Extract LoRA").click()
    gui.page.locator("#extract-base input").fill(str(tiny_single("tiny-v1")))
    gui.page.locator("#extract-tuned input").fill(str(tuned))
    gui.page.locator("#extract-out input").fill(str(out))
    gui.page.locator("#extract-tokenizer input").fill(str(tiny_model("tiny-v1")))
    gui.page.locator("#extract-dim input").fill("4")
    status = gui.press("extract-run", "extract-status", expect="Done", timeout=300)
    assert "python -m trainer lora-extract" in status and "--dim 4" in status
    output = gui.page.locator("#extract-output textarea").input_value()
    assert "with the text encoder" in output  # the merged LoRA changed it too
    tensors, _ = read_network_file(out)
    source, _ = read_network_file(lora_file)
    assert {k for k in tensors if k.endswith(".lora_down.weight")} == \
        {k for k in source if k.endswith(".lora_down.weight")}


@needs_command("lora-merge")
def test_combine_two_loras_into_one_through_the_api(server, lora_file):
    from gui_api import GradioAPI
    from trainer.networks.files import read_network_file

    client = GradioAPI(server.base, server.token)
    out = server.home / "outputs" / "combined.safetensors"
    loras = f"{lora_file} : 0.5\n{lora_file} : -0.25"
    status = client.call("combine-run", **{"combine-loras": loras, "combine-out": str(out)})[0]
    assert "Done" in status and "--base" not in status, status
    ranks = {v.shape[0] for k, v in read_network_file(out)[0].items()
             if k.endswith(".lora_down.weight")}
    assert ranks == {8}  # two rank-4 files, concatenated
    status = client.call("combine-run", **{"combine-loras": loras, "combine-out": str(out),
                                           "combine-rank": 2, "combine-overwrite": True})[0]
    assert "Done" in status and "--new_rank 2" in status, status
    assert {v.shape[0] for k, v in read_network_file(out)[0].items()
            if k.endswith(".lora_down.weight")} == {2}
    outside = Path("/var/tmp/combined-not-allowed.safetensors")  # beyond the GUI's folders
    status = client.call("combine-run", **{"combine-loras": loras,
                                           "combine-out": str(outside)})[0]
    assert "outside the folders" in status and not outside.exists()
