"""HTML pieces of the Runs tab, rendered from a run's folder (no gradio here)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from trainer.runs import RunStatus

from .runner import RunInfo


def _e(value) -> str:
    """Everything read from a run folder is text, never markup."""
    return html.escape(str(value))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def badge(status: RunStatus) -> str:
    return f'<span class="run-status status-{status.value}">{status.value}</span>'


def runs_table(infos: list[RunInfo], queue: list[Path], selected: str | None) -> str:
    if not infos:
        return '<p class="muted">No runs yet. Press Start on the Train tab.</p>'
    rows = []
    for info in infos:
        state = info.state
        total = state.total_steps or "?"
        position = (f"queue #{queue.index(info.run_dir) + 1}" if info.run_dir in queue
                    else f"{state.step}/{total}")
        chosen = ' class="selected"' if selected == str(info.run_dir) else ""
        rows.append(
            f'<tr{chosen} data-run="{html.escape(info.name)}" data-status="{_e(info.status)}">'
            f'<td>{html.escape(info.name)}</td><td>{badge(info.status)}</td>'
            f'<td>{html.escape(str(state.mode or ""))}</td><td>{_e(position)}</td>'
            f'<td class="path">{html.escape(str(info.run_dir.parent))}</td></tr>')
    return ('<table class="runs-table"><thead><tr><th>run</th><th>status</th><th>mode</th>'
            '<th>step</th><th>in folder</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def progress_html(info: RunInfo | None, now: float | None = None) -> str:
    if info is None:
        return '<div class="run-progress" data-status="none"><p class="muted">No run selected.</p></div>'
    state = info.state
    now = now or time.time()
    percent = state.progress * 100
    parts = [f"step <b>{_e(state.step)}</b> / {_e(state.total_steps or '?')}"]
    if state.total_steps:
        parts.append(f"{percent:.0f}%")
    if state.epoch:
        parts.append(f"epoch {_e(state.epoch)}")
    if state.seconds_per_step:
        parts.append(f"{state.seconds_per_step:.2f} s/step")
    if info.status == RunStatus.RUNNING:
        parts.append(f"ETA {duration(state.eta_seconds)}")
        if state.started:
            parts.append(f"elapsed {duration(now - state.started)}")
    phase = ""
    if state.phase and info.status.active:
        p = state.phase
        phase = (f'<div class="phase">{html.escape(str(p.get("phase", "")))}: '
                 f'{_e(p.get("done", 0))}/{_e(p.get("total", "?"))}</div>')
    return (
        f'<div class="run-progress" data-status="{_e(info.status)}" data-step="{_e(state.step)}" '
        f'data-total="{_e(state.total_steps or 0)}"><div class="title">{badge(info.status)} '
        f'<b>{html.escape(info.name)}</b> <span class="muted">{html.escape(str(info.run_dir))}</span></div>'
        f'<div class="bar"><div class="fill" style="width:{percent:.1f}%"></div></div>'
        f'<div class="numbers">{" · ".join(parts)}</div>{phase}</div>'
    )


def messages_html(info: RunInfo | None) -> str:
    """The run's error (with its hint), warnings and saved files."""
    if info is None:
        return ""
    blocks = []
    error = info.error or info.state.error
    if error and info.status == RunStatus.FAILED:
        hint = f'<div class="hint">{html.escape(str(error.get("hint")))}</div>' if error.get("hint") else ""
        blocks.append(f'<div class="run-error"><b>Error:</b> {html.escape(str(error.get("message")))}{hint}</div>')
    for warning in info.state.warnings[-5:]:
        blocks.append(f'<div class="run-warning">warning: {html.escape(warning)}</div>')
    saves = info.state.saves
    if saves:
        items = "".join(f'<li>step {_e(s.get("step"))}: {html.escape(str(s.get("what")))} '
                        f'<code>{html.escape(str(s.get("path")))}</code></li>' for s in saves[-8:])
        blocks.append(f'<div class="run-saves"><b>Saved</b><ul>{items}</ul></div>')
    return "".join(blocks)


def gallery_items(info: RunInfo | None, limit: int = 48) -> list[tuple[str, str]]:
    """(image path, caption) of the run's samples that exist on disk, oldest first."""
    if info is None:
        return []
    items = []
    for sample in info.state.samples[-limit:]:
        path = Path(str(sample.get("path", "")))
        if not path.is_absolute():
            path = info.run_dir / path
        # events.jsonl is a file anyone may edit: show only pictures of the run's own folder
        if path.resolve().is_relative_to(info.run_dir.resolve()) and path.is_file():
            items.append((str(path), f'step {sample.get("step")}: {sample.get("prompt", "")}'))
    return items


RUNS_CSS = """
.runs-table { width: 100%; border-collapse: collapse; font-size: 13px; }
.runs-table th, .runs-table td { text-align: left; padding: 4px 8px;
  border-bottom: 1px solid var(--border-color-primary); }
.runs-table tr.selected { background: var(--color-accent-soft); }
.runs-table td.path { color: var(--body-text-color-subdued); font-size: 12px; }
.run-status { padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  background: #e5e7eb; color: #111827; }
.status-running, .status-starting { background: #dbeafe; color: #1e40af; }
.status-finished { background: #dcfce7; color: #166534; }
.status-stopped { background: #fef3c7; color: #92400e; }
.status-failed { background: #fee2e2; color: #991b1b; }
.run-progress .bar { height: 12px; border-radius: 6px; background: var(--border-color-primary);
  overflow: hidden; margin: 6px 0; }
.run-progress .fill { height: 100%; background: #3b82f6; transition: width 0.3s; }
.run-progress .numbers, .run-progress .phase { font-size: 13px; }
.run-error { background: #fee2e2; color: #7f1d1d; padding: 8px; border-radius: 6px; margin: 4px 0; }
.run-error .hint { font-size: 12px; margin-top: 2px; }
.run-warning { color: #92400e; font-size: 13px; }
.muted { color: var(--body-text-color-subdued); }
"""
