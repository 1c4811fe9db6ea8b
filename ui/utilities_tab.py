"""The Utilities tab: convert models, merge LoRA into a checkpoint or into one LoRA, extract a
LoRA from a fine-tune, inspect and resize LoRA files.

Each tool is the trainer's own command run as a subprocess; its output streams into the page.
"""

from __future__ import annotations

import shlex
import time

import gradio as gr

from trainer.errors import UserError

from . import messages, paths, tools
from .context import AppContext

PRECISION_CHOICES = [tools.DEFAULT, *tools.PRECISIONS]
FORMAT_CHOICES = [tools.DEFAULT, *tools.MODEL_FORMATS]


def tool_runner(ctx: AppContext, make_argv):
    """A generator handler: (status html, output text) while the tool runs."""

    def run(*args):
        try:
            argv = make_argv(*args)
        except (UserError, ValueError) as err:
            yield messages.note(str(err), "error"), ""  # a UserError's str() is its one line
            return
        if not tools.available(argv[0]):
            yield messages.note(f"'python -m trainer {argv[0]}' is not part of this version.",
                                "error"), ""
            return
        command = "python -m trainer " + shlex.join(argv)
        started = time.monotonic()
        yield messages.note(f"Running: {command}", "info"), ""
        for output, code in tools.stream(argv, ctx.workspace.home):
            elapsed = time.monotonic() - started
            if code is None:
                yield messages.note(f"Running ({elapsed:.0f} s): {command}", "info"), output
            elif code == 0:
                yield messages.note(f"Done in {elapsed:.1f} s: {command}", "ok"), output
            else:
                last = output.strip().splitlines()[-1] if output.strip() else f"exit code {code}"
                yield messages.note(f"Failed: {last}", "error"), output

    return run


class CheckedTools:
    """The tools' argument lists with every path checked against the allowed folders first
    (and passed on resolved, so no path can pass for an option)."""

    def __init__(self, ctx: AppContext):
        self.workspace = ctx.workspace

    def _in(self, value, what: str) -> str:
        return str(paths.inside(self.workspace, value, what)) if value and str(value).strip() \
            else value

    def _tokenizer(self, value) -> str | None:
        """A folder inside the allowed ones, or (as in the Train tab) a hub id naming no file."""
        text = str(value or "").strip()
        if not text or not paths.is_local_path("tokenizer", text, self.workspace):
            return text or None
        return self._in(text, "tokenizer")

    def convert(self, src, dst, tokenizer, *rest):
        return tools.convert_argv(self._in(src, "source model"), self._in(dst, "destination"),
                                  *rest, tokenizer=self._tokenizer(tokenizer))

    def _loras(self, loras_text) -> str:
        lines = []
        for path, weight in tools.lora_lines(loras_text):
            checked = self._in(path, "LoRA file")
            lines.append(checked if weight is None else f"{checked}:{weight:g}")
        return "\n".join(lines)

    def merge(self, base, loras_text, out, tokenizer, *rest):
        tools.merge_argv(base, loras_text, out, *rest)  # what is missing, in the form's order
        return tools.merge_argv(self._in(base, "base model"), self._loras(loras_text),
                                self._in(out, "output path"), *rest,
                                tokenizer=self._tokenizer(tokenizer))

    def combine(self, loras_text, out, *rest):
        tools.combine_argv(loras_text, out, *rest)  # what is missing, in the form's order
        return tools.combine_argv(self._loras(loras_text), self._in(out, "output file"), *rest)

    def extract(self, model_org, model_tuned, save_to, tokenizer, *rest):
        tools.extract_argv(model_org, model_tuned, save_to, *rest)
        return tools.extract_argv(self._in(model_org, "base model"),
                                  self._in(model_tuned, "fine-tuned model"),
                                  self._in(save_to, "output file"), *rest,
                                  tokenizer=self._tokenizer(tokenizer))

    def info(self, file, layers=False):
        return tools.info_argv(self._in(file, "LoRA file"), layers)

    def resize(self, file, new_dim, out=None, *rest):
        return tools.resize_argv(self._in(file, "LoRA file"), new_dim, self._in(out, "output file"),
                                 *rest)


def _output_box(prefix: str):
    status = gr.HTML(elem_id=f"{prefix}-status")
    output = gr.Textbox(label="Output", lines=10, max_lines=20, interactive=False, autoscroll=True,
                        elem_id=f"{prefix}-output")
    return status, output


def _common(prefix: str):
    with gr.Row():
        save_as = gr.Dropdown(FORMAT_CHOICES, value=tools.DEFAULT, label="save_model_as",
                              info="default: follows the destination's name", elem_id=f"{prefix}-format")
        precision = gr.Dropdown(PRECISION_CHOICES, value=tools.DEFAULT, label="save_precision",
                                elem_id=f"{prefix}-precision")
        v2 = gr.Checkbox(label="v2", info="insist on SD 2.x (normally detected)", elem_id=f"{prefix}-v2")
        vparam = gr.Checkbox(label="v_parameterization", info="768-v models",
                             elem_id=f"{prefix}-vparam")
        overwrite = gr.Checkbox(label="overwrite", info="replace the destination if it exists",
                                elem_id=f"{prefix}-overwrite")
    return [save_as, precision, v2, vparam, overwrite]


def _tokenizer_box(prefix: str, model: str):
    return gr.Textbox(label="tokenizer", max_lines=1, elem_id=f"{prefix}-tokenizer",
                      info=f"only for a single .safetensors/.ckpt {model}, which holds no "
                           "tokenizer: a tokenizer folder or a diffusers model folder")


