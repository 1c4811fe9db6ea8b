"""The Dataset tab: folder builder, caption preview/editor, bucket preview.

The previews read the Train tab's form (folders, caption and bucket options, model), so what
they show is what that form would train with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from trainer.errors import UserError

from . import caption_tab, dataset_builder, messages, paths, reg_tab
from .context import AppContext
from .form import Form
from .formvalues import config_from_widgets
from .previews import (MAX_SHOWN, bucket_view, caption_label, caption_rows, histogram_html,
                       save_caption, thumbnail)
from .workspace import safe_name


def _paths(files, folder: str, ctx: AppContext) -> list[Path]:
    """Uploaded files and a typed folder, each checked (UserError when not allowed)."""
    chosen = [paths.uploaded(ctx.workspace, f if isinstance(f, str) else f.name, "uploaded file")
              for f in files or []]
    if folder and folder.strip():
        chosen.append(paths.inside(ctx.workspace, folder, "image folder"))
    return chosen


def _count(chosen: list[Path]) -> int:
    try:
        return len(dataset_builder.split_images([p for p in chosen if p.exists()])[0])
    except OSError:
        return 0


def _error(err: UserError) -> str:
    return messages.note(f"{err.message} ({err.hint})" if err.hint else err.message, "error")


class BuilderHandlers:
    def __init__(self, ctx: AppContext, result: gr.HTML, form: Form):
        """result: where build() reports; the form's train_data_dir and reg_data_dir receive
        the built folders."""
        self.ctx, self.result = ctx, result
        self.train_data_dir = form.widgets["train_data_dir"]
        self.reg_data_dir = form.widgets["reg_data_dir"]

    def build_outputs(self) -> list:
        return [self.result, self.train_data_dir, self.reg_data_dir]

    def balance(self, files, folder, repeats, reg_files, reg_folder, reg_repeats):
        try:
            images = _count(_paths(files, folder, self.ctx))
            regs = _count(_paths(reg_files, reg_folder, self.ctx))
        except UserError as err:
            return _error(err), gr.skip()
        result = dataset_builder.balance(images, int(repeats or 1), regs, int(reg_repeats or 1))
        return (f'<div class="msg msg-info" id="balance-text" data-suggested="{result.suggested_repeats}">'
                f'{result.text}</div>'), result.suggested_repeats

    def build(self, files, folder, identifier, cls, repeats, reg_files, reg_folder, reg_repeats, dest):
        workspace = self.ctx.workspace
        try:
            images = _paths(files, folder, self.ctx)
            regs = _paths(reg_files, reg_folder, self.ctx)
            target = paths.inside(workspace, dest, "destination folder") if dest and dest.strip() \
                else workspace.datasets / safe_name(f"{identifier} {cls}")
            missing = [p for p in images + regs if not p.exists()]
            if missing:
                raise UserError(f"{missing[0]} does not exist", "pick existing images or folders")
            result = dataset_builder.build(target, images, identifier, cls, int(repeats or 1),
                                           regs, int(reg_repeats or 1))
        except UserError as err:
            return {self.result: _error(err)}
        items = [f"{result.concept_dir} ({result.copied} files copied)"]
        if result.reg_concept_dir:
            items.append(f"{result.reg_concept_dir} ({result.reg_copied} files copied)")
        text = messages.note("Built the folders; the Train tab's train_data_dir and reg_data_dir "
                             "now point at them.", "ok", items + result.skipped)
        reg_dir = str(result.reg_dir) if result.reg_dir else ""
        return {self.result: text, self.train_data_dir: str(result.train_dir),
                self.reg_data_dir: reg_dir}


def build_folder_builder(ctx: AppContext, form: Form) -> None:
    gr.Markdown("Copy your pictures into the folder layout the trainer reads: "
                "`img/<repeats>_<identifier> <class>` and `reg/<repeats>_<class>`. "
                "Your files are copied, never moved or overwritten.")
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Training images", file_count="multiple", file_types=["image"],
                            elem_id="build-images", height=160)
            folder = gr.Textbox(label="…or a folder of training images", max_lines=1,
                                elem_id="build-folder")
            with gr.Row():
                identifier = gr.Textbox(label="Identifier", value="sks", max_lines=1,
                                        info="a rare word that will mean your subject",
                                        elem_id="build-identifier")
                cls = gr.Textbox(label="Class", placeholder="dog", max_lines=1,
                                 info="what the subject is", elem_id="build-class")
                repeats = gr.Number(label="Repeats", value=20, precision=0, minimum=1,
                                    elem_id="build-repeats")
        with gr.Column():
            reg_files = gr.File(label="Regularization images (optional)", file_count="multiple",
                                file_types=["image"], elem_id="build-reg-images", height=160)
            reg_folder = gr.Textbox(label="…or a folder of regularization images", max_lines=1,
                                    elem_id="build-reg-folder")
            reg_repeats = gr.Number(label="Regularization repeats", value=1, precision=0,
                                    minimum=1, elem_id="build-reg-repeats")
    dest = gr.Textbox(label="Destination folder", max_lines=1, elem_id="build-dest",
                      placeholder=f"default: {ctx.workspace.datasets}/<identifier>-<class>")
    balance = gr.HTML(elem_id="build-balance")
    suggested = gr.State(20)
    with gr.Row():
        use_suggested = gr.Button("Use suggested repeats", elem_id="build-suggest")
        build = gr.Button("Build folders", variant="primary", elem_id="build-run")
    result = gr.HTML(elem_id="build-message")
    handlers = BuilderHandlers(ctx, result, form)
    counted = [files, folder, repeats, reg_files, reg_folder, reg_repeats]
    for component in (files, reg_files):
        component.change(handlers.balance, counted, [balance, suggested])
    for component in (folder, reg_folder):
        component.blur(handlers.balance, counted, [balance, suggested])
    for component in (repeats, reg_repeats):
        component.change(handlers.balance, counted, [balance, suggested])
    use_suggested.click(lambda n: n, suggested, repeats)
    build.click(handlers.build, [files, folder, identifier, cls, repeats, reg_files, reg_folder,
                                 reg_repeats, dest], handlers.build_outputs())


@dataclass
class CaptionView:
    """The Captions sub-tab's components that its handlers fill."""

    summary: gr.HTML
    gallery: gr.Gallery
    rows: gr.State  # the previewed rows, for select() and save()
    path: gr.Textbox
    text: gr.Textbox
    about: gr.HTML

    def preview_outputs(self) -> list:
        return [self.summary, self.gallery, self.rows]

    def select_outputs(self) -> list:
        return [self.path, self.text, self.about]


