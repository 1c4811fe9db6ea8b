"""Pictures that look fine from outside: damaged inside, decompression bombs, 16-bit grayscale."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers import damage_inside, make_concept, make_image, run_cli
from trainer.config import Config
from trainer.data import build_dataset
from trainer.runs import read_events


def png_claiming(path, width: int, height: int):
    """A tiny PNG whose header claims width x height 1-bit pixels (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def cfg_for(train, **values):
    return Config("db", {"train_data_dir": str(train), "resolution": "64", "seed": 3, **values})


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True], ids=["images", "cached-latents"])
def test_image_damaged_inside_is_skipped_and_the_run_saves_its_model(tmp_path, tiny_model, cache):
    folder = make_concept(tmp_path / "img" / "1_sks dog", 3)
    broken = damage_inside(make_image(folder / "img001b.png", seed=9))
    out = tmp_path / "out"
    result = run_cli("db", "--pretrained_model_name_or_path", tiny_model(), "--train_data_dir",
                     tmp_path / "img", "--output_dir", out, "--resolution", "64",
                     "--train_batch_size", "1", "--max_train_steps", "8", "--seed", "1",
                     *(["--cache_latents"] if cache else []), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    events = read_events(out / "events.jsonl")[0]
    warnings = [e["message"] for e in events if e["kind"] == "warning" and str(broken) in e["message"]]
    assert len(warnings) == 1 and "could not be decoded" in warnings[0] and "skipped" in warnings[0]
    assert events[-1]["status"] == "finished"
    assert [e for e in events if e["kind"] == "step"][-1]["step"] == 8
    assert (out / "last").is_dir()


def test_previews_show_a_damaged_image_as_skipped(tmp_path):
    from trainer.data import dataset_report
    from ui.previews import bucket_view

    folder = make_concept(tmp_path / "img" / "2_sks dog", 2)
    broken = damage_inside(make_image(folder / "img000b.png", seed=9))
    cfg = cfg_for(tmp_path / "img", train_batch_size=6)
    report = dataset_report(cfg, contact_sheet=tmp_path / "sheet.png")
    assert report["ok"] and (tmp_path / "sheet.png").is_file()
    assert [w for w in report["warnings"] if str(broken) in w and "skipped" in w]
    preview, tiles = bucket_view(cfg)
    assert len(tiles) == 3 and [w for w in preview["warnings"] if str(broken) in w]


def test_decompression_bombs_are_skipped_by_name_without_decoding(tmp_path):
    folder = make_concept(tmp_path / "img" / "1_sks dog", 2)
    far = png_claiming(folder / "far.png", 100_000, 100_000)  # past twice Pillow's limit
    near = png_claiming(folder / "near.png", 10_000, 10_000)  # past it, below twice
    assert far.stat().st_size < 200
    warnings: list[str] = []
    ds = build_dataset(cfg_for(tmp_path / "img"), warn=warnings.append)
    assert sorted(item.path for item in ds.items) == sorted(
        str(folder / f"img{k:03d}.png") for k in range(2))
    [about_far] = [w for w in warnings if str(far) in w]
    [about_near] = [w for w in warnings if str(near) in w]
    assert "limit" in about_far and "skipped" in about_far
    assert "10000x10000" in about_near and "89-megapixel limit" in about_near


def test_cli_run_with_a_decompression_bomb_reports_it_in_one_line(tmp_path):
    png_claiming(tmp_path / "img" / "1_sks dog" / "bomb.png", 100_000, 100_000)
    result = run_cli("db", "--train_data_dir", tmp_path / "img", "--resolution", "64",
                     "--debug_dataset", "--output_dir", tmp_path / "out", timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert "bomb.png" in result.stdout and "no usable training images" in result.stdout


@pytest.mark.parametrize("value", ["100000", "512,100000", "8192"])
def test_huge_resolution_is_refused_naming_the_option(tmp_path, value):
    make_concept(tmp_path / "img" / "1_sks dog", 1)
    result = run_cli("db", "--train_data_dir", tmp_path / "img", "--resolution", value,
                     "--debug_dataset", "--output_dir", tmp_path / "out", timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = [x for x in (result.stdout + result.stderr).splitlines() if "--resolution" in x]
    assert "4096" in line


def test_huge_resolution_in_a_dataset_config_is_refused(tmp_path):
    from trainer.errors import UserError

    make_concept(tmp_path / "img" / "1_sks dog", 1)
    toml = tmp_path / "dataset.toml"
    toml.write_text(f"[[datasets]]\nresolution = 65536\n[[datasets.subsets]]\n"
                    f"image_dir = '{tmp_path / 'img' / '1_sks dog'}'\n", encoding="utf-8")
    with pytest.raises(UserError, match="resolution.*65536.*4096"):
        build_dataset(Config("db", {"dataset_config": str(toml)}), warn=lambda m: None)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_grayscale_is_scaled_to_8_bit_not_clipped_to_white(tmp_path, mode):
    folder = tmp_path / "img" / "1_sks dog"
    folder.mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    picture = Image.fromarray(ramp) if mode == "I;16" else Image.fromarray(ramp.astype(np.int32))
    picture.save(folder / "gray16.png")
    with Image.open(folder / "gray16.png") as check:
        assert check.mode in ("I;16", "I")
    ds = build_dataset(cfg_for(tmp_path / "img"), warn=lambda m: None)
    images = ds.load_batch(ds.epoch_batches(0, 1)[0], 0)["images"][0]  # [3, 64, 64] in [-1, 1]
    pixels = ((images + 1) * 127.5).round().numpy()
    assert np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[0], pixels[2])
    row = pixels[0, 32]
    expected = (ramp[32].astype(np.float64) * 255 / 65535).round()
    assert np.abs(row - expected).max() <= 1, (row[:8], expected[:8])
    assert row[0] == 0 and row[-1] == 255 and len(set(row.tolist())) > 50


def test_very_thin_image_is_rendered_without_enlarging_the_whole_picture(tmp_path):
    """1x20000 px covering a 512x512 square: resizing it whole would take 15 GB."""
    import os
    import resource
    import subprocess

    from helpers import PYTHON, REPO

    folder = make_concept(tmp_path / "img" / "1_sks dog", 1)
    Image.new("RGB", (1, 20_000), (30, 160, 40)).save(folder / "thin.png")

    def at_most_2_gb():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run(
        [PYTHON, "-m", "trainer", "db", "--train_data_dir", str(tmp_path / "img"),
         "--resolution", "512", "--debug_dataset", "--output_dir", str(tmp_path / "out")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120, preexec_fn=at_most_2_gb)
    assert result.returncode == 0, result.stdout + result.stderr
    with Image.open(tmp_path / "out" / "dataset_report.png") as sheet:
        colors = sheet.convert("RGB").getcolors(1 << 20)
    assert any(color == (30, 160, 40) for _, color in colors)  # the thin image is drawn


def test_absurd_bucket_side_is_refused_naming_the_option(tmp_path):
    """A billion-pixel max_bucket_reso would make the bucket search loop for minutes."""
    make_concept(tmp_path / "img" / "1_sks dog", 1)
    result = run_cli("db", "--train_data_dir", tmp_path / "img", "--resolution", "512",
                     "--enable_bucket", "--bucket_reso_steps", "8", "--max_bucket_reso",
                     "1000000000", "--debug_dataset", "--output_dir", tmp_path / "out",
                     timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert "--max_bucket_reso: 1000000000 is above the maximum 16384" in result.stderr
