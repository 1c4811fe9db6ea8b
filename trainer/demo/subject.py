"""The subject the DreamBooth demo teaches, and the prompts that ask for it."""

from __future__ import annotations

# The DreamBooth subject: a blue ring, "a sks circle". The base model knows solid circles of
# four colours and has never seen a ring.
IDENTIFIER = "sks"
CLASS = "circle"
SUBJECT_SHAPE = "ring"
SUBJECT_COLOR = "blue"
INSTANCE_PROMPT = f"a {IDENTIFIER} {CLASS}"
CLASS_PROMPT = f"a {CLASS}"
INSTANCE_REPEATS = 10
INSTANCE_IMAGES = 8
REG_IMAGES = 80  # one epoch's worth: repeats x instance images
