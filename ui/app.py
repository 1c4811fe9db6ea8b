"""Assemble the tabs into one page."""

from __future__ import annotations

import gradio as gr

from . import dataset_tab, runs_tab, train_tab, utilities_tab
from .chart import CHART_CSS
from .context import AppContext
from .form import FORM_CSS
from .messages import MESSAGES_CSS
from .previews import PREVIEW_CSS
from .run_view import RUNS_CSS
from .runner import Runner
from .workspace import Workspace

TITLE = "Stable Diffusion DreamBooth & LoRA trainer"
CSS = FORM_CSS + CHART_CSS + RUNS_CSS + MESSAGES_CSS + PREVIEW_CSS + """
#run-log textarea { font-family: var(--font-mono); font-size: 12px; }
"""


def build_app(workspace: Workspace | None = None, runner: Runner | None = None,
              ctx: AppContext | None = None) -> gr.Blocks:
    """The page. The caller starts the runner's queue thread (runner.start())."""
    workspace = workspace or Workspace.create()
    ctx = ctx or AppContext(workspace, runner or Runner(workspace))
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}")
        with gr.Tabs(elem_id="main-tabs") as tabs:
            with gr.Tab("Train", id="train", elem_id="tab-train"):
                train = train_tab.build(ctx)
            with gr.Tab("Dataset", id="dataset", elem_id="tab-dataset"):
                dataset_tab.build(ctx, train.form)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs"):
                runs = runs_tab.build(ctx)
            with gr.Tab("Utilities", id="utilities", elem_id="tab-utilities"):
                utilities_tab.build(ctx)
        form = train.form
        train.start.click(train.handlers.start, form.inputs,
                          train.handlers.start_outputs(tabs, runs.select))
        # Outside the tabs: a tab's components are mounted only once it is shown, and the
        # start button must read "Queue" during a run whichever tab is open.
        timer = gr.Timer(runs_tab.POLL_SECONDS)
        timer.tick(runs.handlers.refresh, runs.handlers.poll_inputs(),
                   runs.handlers.poll_outputs(train.start),
                   show_progress="hidden", concurrency_limit=None)
        for fn, inputs, outputs in ctx.loads:
            app.load(fn, inputs, outputs, show_progress="hidden")
    app.ctx = ctx
    return app
