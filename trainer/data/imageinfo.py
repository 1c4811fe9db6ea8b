"""Image dimensions and orientation from file headers, without decoding the pixels.

Indexing 10,000 images must take seconds, so only the header is parsed. A cheap look at the
end of the file catches most truncated downloads; only files that look truncated are decoded
in full to be sure (so a healthy file is never reported broken).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ..errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Image types people often drop into a folder that this trainer does not read.
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".psd",
                          ".svg", ".ico", ".jfif")
ORIENTATION_TAG = 0x0112
_TAIL_BYTES = 64


class UnreadableImage(Exception):
    """The file is not an image that can be used; str() says why in plain words."""


class DamagedImage(UserError):
    """The header was fine but the pixels cannot be decoded (damaged inside, or changed since
    it was indexed). Training skips such an image; the message names the file. A kind of its
    own because callers catch it alone to skip one image and let other errors stop the run."""


def _pillow():
    """PIL.Image, with its decompression-bomb warning silenced: sizes are checked here first
    (too_many_pixels), and a file past the limit is skipped with a message of our own."""
    import warnings

    from PIL import Image

    global _QUIET
    if not _QUIET:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _QUIET = True
    return Image


_QUIET = False


def pixel_limit() -> float:
    """Pillow's decompression-bomb limit (about 89 megapixels): larger pictures are refused
    rather than decoded into gigabytes."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS or float("inf")


def too_many_pixels(width: int, height: int) -> str | None:
    limit = pixel_limit()
    if width * height <= limit:
        return None
    return (f"is {width}x{height} ({width * height / 1e6:,.0f} megapixels), more than the "
            f"{limit / 1e6:.0f}-megapixel limit for safe decoding; shrink it")


