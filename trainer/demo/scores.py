"""The demo's measured numbers: draw pictures from fixed seeds and measure them.

- base accuracy: "a <colour> <shape>" for every colour and shape; a picture counts when it shows
  that shape in that colour.
- subject fidelity: "a sks circle" pictures that show the subject (a ring in its colour).
- class kept: "a circle" pictures that show a solid circle (any colour), as the base draws them.
- class drift: "a circle" pictures that show the subject's shape (the class forgot itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import evaluate, subject, world
from .generate import Prompted, generate, seeded

EVAL_FIRST_SEED = 500_000  # far from the seeds of the regularization images


@dataclass
class SubjectScores:
    fidelity: float
    class_kept: float
    class_drift: float
    samples: int  # per prompt
    pictures: dict = field(default_factory=dict, repr=False)  # prompt -> PIL images

    def as_dict(self) -> dict:
        return {"fidelity": self.fidelity, "class_kept": self.class_kept,
                "class_drift": self.class_drift, "samples": self.samples}


def base_accuracy(pipe, per_combination: int = 4) -> float:
    items = [Prompted(f"a {color} {shape}", EVAL_FIRST_SEED + index)
             for color in world.COLORS for shape in world.SHAPES for index in range(per_combination)]
    images = generate(pipe, items)
    hits = 0
    for item, image in zip(items, images):
        _, color, shape = item.prompt.split()
        hits += evaluate.measure(image).matches(shape, color)
    return hits / len(items)


def subject_scores(pipe, samples: int = 32) -> SubjectScores:
    instance = generate(pipe, seeded(subject.INSTANCE_PROMPT, samples, EVAL_FIRST_SEED))
    plain_pictures = generate(pipe, seeded(subject.CLASS_PROMPT, samples, EVAL_FIRST_SEED))
    plain = [evaluate.measure(image) for image in plain_pictures]
    fidelity = evaluate.fraction(instance, subject.SUBJECT_SHAPE, subject.SUBJECT_COLOR)
    kept = sum(m.matches(subject.CLASS) for m in plain) / samples
    drift = sum(m.matches(subject.SUBJECT_SHAPE) for m in plain) / samples
    return SubjectScores(fidelity, kept, drift, samples,
                         {subject.INSTANCE_PROMPT: instance, subject.CLASS_PROMPT: plain_pictures})
