"""The demo world and its evaluator: fast checks that need no model."""

from __future__ import annotations

import pytest

from trainer.demo import evaluate, world


def test_the_same_seed_draws_the_same_pictures():
    first = [world.draw(s).tobytes() for s in world.scenes(5, 4)]
    again = [world.draw(s).tobytes() for s in world.scenes(5, 4)]
    other = [world.draw(s).tobytes() for s in world.scenes(6, 4)]
    assert first == again and first != other


def test_evaluator_reads_every_generated_picture_correctly():
    """The evaluator's own accuracy on generator pictures: every shape (the ring too) and
    colour, at every size and place the world uses."""
    items = world.scenes(123, 240, shapes=world.SHAPES + ("ring",))
    wrong = [(s, m) for s in items if not (m := evaluate.measure(world.draw(s))).matches(s.shape, s.color)]
    assert not wrong, wrong[:3]
    assert {s.shape for s in items} == set(world.SHAPES) | {"ring"}


def test_a_plain_or_noisy_picture_shows_no_shape():
    import numpy as np
    from PIL import Image

    plain = Image.new("RGB", (64, 64), world.BACKGROUND)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert evaluate.measure(plain).shape is None
    assert evaluate.measure(noise).shape is None


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "ring"])
def test_a_blurred_shape_is_still_recognised(shape):
    """Model outputs have soft edges; a moderate blur must not change the verdict."""
    from PIL import ImageFilter

    scene = world.Scene(shape=shape, color="green", side=30, x=14, y=20)
    blurred = world.draw(scene).filter(ImageFilter.GaussianBlur(1.2))
    assert evaluate.measure(blurred).matches(shape, "green")
