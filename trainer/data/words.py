"""Counting words for messages: '1 image has', '3 images have'."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural


def say(n: int, noun: str, singular: str, plural: str) -> str:
    """say(2, 'image', 'has', 'have') -> '2 images have'."""
    return f"{count(n, noun)} {verb(n, singular, plural)}"
