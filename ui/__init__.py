"""The Gradio front end. Never imports torch: training runs in a subprocess."""

from .app import build_app

__all__ = ["build_app"]