class PreviewHandlers:
    def __init__(self, ctx: AppContext, form: Form, view: CaptionView):
        self.ctx, self.form, self.view = ctx, form, view

    def _cfg(self, args):
        """The form's config; UserError when one of its paths is outside the allowed folders."""
        mode, raw = self.form.values(args)
        cfg, _ = config_from_widgets(mode, raw)
        paths.check_config(self.ctx.workspace, cfg)
        return cfg

    def captions(self, *args):
        view = self.view
        try:
            rows, notes = caption_rows(self._cfg(args))
        except UserError as err:
            return {view.summary: _error(err), view.gallery: [], view.rows: []}
        shown = rows[:MAX_SHOWN]
        damaged: list[str] = []
        gallery = [(thumbnail(row["path"], problems=damaged), caption_label(row)) for row in shown]
        warnings = [f"{Path(r['path']).name}: {r['warning']}" for r in rows if r["warning"]]
        warnings += damaged
        counts = [r["tokens"] for r in rows if r["tokens"] is not None]
        head = f"{len(rows)} images" + (f", up to {max(counts)} tokens per caption" if counts else "")
        level = "warning" if notes or warnings else "ok"
        return {view.summary: messages.note(head, level, notes + warnings), view.gallery: gallery,
                view.rows: rows}

    def select(self, rows, event: gr.SelectData):
        view = self.view
        if not rows or event.index is None or event.index >= len(rows):
            return {view.path: "", view.text: "", view.about: ""}
        row = rows[event.index]
        return {view.path: row["path"], view.text: row["caption"], view.about: self._describe(row)}

    @staticmethod
    def _describe(row) -> str:
        parts = [f"from {'its caption file' if row['source'] == 'file' else 'the folder name'}"]
        if row["tokens"] is not None:
            parts.append(f"{row['tokens']} tokens")
        parts.append(f"shuffled example: “{row['shuffled']}”")
        level = "warning" if row["warning"] else "info"
        return messages.note(" · ".join(parts), level, [row["warning"]] if row["warning"] else [])

    def save(self, path, text, rows, *args):
        if not path:
            return messages.note("Select an image first.", "warning")
        try:
            cfg = self._cfg(args)
            target = paths.caption_target(self.ctx.workspace, path, cfg.caption_extension)
            save_caption(path, target, text, [r["path"] for r in rows or []])
        except UserError as err:
            return _error(err)
        return messages.note(f"Saved {target.name}; preview the captions again to see it.", "ok")

    def buckets(self, *args):
        try:
            preview, items = bucket_view(self._cfg(args))
        except UserError as err:
            return _error(err), []
        return histogram_html(preview), items


