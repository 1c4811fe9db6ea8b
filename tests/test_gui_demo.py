"""A new user's first minute: the page opens on the Demo preset and Start trains it."""

from __future__ import annotations


import pytest
from gui_browser import (AppServer, Gui, browser, needs_chromium, page,  # noqa: F401 - fixtures
                         wait_progress)
from trainer.demo import files

pytestmark = [needs_chromium, pytest.mark.slow]
STEPS = 4  # the shortest run that still shows samples at the start, half-way and the end


def test_the_page_starts_on_the_demo_preset_and_start_trains_it(page, tmp_path):
    server = AppServer(tmp_path / "home")
    server.extra = []  # the app's own default preset, as a user who just ran launch.sh gets it
    server.start()
    try:
        gui = Gui(page, server).open()
        chosen = gui.page.locator("#preset-select input").first.input_value()
        assert chosen == "demo-dreambooth"
        assert gui.value("pretrained_model_name_or_path") == str(files.BASE_MODEL)
        assert gui.value("reg_data_dir") == str(files.REG_DIR)
        assert "No problems found" in gui.press("train-check", expect="No problems")

        # Fewer steps than the preset's, to keep the suite short; everything else as shipped.
        gui.set("max_train_steps", str(STEPS))
        gui.set("sample_every_n_steps", str(STEPS // 2))
        gui.wait_sent(f"--max_train_steps={STEPS}", f"--sample_every_n_steps={STEPS // 2}")
        run_dir = server.home / "outputs" / gui.value("output_dir").rsplit("/", 1)[-1]
        gui.press("train-start", expect="Started")
        state = wait_progress(gui, lambda s: s["status"] in ("finished", "failed"),
                              "the demo run to end", timeout=600)
        assert state["status"] == "finished" and state["step"] == STEPS
        gui.page.locator("#run-chart .loss-chart:not([data-points='0'])").wait_for()
        shown = gui.page.locator("#run-gallery img")
        shown.nth(3).wait_for()
        samples = sorted((run_dir / "samples").glob("*.png"))
        assert len(samples) == 12, [p.name for p in samples]  # 4 prompts at first, half-way, end
        assert (run_dir / "last.safetensors").is_file()
    finally:
        server.stop()
