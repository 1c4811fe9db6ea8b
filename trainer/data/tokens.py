"""Count caption tokens with the model's own tokenizer (the tokenizers library: light, fast);
with both of an SDXL model's tokenizers.

Torch-free: the GUI's caption preview and the dataset report use it as well as training.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..config import Config

CHUNK = 75  # tokens per text-encoder pass, without the start and end tokens


def _tokenizer_folders(cfg: Config, sub: str = "tokenizer") -> list[Path]:
    folders = []
    if cfg.tokenizer:
        spec = Path(cfg.tokenizer).expanduser()
        folders += [spec / sub, spec] if sub == "tokenizer" else [spec / sub]
    if cfg.pretrained_model_name_or_path:
        model = Path(cfg.pretrained_model_name_or_path).expanduser()
        folders += [model / sub, model] if sub == "tokenizer" else [model / sub]
    return [f for f in folders if f.is_dir()]


def _is_xl(cfg: Config) -> bool:
    from ..model_family import NotDetected, detect

    if not cfg.pretrained_model_name_or_path:
        return False
    try:
        return detect(Path(cfg.pretrained_model_name_or_path).expanduser()).xl
    except NotDetected:
        return False


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


def _first_usable(folders: list[Path]) -> tuple[Callable[[str], list[str]], str] | None:
    for folder in folders:
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
            stamp = max(p.stat().st_mtime for p in folder.iterdir())
            return _load(str(folder), stamp), str(folder)
    return None


class BothTokenizers:
    """SDXL's two tokenizers (CLIP ViT-L's and OpenCLIP bigG's). They normally split a caption
    alike; where they do not, the longer split is what gets cut off, so it is the count."""

    def __init__(self, first: Callable[[str], list[str]], second: Callable[[str], list[str]]):
        self.first, self.second = first, second

    def __call__(self, text: str) -> list[str]:
        one, two = self.first(text), self.second(text)
        return two if len(two) > len(one) else one

    def longer(self, text: str) -> str | None:
        """Which tokenizer splits `text` into more tokens, when they disagree."""
        one, two = len(self.first(text)), len(self.second(text))
        return None if one == two else "tokenizer_2" if two > one else "tokenizer"


def tokenizer_for(cfg: Config) -> tuple[Callable[[str], list[str]] | None, str]:
    """(text -> tokens, where it came from), or (None, why not). For an SDXL model both of its
    tokenizers count (a BothTokenizers)."""
    first = _first_usable(_tokenizer_folders(cfg))
    if first is not None and _is_xl(cfg):
        second = _first_usable(_tokenizer_folders(cfg, "tokenizer_2"))
        if second is not None:
            return BothTokenizers(first[0], second[0]), f"{first[1]} and {second[1]}"
    if first is not None:
        return first
    return None, ("token counts need the model's tokenizer: set pretrained_model_name_or_path to "
                  "a diffusers folder, or tokenizer to a tokenizer folder")


def longer_tokenizer(tokenize: Callable[[str], list[str]] | None, text: str) -> str | None:
    """The name of the SDXL tokenizer that splits `text` longer, or None (they agree, or there
    is one tokenizer)."""
    return tokenize.longer(text) if isinstance(tokenize, BothTokenizers) else None


def limit(cfg: Config) -> int:
    return cfg.max_token_length or CHUNK


def token_warning(count: int, cfg: Config, longer: str | None = None) -> str | None:
    """longer: the SDXL tokenizer that counted `count` when the two disagree."""
    allowed = limit(cfg)
    if count <= allowed:
        return None
    wider = next((n for n in (150, 225) if n >= count), None)
    fix = f"raise max_token_length to {wider}" if wider and wider > allowed else "shorten the caption"
    by = f" by {longer}, the longer of SDXL's two" if longer else ""
    return f"{count} tokens{by}: past the limit of {allowed}, the rest is cut off ({fix})"


def long_captions_warning(captions: list[tuple[str, str]], count: Callable[[str], int],
                          cfg: Config, longer: Callable[[str], str | None] | None = None
                          ) -> str | None:
    """One line about the captions (path, text) longer than max_token_length, or None.
    longer(text): which SDXL tokenizer counted more, when the two disagree."""
    allowed = limit(cfg)
    long = [(path, text, n) for path, text, n in
            ((path, text, count(text)) for path, text in captions) if n > allowed]
    if not long:
        return None
    path, text, most = max(long, key=lambda row: row[2])
    by = longer(text) if longer else None
    counted = f"{most} tokens" + (f" by {by}, the longer of SDXL's two" if by else "")
    wider = next((n for n in (150, 225) if n >= most and n > allowed), None)
    fix = f"raise max_token_length to {wider}" if wider else "shorten them"
    return (f"{len(long)} caption(s) are longer than max_token_length {allowed} and are cut off "
            f"in training (longest: {Path(path).name}, {counted}); {fix}")


def long_captions_in(dataset, cfg: Config) -> str | None:
    """long_captions_warning for a built dataset, with the model's tokenizer; None when there is
    no tokenizer to count with (a single-file model without --tokenizer)."""
    tokens, _ = tokenizer_for(cfg)
    if tokens is None:
        return None
    captions = [(item.path, item.caption) for item in dataset.items]
    return long_captions_warning(captions, lambda text: len(tokens(text)), cfg,
                                 lambda text: longer_tokenizer(tokens, text))
