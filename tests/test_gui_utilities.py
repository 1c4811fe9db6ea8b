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
