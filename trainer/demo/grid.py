"""A labelled grid of demo pictures (one row per model or prompt), for the README and runs."""

from __future__ import annotations

from pathlib import Path

ZOOM = 2  # 64 px pictures are small on a screen
LABEL_WIDTH = 230
GAP = 4


def make_grid(rows: list[tuple[str, list]], path: Path) -> Path:
    """rows: (label, PIL images); every row is drawn left to right after its label."""
    from PIL import Image, ImageDraw

    side = max(image.width for _, images in rows for image in images) * ZOOM
    columns = max(len(images) for _, images in rows)
    width = LABEL_WIDTH + columns * (side + GAP)
    height = len(rows) * (side + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for row, (label, images) in enumerate(rows):
        top = GAP + row * (side + GAP)
        for line, text in enumerate(label.split("\n")):
            pen.text((6, top + side // 2 - 14 + line * 14), text, fill=(20, 20, 20))
        for column, image in enumerate(images):
            big = image.resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(big, (LABEL_WIDTH + column * (side + GAP), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path
