"""Errors caused by the user's input: reported in one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a missing file, a wrong flag combination, a bad option value).

    message: what is wrong, naming the file or value; hint: how to fix it (optional);
    option: the option at fault (optional), shown as a '--name: ' prefix.
    `str()` is the one line the CLI prints and the GUI shows.
    """

    def __init__(self, message: str, hint: str | None = None, *, option: str | None = None):
        self.message = message
        self.hint = hint
        self.option = option
        super().__init__(self.line())

    def line(self) -> str:
        text = f"--{self.option}: {self.message}" if self.option else self.message
        return f"{text} ({self.hint})" if self.hint else text
