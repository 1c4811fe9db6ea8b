"""Errors caused by the user's input: reported in one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a missing file, a wrong flag combination). `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")
