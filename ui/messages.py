"""Small HTML messages shown under the buttons (problems, notes, results)."""

from __future__ import annotations

import html
from typing import Iterable

from trainer.config import Problem


def note(text: str, level: str = "info", items: Iterable[str] = ()) -> str:
    """level: info | ok | warning | error."""
    lines = "".join(f"<li>{html.escape(str(item))}</li>" for item in items)
    extra = f"<ul>{lines}</ul>" if lines else ""
    return f'<div class="msg msg-{level}" data-level="{level}">{html.escape(text)}{extra}</div>'


def problems_html(problems: list[Problem], ok_text: str = "No problems found.") -> str:
    errors = [p for p in problems if p.level == "error"]
    warnings = [p for p in problems if p.level != "error"]
    if not problems:
        return note(ok_text, "ok")
    rows = [f'<li class="problem problem-{p.level}" data-option="{html.escape(p.option or "")}">'
            f'<b>{p.level}</b> {html.escape(str(p))}</li>' for p in errors + warnings]
    level = "error" if errors else "warning"
    head = (f"{len(errors)} error{'s' * (len(errors) != 1)}" if errors else "") + \
        (", " if errors and warnings else "") + \
        (f"{len(warnings)} warning{'s' * (len(warnings) != 1)}" if warnings else "")
    return (f'<div class="msg msg-{level} problems" data-level="{level}" data-errors="{len(errors)}" '
            f'data-warnings="{len(warnings)}">{head}<ul>{"".join(rows)}</ul></div>')


MESSAGES_CSS = """
.msg { padding: 8px 12px; border-radius: 6px; margin: 4px 0; font-size: 14px; }
.msg ul { margin: 4px 0 0 18px; padding: 0; }
.msg-info { background: var(--background-fill-secondary); }
.msg-ok { background: #dcfce7; color: #14532d; }
.msg-warning { background: #fef3c7; color: #78350f; }
.msg-error { background: #fee2e2; color: #7f1d1d; }
"""
