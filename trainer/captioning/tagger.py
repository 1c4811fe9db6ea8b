"""Booru-style tags from a WD14-family tagger: an ONNX model and its selected_tags.csv.

The model takes 448×448 (its input's size) BGR pictures with values 0-255, padded to a square
with white, and gives one probability per row of the CSV. Rows of category 9 are ratings
(never written), 4 are characters, 0 general tags.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

FILES = ("model.onnx", "selected_tags.csv")
RATING, GENERAL, CHARACTER = 9, 0, 4
# Tags made of underscores on purpose (faces), kept as they are when underscores become spaces.
KAOMOJI = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3",
           "6_9", ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}


@dataclass(frozen=True)
class Tag:
    name: str
    category: int


def model_folder(model: str) -> Path:
    """A folder with model.onnx and selected_tags.csv: the path given, or a hub repo's files."""
    path = Path(model)
    if path.is_dir():
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise UserError(f"tagger folder {path} has no {' or '.join(missing)}",
                            "give a WD14 tagger folder (model.onnx and selected_tags.csv)")
        return path
    from ..models import hub

    if hub.looks_like_hub_id(model):
        folder = hub.file_folder(model, None, list(FILES))
        if folder is not None and all((folder / name).is_file() for name in FILES):
            return folder
        reason = "the machine is offline" if hub.offline() else "it could not be downloaded"
        raise UserError(f"tagger {model!r} is not in the local hub cache and {reason}",
                        "download it once while online, or give a folder with model.onnx and "
                        "selected_tags.csv")
    raise UserError(f"tagger {model} does not exist", "give a hub id or a tagger folder")


def read_tags(csv_path: Path) -> list[Tag]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return [Tag(row["name"], int(row["category"])) for row in rows]
    except (KeyError, ValueError):
        raise UserError(f"{csv_path} is not a tagger's tag list (columns name and category)",
                        "use the selected_tags.csv that came with the model") from None


def readable(name: str, remove_underscore: bool) -> str:
    return name.replace("_", " ") if remove_underscore and name not in KAOMOJI else name


class Tagger:
    def __init__(self, model: str):
        import onnxruntime

        folder = model_folder(model)
        self.tags = read_tags(folder / "selected_tags.csv")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                                    providers=providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = int(model_input.shape[1]) if isinstance(model_input.shape[1], int) else 448
        outputs = self.session.get_outputs()[0].shape[-1]
        if isinstance(outputs, int) and outputs != len(self.tags):
            raise UserError(f"{folder / 'selected_tags.csv'} lists {len(self.tags)} tags but the "
                            f"model gives {outputs}", "use the files that came together")

    def _pixels(self, image):
        import numpy as np
        from PIL import Image

        side = max(image.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        square = square.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(square, dtype=np.float32)[:, :, ::-1]  # RGB -> BGR

    def probabilities(self, images):
        import numpy as np

        batch = np.stack([self._pixels(image) for image in images])
        return self.session.run(None, {self.input_name: batch})[0]

    def tag(self, images, *, general_threshold: float, character_threshold: float,
            undesired: set[str], remove_underscore: bool) -> list[list[str]]:
        """Tags of each image: characters first, then general tags, most certain first."""
        results = []
        for row in self.probabilities(images):
            chosen = []
            for tag, probability in zip(self.tags, row):
                threshold = {GENERAL: general_threshold, CHARACTER: character_threshold}.get(
                    tag.category)
                name = readable(tag.name, remove_underscore)
                if threshold is not None and probability >= threshold and \
                        name not in undesired and tag.name not in undesired:
                    chosen.append((tag.category != CHARACTER, -float(probability), name))
            results.append([name for _, _, name in sorted(chosen)])
        return results
