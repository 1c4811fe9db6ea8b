"""The Utilities tab: model conversion and LoRA tools, run as trainer subprocesses."""

from __future__ import annotations

import gradio as gr

from .context import AppContext


def build(ctx: AppContext) -> None:
    gr.Markdown("Utilities")
