"""Assemble the tabs into one page."""

from __future__ import annotations

import gradio as gr

TITLE = "Stable Diffusion DreamBooth & LoRA trainer"


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}")
        with gr.Tab("Train"):
            gr.Markdown("Training form: coming with the GUI issue.")
        with gr.Tab("Dataset"):
            gr.Markdown("Dataset builder and previews.")
        with gr.Tab("Runs"):
            gr.Markdown("Runs and their progress.")
        with gr.Tab("Utilities"):
            gr.Markdown("Model conversion and LoRA tools.")
    return app