def build_previews(ctx: AppContext, form: Form) -> None:
    with gr.Tab("Captions", id="captions"):
        gr.Markdown("The caption each training image is trained with (its caption file, or the "
                    "folder's `identifier class`), counted with the model's tokenizer. Uses the "
                    "Train tab's folders and caption options.")
        preview = gr.Button("Preview captions", variant="primary", elem_id="captions-run")
        summary = gr.HTML(elem_id="captions-summary")
        gallery = gr.Gallery(label="Captions", columns=6, height=360, elem_id="captions-gallery",
                             interactive=False, allow_preview=False, object_fit="contain")
        rows = gr.State([])
        with gr.Row():
            path = gr.Textbox(label="Image", interactive=False, elem_id="caption-image", scale=2)
            text = gr.Textbox(label="Caption", elem_id="caption-text", scale=3, lines=2)
        about = gr.HTML(elem_id="caption-about")
        save = gr.Button("Save caption file", elem_id="caption-save")
        saved = gr.HTML(elem_id="caption-message")
    with gr.Tab("Buckets", id="buckets"):
        gr.Markdown("Which bucket each image lands in and what the crop keeps (the dimmed part is "
                    "cut away). Uses the Train tab's resolution and bucket options.")
        run_buckets = gr.Button("Preview buckets", variant="primary", elem_id="buckets-run")
        histogram = gr.HTML(elem_id="buckets-summary")
        bucket_gallery = gr.Gallery(label="Buckets", columns=6, height=360, interactive=False,
                                    elem_id="buckets-gallery", object_fit="contain")
    view = CaptionView(summary, gallery, rows, path, text, about)
    handlers = PreviewHandlers(ctx, form, view)
    preview.click(handlers.captions, form.inputs, view.preview_outputs())
    gallery.select(handlers.select, rows, view.select_outputs())
    save.click(handlers.save, [path, text, rows, *form.inputs], saved)
    run_buckets.click(handlers.buckets, form.inputs, [histogram, bucket_gallery])


def build(ctx: AppContext, form: Form) -> None:
    with gr.Tabs(elem_id="dataset-tabs"):
        with gr.Tab("Folder builder", id="builder"):
            build_folder_builder(ctx, form)
        with gr.Tab("Regularization images", id="reg-images"):
            reg_tab.build(ctx, form)
        with gr.Tab("Captioning", id="auto-captions"):
            caption_tab.build(ctx, form)
        build_previews(ctx, form)

