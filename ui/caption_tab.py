"""The Dataset tab's automatic captions: `python -m trainer caption` on a folder, with a
preview that writes nothing before the run that writes the files."""

from __future__ import annotations

import gradio as gr

from trainer.errors import UserError

from . import paths, tools
from .context import AppContext
from .form import Form
from .utilities_tab import tool_runner


class Captions:
    def __init__(self, ctx: AppContext, form: Form):
        self.ctx, self.form = ctx, form

    def argv(self, preview: bool):
        def make(folder, train_dir, method, model, prefix, extension, thresh, undesired,
                 overwrite):
            folder = folder if folder and folder.strip() else train_dir
            if not folder or not folder.strip():
                raise UserError("no image folder given",
                                "type it, or set train_data_dir on the Train tab")
            folder = paths.inside(self.ctx.workspace, folder, "image folder")
            if model and model.strip() and paths.is_local_path(
                    "pretrained_model_name_or_path", model.strip(), self.ctx.workspace):
                model = str(paths.inside(self.ctx.workspace, model, "captioning model"))
            return tools.caption_argv(str(folder), method, model, prefix, extension, thresh,
                                      undesired, overwrite, recursive=True, preview=preview)
        return make


def build(ctx: AppContext, form: Form) -> None:
    captions = Captions(ctx, form)
    gr.Markdown("Write a caption file beside each image: a sentence (BLIP) or booru-style tags "
                "(WD14 tagger). The model is downloaded from the hub on first use. Preview "
                "first; existing caption files are kept unless you tick overwrite.")
    with gr.Row():
        folder = gr.Textbox(label="Image folder (default: the Train tab's train_data_dir)",
                            max_lines=1, elem_id="caption-folder")
        method = gr.Radio(["blip", "wd14"], value="blip", label="Method",
                          elem_id="caption-method")
        model = gr.Textbox(label="Model (hub id or folder; empty: the method's default)",
                           max_lines=1, elem_id="caption-model")
    with gr.Row():
        prefix = gr.Textbox(label="Prefix", placeholder="sks dog", max_lines=1,
                            info="put before every caption: the identifier and class",
                            elem_id="caption-prefix")
        thresh = gr.Number(label="Tag threshold (wd14)", value=0.35, elem_id="caption-thresh")
        undesired = gr.Textbox(label="Undesired tags (wd14, comma separated)", max_lines=1,
                               elem_id="caption-undesired")
        overwrite = gr.Checkbox(label="overwrite existing caption files",
                                elem_id="caption-overwrite")
    with gr.Row():
        preview = gr.Button("Preview", elem_id="caption-preview")
        write = gr.Button("Write caption files", variant="primary", elem_id="caption-write")
    status = gr.HTML(elem_id="caption-status")
    output = gr.Textbox(label="Output", lines=10, max_lines=20, interactive=False,
                        autoscroll=True, elem_id="caption-output")
    inputs = [folder, form.widgets["train_data_dir"], method, model, prefix,
              form.widgets["caption_extension"], thresh, undesired, overwrite]
    preview.click(tool_runner(ctx, captions.argv(preview=True)), inputs, [status, output])
    write.click(tool_runner(ctx, captions.argv(preview=False)), inputs, [status, output])