def build(ctx: AppContext) -> None:
    checked = CheckedTools(ctx)
    with gr.Tabs(elem_id="utilities-tabs"):
        with gr.Tab("Convert model", id="convert"):
            gr.Markdown("Between `.safetensors` / `.ckpt` single files and diffusers folders, "
                        "and between precisions. A destination ending in `.safetensors` or "
                        "`.ckpt` is a single file, anything else a diffusers folder.")
            with gr.Row():
                src = gr.Textbox(label="Source model", max_lines=1, elem_id="convert-src")
                dst = gr.Textbox(label="Destination", max_lines=1, elem_id="convert-dst")
            tokenizer = _tokenizer_box("convert", "source model")
            common = _common("convert")
            run = gr.Button("Convert", variant="primary", elem_id="convert-run")
            status, output = _output_box("convert")
            run.click(tool_runner(ctx, checked.convert), [src, dst, tokenizer, *common],
                      [status, output])
        with gr.Tab("Merge LoRA", id="merge"):
            gr.Markdown("Bake one or more LoRA files into a base model. One LoRA per line, "
                        "optionally followed by `: weight` (default 1).")
            base = gr.Textbox(label="Base model", max_lines=1, elem_id="merge-base")
            loras = gr.Textbox(label="LoRA files", lines=3, elem_id="merge-loras",
                               placeholder="/path/to/subject.safetensors : 0.8")
            out = gr.Textbox(label="Merged model", max_lines=1, elem_id="merge-out")
            tokenizer = _tokenizer_box("merge", "base model")
            common = _common("merge")
            run = gr.Button("Merge", variant="primary", elem_id="merge-run")
            status, output = _output_box("merge")
            run.click(tool_runner(ctx, checked.merge), [base, loras, out, tokenizer, *common],
                      [status, output])
        with gr.Tab("Combine LoRAs", id="combine"):
            gr.Markdown("Merge several LoRA files into one LoRA. One LoRA per line, optionally "
                        "followed by `: weight`. Without a new rank the ranks are concatenated "
                        "(exact); with one, the sum is reduced to it by SVD.")
            loras = gr.Textbox(label="LoRA files", lines=3, elem_id="combine-loras",
                               placeholder="/path/to/style.safetensors : 0.6")
            with gr.Row():
                out = gr.Textbox(label="Combined LoRA file", max_lines=1, elem_id="combine-out")
                new_rank = gr.Number(label="New rank (empty: keep every rank)", value=None,
                                     precision=0, elem_id="combine-rank")
            with gr.Row():
                precision = gr.Dropdown(PRECISION_CHOICES, value=tools.DEFAULT,
                                        label="save_precision", elem_id="combine-precision")
                overwrite = gr.Checkbox(label="overwrite", elem_id="combine-overwrite")
            run = gr.Button("Combine", variant="primary", elem_id="combine-run")
            status, output = _output_box("combine")
            run.click(tool_runner(ctx, checked.combine), [loras, out, new_rank, precision, overwrite],
                      [status, output])
        with gr.Tab("Extract LoRA", id="extract"):
            gr.Markdown("Make a LoRA from a fine-tuned (e.g. DreamBooth) model and the base it "
                        "was trained from: the difference of each layer, reduced by SVD.")
            with gr.Row():
                model_org = gr.Textbox(label="Base model", max_lines=1, elem_id="extract-base")
                model_tuned = gr.Textbox(label="Fine-tuned model", max_lines=1,
                                         elem_id="extract-tuned")
            save_to = gr.Textbox(label="LoRA file to write", max_lines=1, elem_id="extract-out")
            tokenizer = _tokenizer_box("extract", "model")
            with gr.Row():
                dim = gr.Number(label="Rank (dim)", value=32, precision=0, elem_id="extract-dim")
                conv_dim = gr.Number(label="Conv rank (empty: no LoCon)", value=None, precision=0,
                                     elem_id="extract-conv-dim")
                clamp = gr.Number(label="clamp_quantile", value=0.99, elem_id="extract-clamp")
                precision = gr.Dropdown(PRECISION_CHOICES, value=tools.DEFAULT,
                                        label="save_precision", elem_id="extract-precision")
                overwrite = gr.Checkbox(label="overwrite", elem_id="extract-overwrite")
            run = gr.Button("Extract", variant="primary", elem_id="extract-run")
            status, output = _output_box("extract")
            run.click(tool_runner(ctx, checked.extract),
                      [model_org, model_tuned, save_to, tokenizer, dim, conv_dim, clamp, precision,
                       overwrite], [status, output])
        with gr.Tab("Inspect LoRA", id="info"):
            file = gr.Textbox(label="LoRA file", max_lines=1, elem_id="info-file")
            layers = gr.Checkbox(label="list every layer", elem_id="info-layers")
            run = gr.Button("Inspect", variant="primary", elem_id="info-run")
            status, output = _output_box("info")
            run.click(tool_runner(ctx, checked.info), [file, layers], [status, output])
        with gr.Tab("Resize LoRA", id="resize"):
            gr.Markdown("Reduce a LoRA's rank (SVD): a smaller file that keeps most of the effect.")
            with gr.Row():
                file = gr.Textbox(label="LoRA file", max_lines=1, elem_id="resize-file")
                new_dim = gr.Number(label="New rank", value=8, precision=0, elem_id="resize-dim")
                out = gr.Textbox(label="Output file (default: beside the input)", max_lines=1,
                                 elem_id="resize-out")
            with gr.Row():
                precision = gr.Dropdown(PRECISION_CHOICES, value=tools.DEFAULT,
                                        label="save_precision", elem_id="resize-precision")
                overwrite = gr.Checkbox(label="overwrite", elem_id="resize-overwrite")
            run = gr.Button("Resize", variant="primary", elem_id="resize-run")
            status, output = _output_box("resize")
            run.click(tool_runner(ctx, checked.resize), [file, new_dim, out, precision, overwrite],
                      [status, output])
