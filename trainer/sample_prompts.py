"""The sample prompt file (sd-scripts format): parsed and checked before anything loads.

Each line: a prompt, then optional `--n negative`, `--w width`, `--h height`, `--d seed`,
`--l CFG scale`, `--s steps`. Empty lines and lines starting with # are skipped.

Standard library only: the config check (CLI and GUI) reads the file without importing torch,
so a bad value is reported at start instead of crashing or hanging the first sampling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

_FLAG = re.compile(r"(?:^|\s)--([nwhdls])\s+")


@dataclass
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    scale: float = 7.5
    steps: int = 20
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Limit:
    field: str
    kind: type
    low: float
    high: float
    what: str


# Wider than any model needs, narrow enough that a typo cannot hang the run (--w 100000 would
# ask the VAE for a 10-gigapixel image) or crash it after training (--s 0 gives no image).
LIMITS = {
    "w": Limit("width", int, 64, 4096, "pixels"),
    "h": Limit("height", int, 64, 4096, "pixels"),
    "s": Limit("steps", int, 1, 1000, "sampling steps"),
    "l": Limit("scale", float, 0, 50, "CFG scale"),
    "d": Limit("seed", int, 0, 2 ** 32 - 1, "seed"),
}


def parse_prompt_line(line: str, where: str = "sample prompt") -> SamplePrompt:
    """One line -> SamplePrompt; `where` names the file and line in error messages."""
    parts = _FLAG.split(line)
    sample = SamplePrompt(prompt=parts[0].strip())
    for flag, value in zip(parts[1::2], parts[2::2]):
        value = value.strip()
        if flag == "n":
            sample.negative = value
            continue
        limit = LIMITS[flag]
        try:
            number = limit.kind(value)
        except ValueError:
            raise UserError(f"{where}: option --{flag} {value!r} is not a number",
                            f"fix the line: {line.strip()}") from None
        if not limit.low <= number <= limit.high:
            raise UserError(f"{where}: --{flag} {value} is out of range; allowed "
                            f"{_number(limit.low)} to {_number(limit.high)} ({limit.what})",
                            "fix that line of the sample prompt file")
        setattr(sample, limit.field, number)
    return sample


def read_prompts(path: str | Path) -> list[SamplePrompt]:
    """Every prompt of the file, each line checked; a UserError names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "save the prompt file as UTF-8") from None
    except OSError as err:
        raise UserError(f"cannot read the sample prompt file {path}: {err.strerror}") from None
    prompts = [parse_prompt_line(line, f"{path} line {number}")
               for number, line in enumerate(text.splitlines(), start=1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UserError(f"{path} holds no prompts", "write one prompt per line")
    return prompts


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
