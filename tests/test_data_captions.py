"""Caption files and the caption rules applied each time a sample is used."""

from __future__ import annotations

from helpers import make_concept
from trainer.config import Config
from trainer.data import build_dataset, caption_preview

TAGS = "sks dog, red collar, grass, sunny day, photo, outdoors"


def dataset(tmp_path, captions=None, ext=".caption", **values):
    folder = make_concept(tmp_path / "img" / "4_sks dog", 3, captions=captions,
                          caption_extension=ext)
    cfg = Config("db", {"train_data_dir": str(folder.parent), "resolution": "64", "seed": 11,
                        **values})
    warnings: list[str] = []
    return build_dataset(cfg, warn=warnings.append), warnings


def used_captions(ds, epoch):
    refs = [ref for batch in ds.epoch_batches(epoch, 4) for ref in batch]
    return refs, ds.load_batch(refs, epoch)["captions"]


def test_caption_file_replaces_the_folder_prompt(tmp_path):
    ds, warnings = dataset(tmp_path, captions={1: "a photo of sks dog on grass\nsecond line"})
    by_name = {row["path"].rsplit("/", 1)[1]: row for row in caption_preview(ds.cfg)}
    assert by_name["img001.png"]["caption"] == "a photo of sks dog on grass"
    assert by_name["img001.png"]["source"] == "file"
    assert by_name["img000.png"] == {**by_name["img000.png"], "caption": "sks dog",
                                     "source": "folder", "is_reg": False}
    assert not warnings


def test_txt_beside_images_while_extension_is_caption_names_the_flag(tmp_path):
    ds, warnings = dataset(tmp_path, captions={0: "from txt", 2: "also txt"}, ext=".txt")
    assert all(item.caption == "sks dog" for item in ds.items)
    [warning] = warnings
    assert "2 images have a '.txt' file" in warning and "--caption_extension=.txt" in warning
    ds_txt = build_dataset(Config("db", {**ds.cfg.to_dict(), "caption_extension": ".txt"}))
    assert sorted(item.caption for item in ds_txt.items) == ["also txt", "from txt", "sks dog"]


def test_non_utf8_caption_is_read_with_a_warning_and_utf16_with_bom_is_fine(tmp_path):
    folder = make_concept(tmp_path / "img" / "1_sks dog", 2)
    (folder / "img000.caption").write_bytes("café au lait, sks dog".encode("cp1252"))
    (folder / "img001.caption").write_bytes("naïve, sks dog".encode("utf-16"))
    cfg = Config("db", {"train_data_dir": str(folder.parent), "resolution": "64"})
    warnings: list[str] = []
    ds = build_dataset(cfg, warn=warnings.append)
    assert sorted(item.caption for item in ds.items) == ["café au lait, sks dog", "naïve, sks dog"]
    [warning] = warnings
    assert "img000.caption is not UTF-8" in warning and "Save it as UTF-8" in warning


def test_empty_caption_file_falls_back_to_the_folder_prompt(tmp_path):
    ds, warnings = dataset(tmp_path, captions={0: "  \n"})
    assert all(item.caption == "sks dog" for item in ds.items)
    assert any("img000.caption is empty" in w for w in warnings)


def test_shuffle_keeps_the_first_tokens_and_every_tag(tmp_path):
    ds, _ = dataset(tmp_path, captions={i: TAGS for i in range(3)}, shuffle_caption=True,
                    keep_tokens=1)
    assert not ds.fixed_captions()
    seen = set()
    for epoch in range(3):
        _, captions = used_captions(ds, epoch)
        for caption in captions:
            parts = caption.split(", ")
            assert parts[0] == "sks dog"
            assert sorted(parts) == sorted(TAGS.split(", "))
            seen.add(caption)
    assert len(seen) > 5  # the order really changes between uses


def test_caption_randomness_is_per_sample_and_reproducible(tmp_path):
    ds, _ = dataset(tmp_path, captions={i: TAGS for i in range(3)}, shuffle_caption=True)
    refs, captions = used_captions(ds, 2)
    again = [ds.load_batch([ref], 2)["captions"][0] for ref in reversed(refs)]
    assert again[::-1] == captions  # one at a time, in another order: the same captions
    other_epoch = used_captions(ds, 3)[1]
    assert other_epoch != captions


def test_caption_dropout_rate_and_every_n_epochs(tmp_path):
    ds, _ = dataset(tmp_path, caption_dropout_rate=1.0)
    assert set(used_captions(ds, 0)[1]) == {""}
    ds, _ = dataset(tmp_path, caption_dropout_every_n_epochs=2)
    assert set(used_captions(ds, 0)[1]) == {"sks dog"}  # epoch 1 (0-based 0) keeps captions
    assert set(used_captions(ds, 1)[1]) == {""}  # epoch 2 drops them all
    ds, _ = dataset(tmp_path, caption_dropout_rate=0.5)
    captions = used_captions(ds, 0)[1] + used_captions(ds, 1)[1] + used_captions(ds, 2)[1]
    assert 0 < captions.count("") < len(captions)


def test_tag_dropout_never_drops_kept_tokens(tmp_path):
    ds, _ = dataset(tmp_path, captions={i: TAGS for i in range(3)},
                    caption_tag_dropout_rate=0.5, keep_tokens=2)
    lengths = []
    for epoch in range(4):
        for caption in used_captions(ds, epoch)[1]:
            parts = caption.split(", ")
            assert parts[:2] == ["sks dog", "red collar"]
            lengths.append(len(parts))
    assert min(lengths) < 6 and max(lengths) > 2


def test_fixed_captions_when_nothing_changes_them(tmp_path):
    ds, _ = dataset(tmp_path, captions={0: TAGS}, keep_tokens=2)
    assert ds.fixed_captions()
    for epoch in (0, 5):
        refs, captions = used_captions(ds, epoch)
        assert all(c == ds.items[r.item].caption for r, c in zip(refs, captions))
    assert TAGS in used_captions(ds, 0)[1]


def test_tag_frequency_counts_images_per_folder(tmp_path):
    ds, _ = dataset(tmp_path, captions={0: "sks dog, grass", 1: "sks dog, snow"})
    assert ds.tag_frequency() == {"4_sks dog": {"sks dog": 3, "grass": 1, "snow": 1}}


def test_caption_extension_without_dot_and_upper_case_file_names(tmp_path):
    folder = make_concept(tmp_path / "img" / "1_sks dog", 2)
    (folder / "img000.TXT").write_text("from upper case file", encoding="utf-8")
    cfg = Config("db", {"train_data_dir": str(folder.parent), "resolution": "64",
                        "caption_extension": "txt"})
    ds = build_dataset(cfg)
    assert sorted(item.caption for item in ds.items) == ["from upper case file", "sks dog"]
