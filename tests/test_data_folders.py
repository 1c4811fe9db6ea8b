"""The seed's folder convention and every way a dataset folder can go wrong."""

from __future__ import annotations

import pytest
from PIL import Image

from helpers import make_concept, make_db_dataset, make_image
from trainer.config import Config
from trainer.data import DatasetError, build_dataset
from trainer.errors import UserError


def cfg_for(train, reg=None, **values):
    return Config("db", {"train_data_dir": str(train), "reg_data_dir": str(reg) if reg else None,
                         "resolution": "64", "seed": 3, **values})


def build(cfg):
    warnings: list[str] = []
    return build_dataset(cfg, warn=warnings.append), warnings


def test_concepts_repeats_and_prompts_come_from_folder_names(tmp_path):
    train, reg = make_db_dataset(tmp_path, identifier="sls", cls="frog", repeats=20, images=3,
                                 reg_images=4)
    make_concept(train / "10_cpc 1girl", 2, color_index=1, seed=5)
    ds, warnings = build(cfg_for(train, reg))
    concepts = {c["name"]: c for c in ds.summary()["concepts"]}
    frog = concepts["20_sls frog"]
    assert (frog["repeats"], frog["images"], frog["prompt"], frog["identifier"], frog["class"]) \
        == (20, 3, "sls frog", "sls", "frog")
    assert concepts["10_cpc 1girl"]["class"] == "1girl"
    assert concepts["1_frog"]["is_reg"] and concepts["1_frog"]["class"] == "frog"
    captions = {item.path: item.caption for item in ds.items}
    assert captions[str(train / "20_sls frog" / "img000.png")] == "sls frog"
    assert captions[str(reg / "1_frog" / "img000.png")] == "frog"
    assert ds.summary()["train_samples"] == 20 * 3 + 10 * 2
    assert not [w for w in warnings if "regularization" in w]


def test_all_image_types_with_any_case_of_extension_are_found(tmp_path):
    folder = tmp_path / "img" / "2_sks dog"
    for index, (ext, fmt) in enumerate([(".PNG", "PNG"), (".Jpg", "JPEG"), (".jpeg", "JPEG"),
                                        (".webp", "WEBP"), (".BMP", "BMP")]):
        make_image(folder / f"pic{index}{ext}", seed=index, fmt=fmt)
    make_image(folder / "anim.gif", fmt="GIF")
    ds, warnings = build(cfg_for(tmp_path / "img"))
    assert len(ds.items) == 5
    assert any("anim" not in w and ".gif" in w and "not read" in w for w in warnings)


def test_exif_orientation_is_applied_to_size_and_pixels(tmp_path):
    folder = tmp_path / "img" / "1_sks dog"
    folder.mkdir(parents=True)
    picture = Image.new("RGB", (128, 64), (255, 255, 255))
    picture.paste((255, 0, 0), (0, 0, 64, 64))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    picture.save(folder / "rotated.jpg", exif=exif.tobytes(), quality=95)
    ds, _ = build(cfg_for(tmp_path / "img", resolution="64,128"))
    item = ds.items[0]
    assert (item.header.width, item.header.height) == (64, 128)
    assert item.placement.scale == 1.0
    batch = ds.load_batch(ds.epoch_batches(0, 1)[0], 0)
    image = batch["images"][0]
    assert tuple(image.shape) == (3, 128, 64)
    top, bottom = image[:, :40].mean(dim=(1, 2)), image[:, -40:].mean(dim=(1, 2))
    assert top[0] > 0.9 and top[1] < -0.8  # the red half is now on top
    assert bottom.min() > 0.9  # white below


def test_folder_without_repeats_prefix_is_skipped_and_the_rename_is_shown(tmp_path):
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    make_concept(train / "sls frog", 2)
    ds, warnings = build(cfg_for(train))
    assert all("sls frog" not in item.path for item in ds.items)
    [warning] = [w for w in warnings if "'sls frog'" in w]
    assert "no '<repeats>_' prefix" in warning and "rename it to '10_sls frog'" in warning


def test_empty_folder_and_zero_repeats_are_reported_and_left_out(tmp_path):
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    (train / "3_empty thing").mkdir()
    make_concept(train / "0_sks cat", 2)
    ds, warnings = build(cfg_for(train))
    assert [c["name"] for c in ds.summary()["concepts"]] == ["5_sks dog"]
    assert any("'3_empty thing'" in w and "has no images" in w for w in warnings)
    assert any("'0_sks cat' asks for 0 repeats" in w for w in warnings)


def test_train_data_dir_pointing_at_the_image_folder_itself(tmp_path):
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    image_folder = train / "5_sks dog"
    warnings: list[str] = []
    with pytest.raises(DatasetError, match="no usable training images"):
        build_dataset(cfg_for(image_folder), warn=warnings.append)
    [warning] = warnings
    assert "points at the image folder" in warning and str(train) in warning


def test_images_directly_in_train_data_dir_explain_the_layout(tmp_path):
    loose = make_concept(tmp_path / "photos", 2)
    warnings: list[str] = []
    with pytest.raises(DatasetError):
        build_dataset(cfg_for(loose), warn=warnings.append)
    assert "move the images into a subfolder" in warnings[0]
    assert str(loose / "20_sks dog") in warnings[0]


