"""Caption and bucket previews of the Dataset tab, from the dataset pipeline's preview functions.

No gradio here. Thumbnails are small PIL images, so pictures from any folder can be shown.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

from trainer import atomic
from trainer.config import Config
from trainer.data.tokens import longer_tokenizer, token_warning, tokenizer_for
from trainer.errors import UserError

MAX_SHOWN = 200  # thumbnails drawn per preview; the numbers always cover every image


def concept_identifier(concept: str) -> str | None:
    """'20_sls frog' -> 'sls' (training folders only)."""
    _, sep, prompt = concept.partition("_")
    words = prompt.split()
    return words[0] if sep and len(words) >= 2 else None


def shuffled_example(caption: str, cfg: Config, seed: int = 0) -> str:
    from trainer.data.captions import process_caption
    from trainer.data.concepts import CaptionRules

    rules = CaptionRules(shuffle_caption=cfg.shuffle_caption, keep_tokens=cfg.keep_tokens,
                         caption_tag_dropout_rate=cfg.caption_tag_dropout_rate)
    return process_caption(caption, rules, 0, random.Random(seed))


def caption_rows(cfg: Config) -> tuple[list[dict], list[str]]:
    """Every image with its caption, token count and a shuffled example; plus notes."""
    from trainer.data import caption_preview

    rows = caption_preview(cfg)
    tokenize, source = tokenizer_for(cfg)
    notes = [] if tokenize else [source]
    identifiers = {}
    for index, row in enumerate(rows):
        row["tokens"] = len(tokenize(row["caption"])) if tokenize else None
        row["warning"] = None if row["tokens"] is None else token_warning(
            row["tokens"], cfg, longer_tokenizer(tokenize, row["caption"]))
        row["shuffled"] = shuffled_example(row["caption"], cfg, seed=index)
        identifier = None if row["is_reg"] else concept_identifier(row["concept"])
        if identifier:
            identifiers[identifier] = row["concept"]
    if tokenize:
        for identifier, concept in identifiers.items():
            pieces = tokenize(identifier)
            if len(pieces) != 1:
                notes.append(f"the identifier '{identifier}' (folder '{concept}') is {len(pieces)} "
                             f"tokens ({' '.join(pieces)}); a rare single-token word such as 'sks' "
                             "is easier to teach")
    over = sum(1 for row in rows if row["warning"])
    if over:
        notes.append(f"{over} caption(s) are longer than max_token_length allows; see the warnings")
    return rows, notes


def caption_label(row: dict) -> str:
    count = "" if row["tokens"] is None else f" [{row['tokens']} tokens]"
    flag = " ⚠" if row["warning"] else ""
    return f"{row['caption']}{count}{flag}"


def save_caption(image_path: str, target: Path, text: str, known_images: list[str]) -> Path:
    """Write the caption file `target` (checked by the caller) of one image of the previewed
    dataset (never any other image's)."""
    if image_path not in known_images:
        raise UserError(f"{image_path} is not an image of the previewed dataset",
                        "preview the captions again")
    atomic.write_text(target, text.strip() + "\n")
    return target


def thumbnail(path: str, crop: list[float] | None = None, size: int = 192,
              problems: list[str] | None = None):
    """A small copy of the image; with `crop` (x0, y0, x1, y1 in original pixels) the part
    that is cut away is dimmed and the kept box outlined. A picture that cannot be decoded
    becomes a grey tile with a cross, and the reason is added to `problems`."""
    from PIL import Image, ImageDraw

    from trainer.data.imageinfo import DamagedImage, UnreadableImage, open_rgb, read_header

    try:
        header = read_header(path)
        image = open_rgb(path, header.orientation, draft_size=(size, size))
    except (DamagedImage, UnreadableImage) as err:
        if problems is not None:
            problems.append(f"{err.message}; it is skipped" if isinstance(err, DamagedImage)
                            else f"image {path} {err}; it is skipped")
        tile = Image.new("RGB", (size, size), (90, 90, 90))
        ImageDraw.Draw(tile).line([(0, 0), (size, size)], fill=(200, 60, 60), width=3)
        ImageDraw.Draw(tile).line([(0, size), (size, 0)], fill=(200, 60, 60), width=3)
        return tile
    image.thumbnail((size, size))
    if crop:
        scale = image.width / header.width
        box = [round(c * scale) for c in crop]
        shade = Image.new("RGB", image.size, (0, 0, 0))
        mask = Image.new("L", image.size, 120)
        ImageDraw.Draw(mask).rectangle(box, fill=0)
        image = Image.composite(shade, image, mask)
        ImageDraw.Draw(image).rectangle(box, outline=(255, 64, 64), width=2)
    return image


def bucket_view(cfg: Config) -> tuple[dict, list[tuple[object, str]]]:
    """The pipeline's bucket preview and (thumbnail with crop, caption) pairs."""
    from trainer.data import bucket_preview

    preview = bucket_preview(cfg)
    items = []
    for image in preview["images"][:MAX_SHOWN]:
        w, h = image["size"]
        bw, bh = image["bucket"]
        label = (f"{Path(image['path']).name}: {w}×{h} → {bw}×{bh}, "
                 f"{image['cropped_fraction'] * 100:.0f}% cropped")
        items.append((thumbnail(image["path"], image["crop"], problems=preview["warnings"]),
                      label))
    return preview, items


def histogram_html(preview: dict) -> str:
    histogram = preview["histogram"]
    most = max(histogram.values(), default=1)
    bars = "".join(
        f'<div class="bucket-row" data-bucket="{html.escape(k)}"><span class="name">{html.escape(k)}</span>'
        f'<span class="bar" style="width:{max(2, 240 * n / most):.0f}px"></span>'
        f'<span class="count">{n} image{"s" * (n != 1)}, '
        f'{preview["samples"].get(k, 0)} samples/epoch</span></div>'
        for k, n in histogram.items())
    images = len(preview["images"])
    summary = (f'<p><b>{images}</b> image{"s" * (images != 1)} in <b>{len(histogram)}</b> '
               f'bucket{"s" * (len(histogram) != 1)} · <b id="steps-per-epoch">'
               f'{preview["steps_per_epoch"]}</b> steps per epoch at batch size '
               f'{preview["batch_size"]} · {preview["cropped_fraction"] * 100:.1f}% of the pixels '
               f'cropped away</p>')
    warnings = "".join(f'<div class="msg msg-warning">{html.escape(w)}</div>'
                       for w in preview.get("warnings", []))
    return f'<div class="bucket-preview">{summary}{bars}{warnings}</div>'


PREVIEW_CSS = """
.bucket-row { display: flex; align-items: center; gap: 8px; font-size: 13px; }
.bucket-row .name { width: 90px; font-family: var(--font-mono); }
.bucket-row .bar { display: inline-block; height: 12px; background: #3b82f6; border-radius: 3px; }
"""
