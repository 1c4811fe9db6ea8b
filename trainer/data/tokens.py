"""Count caption tokens with the model's own tokenizer (the tokenizers library: light, fast).

Torch-free: the GUI's caption preview and the dataset report use it as well as training.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..config import Config

CHUNK = 75  # tokens per text-encoder pass, without the start and end tokens


def _tokenizer_folders(cfg: Config) -> list[Path]:
    folders = []
    if cfg.tokenizer:
        folders.append(Path(cfg.tokenizer).expanduser())
    if cfg.pretrained_model_name_or_path:
        model = Path(cfg.pretrained_model_name_or_path).expanduser()
        folders += [model / "tokenizer", model]
    return [f for f in folders if f.is_dir()]


@lru_cache(maxsize=4)
def _load(folder: str, stamp: float) -> Callable[[str], list[str]]:
    path = Path(folder)
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        return lambda text: tokenizer.encode(text, add_special_tokens=False).tokens
    from transformers import CLIPTokenizer  # vocab.json + merges.txt only: the slower way

    slow = CLIPTokenizer.from_pretrained(str(path))
    return slow.tokenize


def tokenizer_for(cfg: Config) -> tuple[Callable[[str], list[str]] | None, str]:
    """(text -> tokens, where it came from), or (None, why not)."""
    for folder in _tokenizer_folders(cfg):
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
            stamp = max(p.stat().st_mtime for p in folder.iterdir())
            return _load(str(folder), stamp), str(folder)
    return None, ("token counts need the model's tokenizer: set pretrained_model_name_or_path to "
                  "a diffusers folder, or tokenizer to a tokenizer folder")


def limit(cfg: Config) -> int:
    return cfg.max_token_length or CHUNK


def token_warning(count: int, cfg: Config) -> str | None:
    allowed = limit(cfg)
    if count <= allowed:
        return None
    wider = next((n for n in (150, 225) if n >= count), None)
    fix = f"raise max_token_length to {wider}" if wider and wider > allowed else "shorten the caption"
    return f"{count} tokens: past the limit of {allowed}, the rest is cut off ({fix})"


def long_captions_warning(captions: list[tuple[str, str]], count: Callable[[str], int],
                          cfg: Config) -> str | None:
    """One line about the captions (path, text) longer than max_token_length, or None."""
    allowed = limit(cfg)
    long = [(path, n) for path, n in ((path, count(text)) for path, text in captions)
            if n > allowed]
    if not long:
        return None
    path, most = max(long, key=lambda pair: pair[1])
    wider = next((n for n in (150, 225) if n >= most and n > allowed), None)
    fix = f"raise max_token_length to {wider}" if wider else "shorten them"
    return (f"{len(long)} caption(s) are longer than max_token_length {allowed} and are cut off "
            f"in training (longest: {Path(path).name}, {most} tokens); {fix}")


def long_captions_in(dataset, cfg: Config) -> str | None:
    """long_captions_warning for a built dataset, with the model's tokenizer; None when there is
    no tokenizer to count with (a single-file model without --tokenizer)."""
    tokens, _ = tokenizer_for(cfg)
    if tokens is None:
        return None
    captions = [(item.path, item.caption) for item in dataset.items]
    return long_captions_warning(captions, lambda text: len(tokens(text)), cfg)
