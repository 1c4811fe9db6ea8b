"""The Utilities tab runs the trainer's own tools as subprocesses and streams their output."""

from __future__ import annotations

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from trainer.commands import COMMANDS

pytestmark = needs_chromium


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
