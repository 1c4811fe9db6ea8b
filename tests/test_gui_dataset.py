"""The Dataset tab in a real browser: build folders from images, preview captions and buckets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from helpers import damage_inside, make_concept, make_image

pytestmark = [needs_chromium, pytest.mark.slow]

LONG = ", ".join(["red circle on a white background with a green square"] * 6)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("dataset") / "home dé").start()
    yield app
    app.stop()


def test_folder_builder_copies_pictures_and_fills_the_train_tab(page, server):
    photos = [make_image(server.home / "phone pics" / f"IMG {i}.jpg", (80, 64), seed=i)
              for i in range(3)]
    reg = make_concept(server.home / "class pics", 10, color_index=2)
    gui = Gui(page, server).open()
    gui.tab("Dataset")
    with gui.page.expect_file_chooser() as chooser:
        gui.page.locator("#build-images button, #build-images .upload-container").first.click()
    chooser.value.set_files([str(p) for p in photos])
    gui.page.locator("#build-class input").fill("dog")
    gui.page.locator("#build-reg-folder input").fill(str(reg))
    gui.page.locator("#build-reg-folder input").blur()
    text = gui.wait_text("build-balance", "Regularization: 1 repeats × 10 images = 10")
    assert "Training: 20 repeats × 3 images = 60 samples per epoch" in text and "holds" in text
    gui.page.locator("#build-repeats input").fill("2")
    gui.page.locator("#build-repeats input").press("Tab")
    text = gui.wait_text("build-balance", "does not hold")
    assert "Suggested repeats: 4 (4 × 3 = 12)" in text
    gui.click("build-suggest")
    gui.page.wait_for_function("() => document.querySelector('#build-repeats input')?.value === '4'")
    message = gui.press("build-run", "build-message", expect="Built")
    concept = server.home / "datasets" / "sks-dog" / "img" / "4_sks dog"
    assert sorted(p.name for p in concept.iterdir()) == ["IMG 0.jpg", "IMG 1.jpg", "IMG 2.jpg"]
    assert len(list((server.home / "datasets" / "sks-dog" / "reg" / "1_dog").iterdir())) == 10
    assert str(concept) in message
    assert all(p.exists() for p in photos)  # copied, not moved
    gui.tab("Train")
    assert gui.value("train_data_dir") == str(concept.parent)
    assert gui.value("reg_data_dir") == str(server.home / "datasets" / "sks-dog" / "reg")


def test_caption_preview_counts_tokens_and_saves_edits(page, server, tiny_model):
    data = server.home / "captioned"
    make_concept(data / "10_sks dog", 3, captions={0: "a photo of sks dog", 1: LONG})
    make_concept(data / "5_zqxw cat", 2, color_index=3, seed=4)
    gui = Gui(page, server).open()
    gui.set("pretrained_model_name_or_path", str(tiny_model("tiny-v1")))
    gui.set("train_data_dir", str(data))
    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Captions").click()
    summary = gui.press("captions-run", "captions-summary", expect="images")
    assert summary.startswith("5 images")
    assert "the identifier 'zqxw' (folder '5_zqxw cat') is" in summary
    assert "past the limit of 75" in summary and "raise max_token_length to 150" in summary
    captions = gui.page.locator("#captions-gallery .caption-label, #captions-gallery figcaption")
    assert captions.count() == 5
    labels = captions.all_inner_texts()
    assert "a photo of sks dog [5 tokens]" in labels and "sks dog [2 tokens]" in labels
    gui.page.locator("#captions-gallery button.thumbnail-item, #captions-gallery .thumbnail-item").nth(2).click()
    gui.page.wait_for_function("() => document.querySelector('#caption-text textarea')?.value === 'sks dog'")
    assert "from the folder name" in gui.text("caption-about")
    gui.page.locator("#caption-text textarea").fill("sks dog, sitting")
    gui.press("caption-save", "caption-message", expect="Saved img002.caption")
    assert (data / "10_sks dog" / "img002.caption").read_text(encoding="utf-8") == "sks dog, sitting\n"


def test_bucket_preview_shows_buckets_and_steps(page, server):
    data = server.home / "shapes"
    for i, size in enumerate([(128, 64), (128, 64), (64, 128), (96, 96)]):
        make_image(data / "2_sks toy" / f"p{i}.png", size, seed=i)
    gui = Gui(page, server).open()
    gui.set("train_data_dir", str(data))
    gui.set("resolution", "128")
    gui.set("enable_bucket", True)
    gui.set("min_bucket_reso", "64")
    gui.set("max_bucket_reso", "256")
    gui.set("train_batch_size", "2")
    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Buckets").click()
    gui.click("buckets-run")
    text = gui.wait_text("buckets-summary", "steps per epoch")
    assert "4 images in 3 buckets" in text
    buckets = gui.page.locator("#buckets-summary .bucket-row")
    assert buckets.count() == 3
    assert gui.page.locator("#buckets-gallery .thumbnail-item").count() == 4 or \
        gui.page.locator("#buckets-gallery img").count() >= 4


def test_previews_refuse_a_date_as_repeat_count_and_skip_a_damaged_image(page, server):
    """Both once planned every repeat in the GUI's memory or failed deep inside; the page names
    the folder or the picture and shows the rest."""
    dated = server.home / "dated"
    make_concept(dated / "20230115_beach", 2)
    damaged = server.home / "damaged"
    make_concept(damaged / "2_sks toy", 3)
    broken = damage_inside(make_image(damaged / "2_sks toy" / "img00b.png", seed=9))
    gui = Gui(page, server).open()
    gui.set("train_data_dir", str(dated))
    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Buckets").click()
    text = gui.press("buckets-run", "buckets-summary", expect="10,000")
    assert "'20230115_beach'" in text and "looks like a date" in text
    gui.page.get_by_role("tab", name="Captions").click()
    text = gui.press("captions-run", "captions-summary", expect="10,000")
    assert "'20230115_beach'" in text

    gui.tab("Train")
    gui.set("train_data_dir", str(damaged))
    gui.set("resolution", "64")
    gui.tab("Dataset")
    text = gui.press("captions-run", "captions-summary", expect="skipped")
    assert text.startswith("4 images") and broken.name in text
    gui.page.get_by_role("tab", name="Buckets").click()
    gui.click("buckets-run")
    text = gui.wait_text("buckets-summary", "skipped")
    assert f"{broken.name} could not be decoded" in text
    # Every picture keeps its tile; the damaged one is a crossed-out grey tile.
    gui.page.locator("#buckets-gallery img").nth(3).wait_for()


def test_regularization_images_from_the_train_tabs_model(page, server):
    """The Train tab's model (the bundled demo model) draws two class images at its resolution."""
    from PIL import Image

    from trainer.demo import files

    gui = Gui(page, server).open()
    gui.set("pretrained_model_name_or_path", str(files.BASE_MODEL))
    gui.set("tokenizer", str(files.TOKENIZER))
    gui.set("resolution", "64")
    gui.tab("Dataset")
    gui.page.get_by_role("tab", name="Regularization images").click()
    gui.page.locator("#reg-class input").fill("circle")
    gui.page.locator("#reg-prompt input").fill("a circle")
    gui.page.locator("#reg-count input").fill("2")
    gui.page.locator("#reg-steps input").fill("2")
    status = gui.press("reg-run", "reg-status", expect="Done", timeout=300)
    assert "python -m trainer reg-generate" in status and "--resolution 64" in status
    folder = server.home / "datasets" / "circle-reg" / "1_circle"
    images = sorted(folder.glob("*.png"))
    assert len(images) == 2 and all(p.with_suffix(".caption").is_file() for p in images)
    with Image.open(images[0]) as picture:
        assert picture.size == (64, 64) and "a circle" in picture.text["parameters"]
    gui.tab("Train")
    assert gui.value("reg_data_dir") == str(folder.parent)


def test_auto_captions_preview_then_write_through_the_api(server):
    from caption_models import build_tagger
    from gui_api import GradioAPI
    from helpers import COLORS

    tagger = build_tagger(server.home / "datasets" / "tagger")
    pics = server.home / "datasets" / "to caption" / "10_sks dog"
    red = make_image(pics / "red.png", color=COLORS[0])
    client = GradioAPI(server.base, server.token)
    values = {"caption-folder": str(pics.parent), "caption-method": "wd14",
              "caption-model": str(tagger), "caption-prefix": "sks dog"}
    status, output = client.call("caption-preview", **values)
    assert "Done" in status and "red.png: sks dog, hatsune miku" in output, (status, output)
    assert not red.with_suffix(".caption").exists()
    status, output = client.call("caption-write", **values)
    assert "Done" in status and "wrote 1 caption files" in output, (status, output)
    assert red.with_suffix(".caption").read_text(encoding="utf-8").startswith("sks dog, hatsune")
    outside = Path("/var/tmp/captions-not-allowed")  # beyond every folder the GUI may use
    status, _ = client.call("caption-write", **{**values, "caption-folder": str(outside)})
    assert "outside the folders" in status
