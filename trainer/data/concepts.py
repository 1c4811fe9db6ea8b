"""What the index is made of: image folders (subsets) with their rules, and the images in them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .buckets import Placement
from .imageinfo import ImageHeader


@dataclass(frozen=True)
class CaptionRules:
    caption_extension: str = ".caption"
    shuffle_caption: bool = False
    keep_tokens: int = 0
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    caption_prefix: str = ""
    caption_suffix: str = ""

    @property
    def fixed(self) -> bool:
        """True when a caption is the same every time it is used."""
        return not (self.shuffle_caption or self.caption_dropout_rate > 0
                    or self.caption_dropout_every_n_epochs > 0
                    or self.caption_tag_dropout_rate > 0)


@dataclass(frozen=True)
class Augment:
    flip_aug: bool = False
    color_aug: bool = False
    random_crop: bool = False


@dataclass
class Subset:
    """One folder of images: '20_sls frog' in train_data_dir, or a dataset_config subset."""

    folder: str
    name: str  # the folder's own name, as users and ss_* metadata know it
    repeats: int
    is_reg: bool
    prompt: str  # used for images without a caption file ("sls frog", or class_tokens)
    captions: CaptionRules = field(default_factory=CaptionRules)
    augment: Augment = field(default_factory=Augment)
    sizing: int = 0  # index into the dataset's list of Sizing (one per [[datasets]] entry)
    images: int = 0  # usable images, filled by the indexer
    captioned: int = 0  # of which have their own caption file

    @property
    def identifier(self) -> str:
        return "" if self.is_reg else (self.prompt.split(" ", 1)[0] if self.prompt else "")

    @property
    def class_name(self) -> str:
        if self.is_reg:
            return self.prompt
        parts = self.prompt.split(" ", 1)
        return parts[1] if len(parts) == 2 else ""


@dataclass(frozen=True)
class Item:
    """One usable image, with its base caption and its place in a bucket."""

    path: str
    subset: int  # index into Dataset.subsets
    header: ImageHeader
    caption: str  # before shuffling/dropout; prefix and suffix already applied
    caption_source: str  # "file" or "folder"
    placement: Placement
