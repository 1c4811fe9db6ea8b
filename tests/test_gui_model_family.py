"""The Train tab names the base model's family (SD 1.x, 2.x v-prediction, XL) as soon as one is
picked, from the file's header or the folder's configs, without torch in the GUI process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from helpers import REPO
from trainer.model_family import detect

pytestmark = pytest.mark.slow  # builds models, drives a browser


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


@pytest.fixture(scope="module")
def tiny_xl_single(tiny_xl, tmp_path_factory):
    from trainer.models import load_model, save_model

    bundle = load_model(str(tiny_xl), xl=True)
    return save_model(bundle, tmp_path_factory.mktemp("xl-single") / "tiny-xl.safetensors")


def test_every_family_is_told_from_files_and_folders(tiny_model, tiny_single, tiny_xl,
                                                     tiny_xl_single):
    assert detect(tiny_xl).title == "Stable Diffusion XL"
    assert detect(tiny_xl_single).title == "Stable Diffusion XL"
    assert detect(tiny_model("tiny-v1")).title == "Stable Diffusion 1.x"
    assert detect(tiny_single("tiny-v1")).title == "Stable Diffusion 1.x"
    assert detect(tiny_model("tiny-v2")).title == "Stable Diffusion 2.x"
    assert detect(tiny_model("tiny-v2-v")).title == "Stable Diffusion 2.x v-prediction"
    assert detect(tiny_single("tiny-v2-v")).title == "Stable Diffusion 2.x v-prediction"


def _family_in_fresh_process(path) -> tuple[str, list[str]]:
    code = ("import sys, ui.model_family as f; from ui.workspace import Workspace; "
            f"print(f.family_html(Workspace.create(roots=[{str(path.parent)!r}]), {str(path)!r})); "
            "print([m for m in ('torch', 'diffusers', 'transformers', 'safetensors') "
            "if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    html, loaded = result.stdout.strip().splitlines()
    return html, eval(loaded)


def test_the_gui_reads_the_family_without_loading_torch(tiny_xl_single):
    html, loaded = _family_in_fresh_process(tiny_xl_single)
    assert "Stable Diffusion XL" in html and 'data-family="sdxl"' in html
    assert loaded == []


def test_paths_outside_the_allowed_folders_are_not_read(tiny_xl, tmp_path):
    from ui.model_family import family_html
    from ui.workspace import Workspace

    html = family_html(Workspace.create(tmp_path, roots=[str(tmp_path)]), str(tiny_xl))
    assert "outside the folders this GUI may use" in html and "Stable Diffusion XL" not in html


def test_files_that_are_not_models_say_why(tmp_path):
    from ui.model_family import family_html
    from ui.workspace import Workspace

    workspace = Workspace.create(tmp_path, roots=[str(tmp_path)])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    assert "junk.safetensors is not a safetensors file" in family_html(workspace, str(junk))
    header = json.dumps({"lora_unet_x.lora_down.weight": {"dtype": "F16", "shape": [4, 4],
                                                          "data_offsets": [0, 32]}}).encode()
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 32)
    assert "lora.safetensors is not a whole Stable Diffusion model" in \
        family_html(workspace, str(lora))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x")
    assert "its family is read when it loads" in family_html(workspace, str(ckpt))
    assert "does not exist" in family_html(workspace, str(tmp_path / "gone.safetensors"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("family") / "home").start()
    yield app
    app.stop()


@needs_chromium
def test_picking_a_model_shows_its_family(page, server, tiny_xl, tiny_model):  # noqa: F811
    gui = Gui(page, server).open()
    gui.set("pretrained_model_name_or_path", str(tiny_xl))
    gui.wait_text("model-family", "Stable Diffusion XL")
    gui.set("pretrained_model_name_or_path", str(tiny_model("tiny-v1")))
    text = gui.wait_text("model-family", "Stable Diffusion 1.x")
    assert "XL" not in text


# ------------------------------------------------------------ caption tokens with both tokenizers


def test_sdxl_captions_are_counted_with_both_tokenizers(tiny_xl, tmp_path):
    """A second tokenizer that splits 'dog' into letters makes the caption too long: the count
    and the warning come from it, and name it."""
    import shutil

    from helpers import make_concept
    from trainer.config import Config
    from trainer.models.factory import TINY_WORDS, write_tokenizer
    from ui.previews import caption_rows

    model = shutil.copytree(tiny_xl, tmp_path / "xl")
    shutil.rmtree(model / "tokenizer_2")
    write_tokenizer(model / "tokenizer_2", [w for w in TINY_WORDS if w != "dog"], v2=True)
    caption = " ".join(["sks dog"] * 30)  # 60 tokens by the first tokenizer, more by the second
    make_concept(tmp_path / "img" / "5_sks dog", 1, captions={0: caption})
    cfg = Config("db", {"pretrained_model_name_or_path": str(model),
                        "train_data_dir": str(tmp_path / "img")})
    [row], notes = caption_rows(cfg)
    assert row["tokens"] > 75
    assert row["warning"].startswith(f"{row['tokens']} tokens by tokenizer_2, the longer of "
                                     "SDXL's two: past the limit of 75")
    assert any("longer than max_token_length" in note for note in notes)

    cfg.pretrained_model_name_or_path = str(tiny_xl)  # its two tokenizers agree
    [row], _ = caption_rows(cfg)
    assert row["tokens"] == 60 and row["warning"] is None
