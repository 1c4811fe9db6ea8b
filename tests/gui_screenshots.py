"""Take the README's screenshots of the GUI: python tests/gui_screenshots.py [docs]

Starts the real GUI in a scratch folder, builds a tiny model and dataset, trains a few steps and
photographs each tab in headless Chromium. Needs /usr/bin/chromium.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from gui_browser import CHROMIUM, CHROMIUM_ARGS, AppServer, Gui  # noqa: E402
from helpers import make_concept, make_image  # noqa: E402


def dataset(root: Path) -> tuple[Path, Path, Path]:
    photos = root / "photos"
    for i in range(6):
        make_image(photos / f"IMG_{i:04d}.jpg", [(128, 64), (64, 128), (96, 96)][i % 3], seed=i)
    (photos / "IMG_0000.txt").write_text("sks dog, sitting on grass, photo", encoding="utf-8")
    reg = make_concept(root / "dog class", 12, color_index=2, seed=3)
    prompts = root / "prompts.txt"
    prompts.write_text("a photo of sks dog --w 64 --h 64 --s 3 --d 1\n"
                       "sks dog in a painting --w 64 --h 64 --s 3 --d 2\n", encoding="utf-8")
    return photos, reg, prompts


def main(out: Path) -> int:
    from playwright.sync_api import sync_playwright

    from trainer.models import factory

    scratch = Path(tempfile.mkdtemp(prefix="gui-shots-"))
    model = factory.build_diffusers("tiny-v1", scratch / "models" / "tiny model")
    photos, reg, prompts = dataset(scratch)
    server = AppServer(scratch / "home", "--root", str(scratch), test_root=False).start()
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60000)
            gui = Gui(page, server).open()
            take_all(gui, out, model, photos, reg, prompts)
            chromium.close()
    finally:
        server.stop()
    return 0


def take_all(gui: Gui, out: Path, model, photos, reg, prompts) -> None:
    gui.tab("Dataset")
    gui.page.locator("#build-folder input").fill(str(photos))
    gui.page.locator("#build-folder input").blur()
    gui.page.locator("#build-class input").fill("dog")
    gui.page.locator("#build-reg-folder input").fill(str(reg))
    gui.page.locator("#build-reg-folder input").blur()
    gui.wait_text("build-balance", "Regularization")
    gui.press("build-run", "build-message", expect="Built")
    shot(gui, out / "gui-dataset.png")

    gui.tab("Train")
    gui.choose("#preset-select", "sd15-dreambooth-lowvram")
    gui.press("preset-load", expect="Loaded")
    for name, value in (("pretrained_model_name_or_path", model), ("resolution", "64"),
                        ("max_train_steps", "30"), ("learning_rate", "1e-4"),
                        ("mixed_precision", "no"), ("use_8bit_adam", False), ("xformers", False),
                        ("sample_prompts", prompts), ("sample_every_n_steps", "5"), ("caption_extension", ".txt"),
                        ("train_batch_size", "2"), ("seed", "1")):
        gui.set(name, str(value) if not isinstance(value, bool) else value)
    gui.set("enable_bucket", True)
    gui.set("min_bucket_reso", "64")
    gui.set("max_bucket_reso", "128")
    gui.set("learning_rate", "abc")
    gui.press("train-check", expect="error")
    gui.page.evaluate("window.scrollTo(0, 0)")
    shot(gui, out / "gui-train.png")
    gui.set("learning_rate", "1e-4")

    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Captions").click()
    gui.press("captions-run", "captions-summary", expect="images")
    gui.page.locator("#captions-gallery .thumbnail-item").first.click()
    time.sleep(1)
    shot(gui, out / "gui-captions.png")
    gui.tab("Train")
    gui.set("resolution", "128")  # room for several buckets in the preview
    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Buckets").click()
    gui.click("buckets-run")
    gui.wait_text("buckets-summary", "steps per epoch")
    shot(gui, out / "gui-buckets.png")

    gui.tab("Train")
    gui.set("resolution", "64")
    gui.press("train-start", expect="Started")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        box = gui.page.locator("#run-progress .run-progress")
        if box.count() and int(box.get_attribute("data-step") or 0) >= 16 and \
                gui.page.locator("#run-gallery img").count() >= 4:
            break
        time.sleep(0.5)
    shot(gui, out / "gui-runs.png")
    gui.press("run-stop", "run-action", expect="Stopping")

    gui.tab("Utilities")
    time.sleep(1)
    shot(gui, out / "gui-utilities.png", full=False)


def shot(gui: Gui, path: Path, full: bool = True) -> None:
    time.sleep(0.6)  # let the last update paint
    path.parent.mkdir(parents=True, exist_ok=True)
    gui.page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "docs")))
