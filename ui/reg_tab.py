"""The Dataset tab's regularization images: drawn by the base model of the Train tab.

Runs `python -m trainer reg-generate` as a subprocess with the Train tab's model, resolution and
bucket options; when it is done, the Train tab's reg_data_dir points at the new folder.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from trainer.errors import UserError

from . import paths, tools
from .context import AppContext
from .dataset_builder import reg_folder_name
from .form import Form
from .formvalues import config_from_widgets
from .utilities_tab import tool_runner
from .workspace import safe_name

SAMPLERS = ("euler_a", "euler", "ddim", "dpmsolver++", "heun", "lms", "pndm")


class RegImages:
    def __init__(self, ctx: AppContext, form: Form, status: gr.HTML, output: gr.Textbox):
        """status, output: the tool's progress; the form's reg_data_dir gets the new folder."""
        self.ctx, self.form = ctx, form
        self.status, self.output = status, output
        self.reg_data_dir = form.widgets["reg_data_dir"]

    def run_outputs(self) -> list:
        return [self.status, self.output, self.reg_data_dir]

    def _folder(self, cls: str, out: str) -> Path:
        """The folder asked for, or a new `<class>-reg/1_<class>` among the datasets (never
        into an existing regularization folder unless asked: it may be someone's curated set)."""
        if out and out.strip():
            return paths.inside(self.ctx.workspace, out, "output folder")
        if not cls or not cls.strip():
            raise UserError("no class given", "type the class, e.g. dog (the folder is 1_<class>)")
        root = self.ctx.workspace.datasets / safe_name(f"{cls} reg")
        return paths.inside(self.ctx.workspace, root / reg_folder_name(1, cls), "output folder")

    def argv(self, cls, class_prompt, count, negative, steps, scale, sampler, out, *form_args):
        mode, raw = self.form.values(form_args)
        cfg, _ = config_from_widgets(mode, raw)
        paths.check_config(self.ctx.workspace, cfg)
        folder = self._folder(cls, out)
        return tools.reg_generate_argv(cfg, class_prompt, count, str(folder), negative, steps,
                                       scale, sampler)

    def run(self, *args):
        """{component: update} for run_outputs() while reg-generate runs."""
        made: list[list[str]] = []

        def make_argv(*form_args):
            made.append(self.argv(*form_args))
            return made[-1]

        status = output = ""
        for status, output in tool_runner(self.ctx, make_argv)(*args):
            yield {self.status: status, self.output: output}
        if made and "Done" in status:  # the Train tab now trains with these images
            folder = Path(made[-1][made[-1].index("--out") + 1])
            yield {self.status: status, self.output: output, self.reg_data_dir: str(folder.parent)}


def build(ctx: AppContext, form: Form) -> None:
    gr.Markdown("Draw class images with the Train tab's base model, at its resolution (and in "
                "the training images' aspect ratios when buckets are on). Stopping and running "
                "again continues where it was; each image gets a caption file.")
    with gr.Row():
        cls = gr.Textbox(label="Class", placeholder="dog", max_lines=1, elem_id="reg-class",
                         info="the folder is named 1_<class>")
        class_prompt = gr.Textbox(label="Class prompt", placeholder="a photo of a dog",
                                  max_lines=1, elem_id="reg-prompt")
        count = gr.Number(label="Images", value=200, precision=0, minimum=1, elem_id="reg-count")
    with gr.Row():
        negative = gr.Textbox(label="Negative prompt", max_lines=1, elem_id="reg-negative")
        steps = gr.Number(label="Steps", value=30, precision=0, minimum=1, elem_id="reg-steps")
        scale = gr.Number(label="CFG scale", value=7.5, elem_id="reg-scale")
        sampler = gr.Dropdown(list(SAMPLERS), value="euler_a", label="Sampler",
                              elem_id="reg-sampler")
    out = gr.Textbox(label="Output folder (default: a new <class>-reg/1_<class> dataset folder)",
                     max_lines=1, elem_id="reg-out")
    run = gr.Button("Generate regularization images", variant="primary", elem_id="reg-run")
    status = gr.HTML(elem_id="reg-status")
    output = gr.Textbox(label="Output", lines=8, max_lines=16, interactive=False,
                        autoscroll=True, elem_id="reg-output")
    reg = RegImages(ctx, form, status, output)
    run.click(reg.run, [cls, class_prompt, count, negative, steps, scale, sampler, out,
                        *form.inputs], reg.run_outputs())