def test_train_data_dir_one_level_too_high(tmp_path):
    train, _ = make_db_dataset(tmp_path / "project", reg_images=0)
    warnings: list[str] = []
    with pytest.raises(DatasetError):
        build_dataset(cfg_for(tmp_path / "project"), warn=warnings.append)
    assert any("one level too high" in w and f"train_data_dir={train}" in w for w in warnings)


def test_truncated_and_unreadable_images_are_skipped_by_name(tmp_path):
    train, _ = make_db_dataset(tmp_path, images=3, reg_images=0, size=(96, 96))
    folder = train / "5_sks dog"
    good = (folder / "img000.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    make_image(folder / "cut.jpg", size=(96, 96), fmt="JPEG")
    jpeg = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    (folder / "notes.png").write_text("not a picture")
    (folder / "zero.webp").write_bytes(b"")
    ds, warnings = build(cfg_for(train))
    assert sorted(p.rsplit("/", 1)[1] for p in (i.path for i in ds.items)) == \
        ["img000.png", "img001.png", "img002.png"]
    for name, reason in [("cut.png", "truncated"), ("cut.jpg", "truncated"),
                         ("notes.png", "not a readable image"), ("zero.webp", "empty file")]:
        assert any(str(folder / name) in w and reason in w for w in warnings), name


def test_healthy_image_with_trailing_bytes_is_not_called_truncated(tmp_path):
    folder = tmp_path / "img" / "1_sks dog"
    make_image(folder / "a.png")
    with open(folder / "a.png", "ab") as handle:
        handle.write(b"\0" * 200)  # some tools pad files; the picture is complete
    ds, warnings = build(cfg_for(tmp_path / "img"))
    assert len(ds.items) == 1 and not warnings


def test_no_usable_image_at_all_fails_with_the_reasons_listed(tmp_path):
    folder = tmp_path / "img" / "5_sks dog"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    warnings: list[str] = []
    with pytest.raises(DatasetError) as err:
        build_dataset(cfg_for(tmp_path / "img"), warn=warnings.append)
    assert "problems listed above" in err.value.hint
    assert any("a.png" in w for w in warnings)
    assert any("no usable images left" in w for w in warnings)


def test_missing_folder_and_same_reg_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_dataset(cfg_for(tmp_path / "nowhere"))
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    with pytest.raises(UserError, match="same folder"):
        build_dataset(cfg_for(train, train))


def test_unusable_reg_folder_trains_without_regularization(tmp_path):
    train, _ = make_db_dataset(tmp_path, reg_images=0)
    (tmp_path / "reg" / "1_dog").mkdir(parents=True)
    ds, warnings = build(cfg_for(train, tmp_path / "reg"))
    assert ds.summary()["reg_samples"] == 0
    assert any("no usable regularization images" in w for w in warnings)


@pytest.mark.parametrize("options", [{"lossless": True}, {"quality": 80}, {"exif": 6},
                                     {"exif": 1, "lossless": True}])
def test_webp_sizes_and_orientation_are_read_from_the_header(tmp_path, options):
    from PIL import ImageOps

    from trainer.data.imageinfo import read_header

    path = tmp_path / "pic.webp"
    orientation = options.pop("exif", None)
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    make_image(tmp_path / "src.png", size=(96, 40))
    Image.open(tmp_path / "src.png").save(path, "WEBP", **options)
    header = read_header(path)
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        assert (header.width, header.height) == upright.size
    assert header.orientation == (orientation or 1)


def test_repeat_counts_up_to_the_limit_are_allowed_and_past_it_refused(tmp_path):
    from trainer.data import bucket_preview, dataset_report

    make_concept(tmp_path / "img" / "10000_sks dog", 1)
    ds, _ = build(cfg_for(tmp_path / "img"))
    assert len(ds) == 10_000
    make_concept(tmp_path / "dated" / "20230115_beach", 1)
    with pytest.raises(UserError, match="'20230115_beach'.*looks like a date"):
        bucket_preview(cfg_for(tmp_path / "dated"))  # what the GUI's bucket preview calls
    report = dataset_report(cfg_for(tmp_path / "dated"))
    assert not report["ok"] and "limit of 10,000" in report["error"]["message"]
    toml = tmp_path / "dataset.toml"
    toml.write_text(f"[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{tmp_path / 'img'}'\n"
                    "num_repeats = 10001\n", encoding="utf-8")
    with pytest.raises(UserError, match="num_repeats asks for 10,001 repeats, more than the "
                                        "limit of 10,000"):
        build(Config("db", {"dataset_config": str(toml), "resolution": "64"}))


@pytest.mark.parametrize("repeats", [0, -5])
def test_dataset_config_with_no_or_negative_repeats_is_refused(tmp_path, repeats):
    folder = make_concept(tmp_path / "sks dog", 1)
    toml = tmp_path / "dataset.toml"
    toml.write_text(f"[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{folder}'\n"
                    f"num_repeats = {repeats}\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"subset 1: num_repeats is {repeats}"):
        build(Config("db", {"dataset_config": str(toml), "resolution": "64"}))
