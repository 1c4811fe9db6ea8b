"""Resolution, aspect-ratio buckets, crops and the GUI's bucket preview."""

from __future__ import annotations

import math

import pytest

from helpers import make_concept, make_image, run_cli
from trainer.config import Config
from trainer.data import bucket_preview, bucket_sizes, build_dataset
from trainer.data.buckets import Bucketer, Sizing
from trainer.errors import UserError


def test_bucket_sizes_respect_steps_limits_and_area():
    sizing = Sizing((512, 512), True, 256, 1024, 64)
    sizes = bucket_sizes(sizing)
    assert (512, 512) in sizes and (256, 1024) in sizes and (1024, 256) in sizes
    for width, height in sizes:
        assert width % 64 == 0 and height % 64 == 0
        assert 256 <= width <= 1024 and 256 <= height <= 1024
        assert width * height <= 512 * 512
    assert set(bucket_sizes(Sizing((768, 512), True, 320, 768, 64))) >= {(768, 512), (512, 768)}


@pytest.mark.parametrize("size", [(1000, 500), (480, 960), (1200, 900), (640, 640), (333, 1000)])
def test_each_image_goes_to_the_bucket_with_the_closest_aspect_ratio(size):
    bucketer = Bucketer(Sizing((512, 512), True, 256, 1024, 64))
    placement = bucketer.place(size)
    ratio = size[0] / size[1]
    error = abs(math.log(placement.bucket[0] / placement.bucket[1] / ratio))
    assert all(error <= abs(math.log(w / h / ratio)) + 1e-9 for w, h in bucketer.candidates)
    # resized to cover the bucket with the aspect ratio kept, and the crop inside it
    assert placement.resized[0] >= placement.bucket[0] and placement.resized[1] >= placement.bucket[1]
    assert abs(placement.resized[0] / placement.resized[1] - ratio) < 0.01
    assert min(placement.margin) <= 1


def test_without_bucketing_images_cover_the_resolution_and_are_center_cropped():
    placement = Bucketer(Sizing((64, 128))).place((200, 100))
    assert placement.bucket == (64, 128) and placement.resized == (256, 128)
    assert placement.crop == (96, 0)
    assert placement.crop_box_in_original() == [75.0, 0.0, 125.0, 100.0]


def test_bucket_no_upscale_keeps_small_images_small():
    sizing = Sizing((512, 512), True, 256, 1024, 64, bucket_no_upscale=True)
    small = Bucketer(sizing).place((200, 140))
    assert small.scale == 1.0 and small.bucket == (192, 128) and small.resized == (200, 140)
    large = Bucketer(sizing).place((2000, 1000))
    assert large.bucket[0] * large.bucket[1] <= 512 * 512 and large.scale < 1
    assert large.bucket[0] % 64 == 0 and large.bucket[1] % 64 == 0


def test_bucket_no_upscale_skips_images_smaller_than_one_step(tmp_path):
    folder = make_concept(tmp_path / "img" / "1_sks dog", 2, size=(128, 128))
    make_image(folder / "tiny.png", size=(40, 90))
    warnings: list[str] = []
    ds = build_dataset(Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "128",
                                     "enable_bucket": True, "bucket_no_upscale": True,
                                     "min_bucket_reso": 64}), warn=warnings.append)
    assert len(ds.items) == 2
    assert any("tiny.png is 40x90" in w and "bucket_no_upscale" in w for w in warnings)


def test_greatly_enlarged_images_are_pointed_out(tmp_path):
    make_concept(tmp_path / "img" / "1_sks dog", 2, size=(64, 64))
    warnings: list[str] = []
    build_dataset(Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "192"}),
                  warn=warnings.append)
    assert any("2 images are enlarged more than 2x" in w and "3.0x" in w for w in warnings)


def test_resolution_must_be_divisible_by_64(tmp_path):
    make_concept(tmp_path / "img" / "1_sks dog", 1)
    cfg = Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "500"})
    with pytest.raises(UserError, match="not divisible by 64"):
        build_dataset(cfg)
    result = run_cli("db", "--train_data_dir", tmp_path / "img", "--resolution", "500,512",
                     "--output_dir", tmp_path / "out", "--debug_dataset")
    assert result.returncode == 2
    assert "--resolution: 500,512 is not divisible by 64" in result.stderr
    assert "Traceback" not in result.stderr


def test_bucket_preview_reports_buckets_crops_and_steps(tmp_path):
    make_concept(tmp_path / "img" / "2_sks dog", 3, size=(192, 96))
    make_concept(tmp_path / "img" / "1_sks cat", 2, size=(100, 100), color_index=1)
    cfg = Config("db", {"train_data_dir": str(tmp_path / "img"), "resolution": "128",
                        "enable_bucket": True, "min_bucket_reso": 64, "max_bucket_reso": 256,
                        "train_batch_size": 2})
    preview = bucket_preview(cfg)
    # 2:1 images: 192x64 (3:1) is closer than 256x64 (4:1) or 128x128 (1:1) on a log scale
    assert preview["histogram"] == {"128x128": 2, "192x64": 3}
    wide = [row for row in preview["images"] if row["size"] == [192, 96]]
    assert len(wide) == 3
    row = wide[0]
    width, height = row["bucket"]
    assert width / height > 1.5  # a wide bucket for a wide image
    left, top, right, bottom = row["crop"]
    assert 0 <= left < right <= 192 and 0 <= top < bottom <= 96
    square = [row for row in preview["images"] if row["size"] == [100, 100]][0]
    assert square["bucket"] == [128, 128] and square["scale"] == 1.28
    assert preview["samples"]["128x128"] == 2
    assert preview["steps_per_epoch"] == math.ceil(6 / 2) + math.ceil(2 / 2)
    assert 0 <= preview["cropped_fraction"] < 0.5