@dataclass(frozen=True)
class ImageHeader:
    width: int  # after EXIF orientation (what the user sees)
    height: int
    orientation: int  # EXIF orientation 1..8 (1: as stored)
    file_size: int
    mtime_ns: int


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _orientation(image) -> int:
    raw = image.info.get("exif")
    if not raw:
        return 1
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(raw)
        value = int(exif.get(ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block does not make the picture unusable
        return 1
    return value if 1 <= value <= 8 else 1


def _tail(path: str, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(max(0, size - _TAIL_BYTES))
        return handle.read()


def _looks_complete(path: str, fmt: str, size: int) -> bool:
    """False when the end of the file suggests it was cut off (then we decode to be sure)."""
    if fmt == "PNG":
        return b"IEND" in _tail(path, size)
    if fmt in ("JPEG", "MPO"):
        return b"\xff\xd9" in _tail(path, size)
    if fmt in ("WEBP", "BMP"):
        with open(path, "rb") as handle:
            head = handle.read(8)
        if fmt == "WEBP" and len(head) == 8:
            return struct.unpack("<I", head[4:8])[0] + 8 <= size
        if fmt == "BMP" and len(head) >= 6:
            declared = struct.unpack("<I", head[2:6])[0]
            return declared == 0 or declared <= size
    return True


def _decodes(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


def _webp_header(path: str) -> tuple[int, int, int] | None:
    """(width, height, orientation) of a WebP from its chunks; None if not understood.

    Pillow's WebP reader sets up a full decoder just to open a file (milliseconds per large
    image), so the few bytes that hold the size are read here directly.
    """
    with open(path, "rb") as handle:
        head = handle.read(30)
        if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return None
        kind = head[12:16]
        if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", head[26:30])
            return width & 0x3FFF, height & 0x3FFF, 1
        if kind == b"VP8L" and head[20] == 0x2F:
            bits = struct.unpack("<I", head[21:25])[0]
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1
        if kind == b"VP8X":
            width = int.from_bytes(head[24:27], "little") + 1
            height = int.from_bytes(head[27:30], "little") + 1
            has_exif = bool(head[20] & 0x08)
            orientation = _webp_orientation(handle) if has_exif else 1
            return width, height, orientation
    return None


def _webp_orientation(handle) -> int:
    """Walk the chunks after VP8X to the EXIF chunk (sizes only; image data is skipped)."""
    from PIL import Image

    handle.seek(12)
    while True:
        chunk = handle.read(8)
        if len(chunk) < 8:
            return 1
        size = struct.unpack("<I", chunk[4:8])[0]
        if chunk[:4] == b"EXIF":
            data = handle.read(size)
            if data.startswith(b"Exif\x00\x00"):
                data = data[6:]
            try:
                exif = Image.Exif()
                exif.load(data)
                value = int(exif.get(ORIENTATION_TAG, 1))
            except Exception:
                return 1
            return value if 1 <= value <= 8 else 1
        handle.seek(size + (size & 1), os.SEEK_CUR)


def _pillow_header(path: str) -> tuple[int, int, str, int]:
    Image = _pillow()

    with Image.open(path) as image:
        return image.size[0], image.size[1], image.format or "", _orientation(image)


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size and orientation of an image; raises UnreadableImage with a plain reason."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError as err:
        raise UnreadableImage(f"cannot be opened ({err.strerror or err})") from None
    if stat.st_size == 0:
        raise UnreadableImage("is an empty file (0 bytes)")
    try:
        webp = _webp_header(path) if path.lower().endswith(".webp") else None
        if webp:
            (width, height, orientation), fmt = webp, "WEBP"
        else:
            width, height, fmt, orientation = _pillow_header(path)
    except UnidentifiedImageError:
        raise UnreadableImage("is not a readable image (damaged, or not really an image)") from None
    except Image.DecompressionBombError:
        raise UnreadableImage(f"claims more than twice the {pixel_limit() / 1e6:.0f}-megapixel "
                              "limit for safe decoding (damaged, or far too large)") from None
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        raise UnreadableImage(f"is not a readable image ({err})") from None
    if width < 1 or height < 1:
        raise UnreadableImage(f"has no pixels ({width}x{height})")
    huge = too_many_pixels(width, height)
    if huge:  # checked before anything below decodes it
        raise UnreadableImage(huge)
    if not _looks_complete(path, fmt, stat.st_size) and not _decodes(path):
        raise UnreadableImage("is truncated or damaged (the file ends before the picture does)")
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: width and height swap
        width, height = height, width
    return ImageHeader(width, height, orientation, stat.st_size, stat.st_mtime_ns)


def open_rgb(path: str, orientation: int | None = None,
             draft_size: tuple[int, int] | None = None):
    """Decode an image as 8-bit RGB, upright by its EXIF orientation (read from the file when
    `orientation` is None). The one place pixels are read, for training and previews alike.

    `draft_size` (upright width, height) lets JPEG decode at a reduced scale when the image is
    only going to be shrunk. Transparent pixels become white, not black. Raises DamagedImage.
    """
    Image = _pillow()

    try:
        image = Image.open(path)
        huge = too_many_pixels(*image.size)
        if huge:
            raise ValueError(huge)
        if orientation is None:
            orientation = _orientation(image)
        if draft_size and image.format == "JPEG":
            w, h = draft_size
            image.draft("RGB", (h, w) if orientation in (5, 6, 7, 8) else (w, h))
        image.load()
    except Exception as err:
        raise DamagedImage(f"image {path} could not be decoded ({err})",
                           "remove or replace the file") from None
    image = _eight_bit(image)
    transpose = _transposes().get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def _eight_bit(image):
    """16-bit grayscale ('I;16', or 'I' from older Pillow) scaled from 0..65535 to 0..255;
    Pillow's own convert would clip it, so any real photo would turn solid white."""
    if not (image.mode == "I" or image.mode.startswith("I;16")):
        return image
    import numpy as np
    from PIL import Image

    values = np.asarray(image).astype(np.uint32).clip(0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def _transposes():
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE,
            6: t.ROTATE_270, 7: t.TRANSVERSE, 8: t.ROTATE_90}

