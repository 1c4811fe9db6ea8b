"""Caption files and the per-use caption rules (shuffle, keep_tokens, dropout)."""

from __future__ import annotations

import random
from pathlib import Path

from .concepts import CaptionRules

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def read_caption(path: Path) -> tuple[str | None, str | None]:
    """(caption, problem). The caption is the first non-empty line; None when unusable.

    UTF-8 (with or without BOM) and UTF-16 with a BOM (Notepad's "Unicode") are read as is.
    Anything else is read as Windows-1252, the usual legacy encoding, with a warning.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"caption {path} cannot be read ({err.strerror or err}); the folder prompt is used"
    problem = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data[len(bom):].decode(encoding, errors="replace")
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
            problem = (f"caption {path} is not UTF-8 text; it was read as Windows-1252 "
                       "and special characters may be wrong. Save it as UTF-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None, f"caption {path} is empty; the folder prompt is used for its image"
    return lines[0], problem


def decorate(caption: str, rules: CaptionRules) -> str:
    """Apply caption_prefix / caption_suffix (dataset_config subsets)."""
    parts = [p for p in (rules.caption_prefix, caption, rules.caption_suffix) if p]
    return " ".join(parts)


def tags(caption: str) -> list[str]:
    return [part.strip() for part in caption.split(",") if part.strip()]


def is_dropped(rules: CaptionRules, epoch: int, rng: random.Random) -> bool:
    """Whole-caption dropout. `epoch` counts from 0, so every_n_epochs=2 drops epochs 2, 4, …"""
    every = rules.caption_dropout_every_n_epochs
    if every > 0 and (epoch + 1) % every == 0:
        return True
    return rules.caption_dropout_rate > 0 and rng.random() < rules.caption_dropout_rate


def process_caption(caption: str, rules: CaptionRules, epoch: int, rng: random.Random) -> str:
    """The caption as used for one sample: dropout, then shuffle and tag dropout after the
    first `keep_tokens` comma-separated parts (which stay in place and are never dropped)."""
    if is_dropped(rules, epoch, rng):
        return ""
    if not (rules.shuffle_caption or rules.caption_tag_dropout_rate > 0):
        return caption
    parts = tags(caption)
    keep = max(0, rules.keep_tokens)
    fixed, flexible = parts[:keep], parts[keep:]
    if rules.shuffle_caption:
        rng.shuffle(flexible)
    if rules.caption_tag_dropout_rate > 0:
        flexible = [t for t in flexible if rng.random() >= rules.caption_tag_dropout_rate]
    return ", ".join(fixed + flexible)
