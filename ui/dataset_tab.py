"""The Dataset tab: folder builder, caption preview/editor, bucket preview."""

from __future__ import annotations

import gradio as gr

from .context import AppContext
from .form import Form


def build(ctx: AppContext, form: Form) -> None:
    gr.Markdown("Dataset tools")
