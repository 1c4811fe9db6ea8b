"""A PNG of the first batches as the model will see them, each image with its caption."""

from __future__ import annotations

from pathlib import Path

from .. import atomic

CELL = 176  # thumbnail box in pixels
TEXT_LINES = 4
LINE = 14
PAD = 8


FONTS = ("DejaVuSans.ttf", "arial.ttf", "Arial.ttf", "Helvetica.ttc")  # wide Unicode coverage


def _font(size: int = 11):
    from PIL import ImageFont

    for name in FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(image, box: int):
    """Scale up or down to fit a box x box square, keeping the aspect ratio."""
    from PIL import Image

    scale = box / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _wrap(draw, text: str, font, width: int, lines: int) -> list[str]:
    words, out, line = text.split(" "), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
            continue
        if line:
            out.append(line)
        line = word
        if len(out) == lines:
            break
    if line and len(out) < lines:
        out.append(line)
    if len(out) == lines and " ".join(out) != text.strip():
        while out[-1] and draw.textlength(out[-1] + " …", font=font) > width:
            out[-1] = out[-1][:-1]
        out[-1] += " …"
    return out


def write_contact_sheet(ds, batches, epoch: int, path: str | Path, title: str) -> Path:
    """Draw `batches` (lists of SampleRef), one row each, and write the PNG atomically."""
    from PIL import Image, ImageDraw

    font, bold = _font(11), _font(13)
    columns = max(len(b) for b in batches)
    cell_h = CELL + LINE * (TEXT_LINES + 1) + PAD
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(PAD + columns * (CELL + PAD), round(measure.textlength(title, font=bold)) + 2 * PAD)
    height = PAD * 2 + LINE * 2 + len(batches) * (cell_h + PAD)
    sheet = Image.new("RGB", (width, height), (248, 248, 246))
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), title, fill=(20, 20, 20), font=bold)
    top = PAD * 2 + LINE * 2
    for number, refs in enumerate(batches, 1):
        refs, images = ds.render_samples(refs, epoch)  # stand-ins for damaged images
        captions, picks = ds.sample_choices(refs, epoch)
        for column, (ref, caption, pick, picture) in enumerate(zip(refs, captions, picks, images)):
            left = PAD + column * (CELL + PAD)
            image = _fit(picture, CELL)
            sheet.paste(image, (left + (CELL - image.width) // 2, top + (CELL - image.height) // 2))
            bucket = ref.bucket
            label = f"batch {number} · {bucket[0]}x{bucket[1]}" + (" · reg" if ref.is_reg else "") \
                + (" · flipped" if pick.flip else "")
            draw.text((left, top + CELL + 2), label, fill=(90, 90, 90), font=font)
            lines = _wrap(draw, caption or "(empty caption)", font, CELL, TEXT_LINES)
            for k, line in enumerate(lines):
                draw.text((left, top + CELL + 2 + LINE * (k + 1)), line, fill=(20, 20, 20),
                          font=font)
        top += cell_h + PAD
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
