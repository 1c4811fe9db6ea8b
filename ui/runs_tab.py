"""The Runs tab: queue and history, and the selected run's progress, loss, samples and log.

A timer polls the run folders; each output is sent only when what it shows has changed, so a
page stays cheap to keep open and an event written by the trainer shows up within a tick.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from trainer.config import load_config
from trainer.errors import UserError
from trainer.runs import LOG_FILE, latest_state, stop_requested

from . import messages, paths
from .chart import loss_chart
from .context import AppContext
from .run_view import gallery_items, messages_html, progress_html, runs_table
from .runner import RunInfo, log_tail

POLL_SECONDS = 0.5
LOG_LINES = 200


@dataclass
class RunsView:
    """The components a timer tick may update."""

    table: gr.HTML
    select: gr.Dropdown
    progress: gr.HTML
    messages: gr.HTML
    chart: gr.HTML
    gallery: gr.Gallery
    log: gr.Textbox
    stop: gr.Button
    resume: gr.Button
    queue_row: gr.Row
    memo: gr.State  # what the page shows now, so that only changes are sent


@dataclass
class RunsTab:
    select: gr.Dropdown
    handlers: "RunsHandlers"


def _pick(infos: list[RunInfo], selected: str | None) -> RunInfo | None:
    by_dir = {str(info.run_dir): info for info in infos}
    if selected in by_dir:
        return by_dir[selected]
    for info in infos:  # a page opened (or reloaded) during a run shows that run
        if info.status.active:
            return info
    return infos[0] if infos else None


def _log_key(info: RunInfo | None):
    if info is None:
        return None
    try:
        stat = (info.run_dir / LOG_FILE).stat()
        return (str(info.run_dir), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return (str(info.run_dir), 0, 0)


def _log_text(info: RunInfo | None) -> str:
    if info is None:
        return ""
    return "\n".join(log_tail(info.run_dir).splitlines()[-LOG_LINES:])


def _buttons(info: RunInfo | None, queue: list[Path]) -> dict:
    active = info is not None and info.status.active
    queued = info is not None and info.run_dir in queue
    stopping = info is not None and active and stop_requested(info.run_dir)
    resumable = info is not None and info.status.interrupted and \
        latest_state(info.run_dir) is not None
    return {
        "stop": gr.update(interactive=active,
                          value="Stop now (no save)" if stopping else "Stop"),
        "resume": gr.update(interactive=resumable),
        "queue": gr.update(visible=queued),
    }


class RunsHandlers:
    def __init__(self, ctx: AppContext, view: RunsView):
        self.ctx, self.view = ctx, view
        self.start_button: gr.Button | None = None  # the Train tab's; set by poll_outputs()

    def poll_outputs(self, start_button: gr.Button) -> list:
        """Everything refresh() may update: the view and the Train tab's start button (which
        reads "Queue" while a run is going)."""
        self.start_button = start_button
        view = self.view
        return [view.table, view.select, view.progress, view.messages, view.chart, view.gallery,
                view.log, view.stop, view.resume, view.queue_row, start_button, view.memo]

    def poll_inputs(self) -> list:
        return [self.view.select, self.view.memo]

    def refresh(self, selected: str | None, memo: dict | None) -> dict:
        """One timer tick: {component: update} of what changed since the last tick (and the
        memo of what is shown)."""
        memo = dict(memo or {})
        runner = self.ctx.runner
        infos = runner.runs()
        queue = runner.queue()
        info = _pick(infos, selected)
        chosen = str(info.run_dir) if info else None
        buttons = _buttons(info, queue)
        start_label = "Queue" if any(i.status.active for i in infos) else "Start"
        fresh = {
            "table": runs_table(infos, queue, chosen),
            "select": ([(i.name, str(i.run_dir)) for i in infos], chosen),
            "progress": progress_html(info),
            "messages": messages_html(info),
            "chart": (chosen, tuple(info.state.losses[-1:]) if info else (), len(info.state.losses) if info else 0),
            "gallery": (chosen, tuple(gallery_items(info))),
            "log": _log_key(info),
            "buttons": (info.status if info else None, info and info.run_dir in queue,
                        buttons["stop"]["value"], buttons["resume"]["interactive"]),
            "start": start_label,
        }
        changed = {key for key, value in fresh.items() if memo.get(key) != value}
        memo.update(fresh)
        view = self.view
        updates: dict = {view.memo: memo}
        if "table" in changed:
            updates[view.table] = fresh["table"]
        if "select" in changed:
            updates[view.select] = gr.update(choices=fresh["select"][0], value=chosen)
        if "progress" in changed:
            updates[view.progress] = fresh["progress"]
        if "messages" in changed:
            updates[view.messages] = fresh["messages"]
        if "chart" in changed:
            updates[view.chart] = loss_chart(info.state.losses if info else [])
        if "gallery" in changed:
            updates[view.gallery] = self._gallery(fresh["gallery"][1])
        if "log" in changed:
            updates[view.log] = _log_text(info)
        if "buttons" in changed:
            updates.update({view.stop: buttons["stop"], view.resume: buttons["resume"],
                            view.queue_row: buttons["queue"]})
        if "start" in changed and self.start_button is not None:
            updates[self.start_button] = gr.update(value=start_label)
        return updates

    def _gallery(self, items) -> list:
        """Images outside the browsable folders are sent as pictures rather than file links."""
        result = []
        for path, caption in items:
            if self.ctx.workspace.allowed(path):
                result.append((path, caption))
            else:
                from PIL import Image

                with Image.open(path) as image:
                    result.append((image.copy(), caption))
        return result

    def _known(self, selected: str | None) -> Path | None:
        """A run folder this GUI knows, never any other path a caller sends."""
        known = {str(d): Path(d) for d in self.ctx.runner.run_dirs()}
        return known.get(str(selected)) if selected else None

    def stop(self, selected: str | None):
        run_dir = self._known(selected)
        if run_dir is None:
            return messages.note("Select a run first.", "warning")
        info = self.ctx.runner.info(run_dir)
        if not info.status.active:
            return messages.note(f"{run_dir.name} is not running ({info.status}).", "warning")
        if stop_requested(run_dir):
            self.ctx.runner.stop(run_dir, now=True)
            return messages.note(f"Interrupted {run_dir.name} without saving.", "warning")
        self.ctx.runner.stop(run_dir)
        return messages.note(f"Stopping {run_dir.name} after the current step: it saves its state "
                             "and model first.", "ok")

    def resume(self, selected: str | None):
        run_dir = self._known(selected)
        if run_dir is None:
            return messages.note("Select a run first.", "warning")
        try:  # its config.toml may have been edited since it was started
            paths.check_config(self.ctx.workspace, load_config(run_dir / "config.toml"))
        except UserError as err:
            return messages.note(err.message, "error")
        except Exception as err:
            return messages.note(f"{run_dir.name}: its config.toml cannot be read ({err})", "error")
        state = latest_state(run_dir)
        if state is None:
            return messages.note(f"{run_dir.name} has no saved state to resume from (turn on "
                                 "save_state, or stop the run with Stop, which saves one).", "warning")
        try:
            self.ctx.runner.resume(run_dir, state)
        except UserError as err:
            return messages.note(f"{err.message} ({err.hint})", "error")
        return messages.note(f"Resuming {run_dir.name} from {state.name}.", "ok")

    def move(self, selected: str | None, delta: int):
        run_dir = self._known(selected)
        if run_dir is not None:
            self.ctx.runner.move(run_dir, delta)
        return messages.note("Queue order changed.", "info")

    def remove(self, selected: str | None):
        run_dir = self._known(selected)
        if run_dir is not None and self.ctx.runner.remove(run_dir):
            return messages.note(f"Removed {run_dir.name} from the queue (its folder is kept).", "ok"), None
        return messages.note("Only queued runs can be removed.", "warning"), gr.skip()

    def tensorboard(self, selected: str | None):
        run_dir = self._known(selected)
        if run_dir is None:
            return messages.note("Select a run first.", "warning")
        try:
            logging_dir = load_config(run_dir / "config.toml").logging_dir
        except Exception:
            logging_dir = None
        if logging_dir and not self.ctx.workspace.allowed(logging_dir):
            logging_dir = None
        if not logging_dir or not Path(logging_dir).exists():
            return messages.note("This run has no TensorBoard logs (its logging_dir is unset or "
                                 "not written yet).", "warning")
        url = self.ctx.tensorboards.open(Path(logging_dir))
        link = html.escape(url)
        return (f'<div class="msg msg-ok" id="tensorboard-link">TensorBoard for {html.escape(run_dir.name)}: '
                f'<a href="{link}" target="_blank" rel="noopener">{link}</a> (it takes a few seconds '
                f'to start)</div>')


def build(ctx: AppContext) -> RunsTab:
    table = gr.HTML(elem_id="runs-table")
    select = gr.Dropdown(choices=[], value=None, label="Run", elem_id="run-select",
                         allow_custom_value=False)
    with gr.Row():
        stop = gr.Button("Stop", elem_id="run-stop", interactive=False, variant="stop")
        resume = gr.Button("Resume", elem_id="run-resume", interactive=False)
        tensorboard = gr.Button("Open TensorBoard", elem_id="run-tensorboard")
    with gr.Row(visible=False, equal_height=True) as queue_row:
        up = gr.Button("Move up in queue", elem_id="queue-up", size="sm")
        down = gr.Button("Move down in queue", elem_id="queue-down", size="sm")
        remove = gr.Button("Remove from queue", elem_id="queue-remove", size="sm")
    action = gr.HTML(elem_id="run-action")
    progress = gr.HTML(elem_id="run-progress")
    run_messages = gr.HTML(elem_id="run-messages")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            chart = gr.HTML(elem_id="run-chart", label="Loss")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Samples", elem_id="run-gallery", columns=3, height=320,
                                 interactive=False, object_fit="contain")
    log = gr.Textbox(label="trainer.log", lines=14, max_lines=14, autoscroll=True,
                     interactive=False, elem_id="run-log")
    memo = gr.State({})
    handlers = RunsHandlers(ctx, RunsView(table, select, progress, run_messages, chart, gallery,
                                          log, stop, resume, queue_row, memo))
    stop.click(handlers.stop, select, action)
    resume.click(handlers.resume, select, action)
    tensorboard.click(handlers.tensorboard, select, action)
    up.click(lambda s: handlers.move(s, -1), select, action)
    down.click(lambda s: handlers.move(s, 1), select, action)
    remove.click(handlers.remove, select, [action, select])
    return RunsTab(select, handlers)
