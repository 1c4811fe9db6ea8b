"""The Train tab: presets, the option form, Check / Start / Print command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from trainer.config import OPTIONS, Config, errors
from trainer.errors import UserError

from . import messages, paths
from .browser import FolderBrowser
from .context import AppContext
from .estimate import estimate_line
from .form import Form, build_form, mode_radio
from .formvalues import check, command_line, config_from_widgets, to_widget
from .model_family import family_html
from .presets import (USER_PREFIX, apply_preset, list_presets, read_preset, save_preset,
                      start_config, user_preset_path)
from .runner import folder_in_use

PATH_OPTIONS = [o.name for o in OPTIONS if o.path]


@dataclass
class TrainTab:
    form: Form
    start: gr.Button
    message: gr.HTML
    command: gr.Textbox
    handlers: "TrainHandlers"


def run_name(cfg: Config, workspace=None) -> str:
    """A readable name for a proposed run folder: output_name, else the first concept."""
    if cfg.output_name:
        return cfg.output_name
    if cfg.train_data_dir and (workspace is None or workspace.allowed(cfg.train_data_dir)):
        folder = Path(cfg.train_data_dir)
        concepts = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if concepts and "_" in concepts[0]:
            return concepts[0].split("_", 1)[1]
    return cfg.mode


def absolute_paths(ctx: AppContext, cfg: Config) -> None:
    """Paths the user typed relative to the working directory become absolute for the run."""
    for name in PATH_OPTIONS:
        value = cfg.get(name)
        if not value:
            continue
        path = ctx.workspace.resolve(value)
        if path.exists() or name in ("output_dir", "logging_dir"):
            setattr(cfg, name, str(path))


def _proposal_updates(ctx: AppContext, cfg: Config) -> tuple[str, str]:
    current = str(ctx.workspace.resolve(cfg.output_dir)) if cfg.output_dir else ""
    run_dir = ctx.workspace.propose_run_dir(run_name(cfg, ctx.workspace), avoid=(current,))
    return str(run_dir), str(run_dir / "logs")


def _changed_names(before: Config, after: Config) -> set[str]:
    return {o.name for o in OPTIONS if before.get(o.name) != after.get(o.name) or before.mode != after.mode}


class TrainHandlers:
    """Event handlers; each takes the form's values as *args (see Form.inputs)."""

    def __init__(self, ctx: AppContext, form: Form, message: gr.HTML):
        self.ctx, self.form, self.message = ctx, form, message
        self.tabs: gr.Tabs | None = None  # set by start_outputs()
        self.run_select: gr.Dropdown | None = None

    def start_outputs(self, tabs: gr.Tabs, run_select: gr.Dropdown) -> list:
        """What start() updates besides this tab: the page's tabs (to show the Runs tab) and the
        Runs tab's run selector, which exist only once the whole page is built."""
        self.tabs, self.run_select = tabs, run_select
        return [self.message, self.form.widgets["output_dir"], self.form.widgets["logging_dir"],
                tabs, run_select]

    # -- mode switch: visibility, and a mode's own defaults for untouched options
    def switch_mode(self, *args):
        mode, raw = self.form.values(args)
        old = "lora" if mode == "db" else "db"
        cfg, _ = config_from_widgets(mode, raw)
        touched = set()
        for option in OPTIONS:
            if option.mode_defaults and raw.get(option.name) == to_widget(option, option.default_for(old)):
                setattr(cfg, option.name, option.default_for(mode))
                touched.add(option.name)
        return self.form.show(cfg, only=touched)

    def _checked(self, args):
        """The form's config and its problems, paths outside the allowed folders first (and
        then not opened at all)."""
        mode, raw = self.form.values(args)
        cfg, _ = config_from_widgets(mode, raw)
        outside = paths.config_problems(self.ctx.workspace, cfg)
        if outside:
            return cfg, outside
        return check(mode, raw)

    def check(self, *args):
        """The problems at once; then, for a usable config, the peak-memory estimate."""
        cfg, problems = self._checked(args)
        text = messages.problems_html(problems, "No problems found: ready to start.")
        yield text
        if errors(problems) or not cfg.pretrained_model_name_or_path:
            return
        yield text + messages.note("Estimating the peak GPU memory…", "info")
        cfg = cfg.copy()
        absolute_paths(self.ctx, cfg)
        line, ok = estimate_line(cfg, self.ctx.workspace.home)
        yield text + messages.note(line, "info" if ok else "warning")

    def print_command(self, *args):
        mode, raw = self.form.values(args)
        cfg, problems = check(mode, raw, check_paths=False)
        bad = errors(problems)
        text = command_line(cfg)
        note = messages.problems_html(bad) if bad else messages.note(
            "The command line for this form (run it in the project folder with its .venv "
            "active):", "info")
        return gr.update(value=text, visible=True), note

    def new_folder(self, *args):
        mode, raw = self.form.values(args)
        cfg, _ = config_from_widgets(mode, raw)
        output_dir, logging_dir = _proposal_updates(self.ctx, cfg)
        old_logs = str(Path(raw.get("output_dir") or "") / "logs")
        logs = logging_dir if raw.get("logging_dir") in ("", None, old_logs) else gr.skip()
        return output_dir, logs

    def start(self, *args):
        """Validate, write the run's config.toml, queue it; returns {component: update} for
        start_outputs()."""
        cfg, problems = self._checked(args)
        bad = errors(problems)
        if bad:
            return {self.message: messages.problems_html(problems)}
        run_dir = self.ctx.workspace.resolve(cfg.output_dir)
        if folder_in_use(run_dir):
            return {self.message: messages.note(
                f"{run_dir} already holds another run's files (they are never deleted). "
                "Press 'New run folder' for a fresh output_dir, or choose another one.",
                "warning")}
        absolute_paths(self.ctx, cfg)
        was_busy = self.ctx.runner.active() is not None
        self.ctx.runner.submit(cfg)
        output_dir, logging_dir = _proposal_updates(self.ctx, cfg)
        verb = "Queued" if was_busy else "Started"
        text = messages.note(f"{verb} {run_dir.name}. The next run will go to a new folder.", "ok",
                             [str(p) for p in problems])
        runs = [(info.name, str(info.run_dir)) for info in self.ctx.runner.runs()]
        widgets = self.form.widgets
        updates = {self.message: text, widgets["output_dir"]: output_dir,
                   widgets["logging_dir"]: logging_dir}
        if self.tabs is not None and self.run_select is not None:
            updates[self.tabs] = gr.Tabs(selected="runs")
            updates[self.run_select] = gr.update(choices=runs, value=str(run_dir))
        return updates


class PresetHandlers:
    """load/upload return {component: update} for [message, *form.outputs]."""

    def __init__(self, ctx: AppContext, form: Form, message: gr.HTML):
        self.ctx, self.form, self.message = ctx, form, message

    def choices(self, selected: str | None = None):
        labels = list(list_presets(self.ctx.workspace))
        return gr.update(choices=labels, value=selected if selected in labels else gr.skip())

    def describe(self, label: str | None):
        path = list_presets(self.ctx.workspace).get(label or "")
        if path is None:
            return ""
        try:
            preset = read_preset(path, "db")
        except Exception as err:  # a broken user file must not break the page
            return messages.note(str(err), "error")
        keys = ", ".join(preset.values)
        return messages.note(f"{preset.description or label} ({preset.mode or 'any mode'}; sets: {keys})")

    def _apply(self, path: Path | str, args) -> dict:
        mode, raw = self.form.values(args)
        current, _ = config_from_widgets(mode, raw)
        try:
            preset = read_preset(path, mode)
        except Exception as err:
            return {self.message: messages.note(f"could not load {Path(path).name}: {err}", "error")}
        updated = apply_preset(current, preset)
        shown = self.form.show(updated, only=_changed_names(current, updated) | set(preset.values))
        text = f"Loaded {preset.source}: set {len(preset.values)} option(s)."
        return {self.message: messages.note(text, "ok", preset.notes), **shown}

    def load(self, label: str | None, *args) -> dict:
        path = list_presets(self.ctx.workspace).get(label or "")
        if path is None:
            return {self.message: messages.note("Choose a preset first.", "warning")}
        return self._apply(path, args)

    def upload(self, file, *args) -> dict:
        if not file:
            return gr.skip()
        try:
            path = paths.uploaded(self.ctx.workspace, file if isinstance(file, str) else file.name,
                                  "config file")
        except UserError as err:
            return {self.message: messages.note(err.message, "error")}
        return self._apply(path, args)

    def _form_config(self, args) -> tuple[Config | None, str | None]:
        mode, raw = self.form.values(args)
        cfg, unreadable = config_from_widgets(mode, raw)
        if unreadable:
            return None, messages.problems_html(unreadable)
        return cfg, None

    def save(self, label: str | None, description: str, *args):
        if not label or not label.startswith(USER_PREFIX):
            return messages.note("Built-in presets are read-only: type a name and press Save as.",
                                 "warning"), gr.skip()
        return self._save(user_preset_path(self.ctx.workspace, label), description, args, overwrite=True)

    def save_as(self, name: str, description: str, *args):
        try:
            path = user_preset_path(self.ctx.workspace, name or "")
        except Exception as err:
            return messages.note(str(err), "warning"), gr.skip()
        return self._save(path, description, args, overwrite=False)

    def _save(self, path: Path, description: str, args, overwrite: bool):
        cfg, problem_text = self._form_config(args)
        if cfg is None:
            return problem_text, gr.skip()
        if path.exists() and not overwrite:
            return messages.note(f"{path.name} exists; select it and press Save to replace it, "
                                 "or choose another name.", "warning"), gr.skip()
        save_preset(cfg, path, description)
        label = USER_PREFIX + path.relative_to(self.ctx.workspace.user_presets).with_suffix("").as_posix()
        return messages.note(f"Saved {path}.", "ok"), self.choices(label)

    def download(self, name: str, description: str, *args):
        cfg, problem_text = self._form_config(args)
        if cfg is None:
            return problem_text, gr.skip()
        folder = self.ctx.temp_dir()
        path = user_preset_path(self.ctx.workspace, name or f"{cfg.mode}-config")
        target = save_preset(cfg, folder / path.name, description)
        return messages.note(f"{target.name} is ready: use the link to download it.", "ok"), \
            gr.update(value=str(target), visible=True)


def build_presets(ctx: AppContext, message: gr.HTML, selected: str | None = None):
    """The presets row; returns a function that wires it to the form once that exists."""
    with gr.Accordion("Presets and config files", open=True, elem_id="presets"):
        with gr.Row():
            preset = gr.Dropdown(choices=list(list_presets(ctx.workspace)), value=selected,
                                 label="Preset", elem_id="preset-select", scale=3)
            load = gr.Button("Load", elem_id="preset-load", scale=1, size="md")
            upload = gr.UploadButton("Load from file…", file_types=[".json", ".toml"],
                                     elem_id="preset-upload", scale=1, size="md")
        about = gr.HTML(elem_id="preset-about")
        with gr.Row():
            name = gr.Textbox(label="Preset name", placeholder="my-subject", elem_id="preset-name",
                              scale=2, max_lines=1)
            description = gr.Textbox(label="Description", elem_id="preset-description", scale=3,
                                     max_lines=1)
            save = gr.Button("Save", elem_id="preset-save", scale=1, size="md")
            save_as = gr.Button("Save as", elem_id="preset-save-as", scale=1, size="md")
            download = gr.Button("Download…", elem_id="preset-download", scale=1, size="md")
        download_file = gr.File(label="Config file", visible=False, interactive=False,
                                elem_id="preset-file")

    def wire(form: Form) -> None:
        handlers = PresetHandlers(ctx, form, message)
        form_in = form.inputs
        preset.change(handlers.describe, preset, about)
        load.click(handlers.load, [preset, *form_in], [message, *form.outputs])
        upload.upload(handlers.upload, [upload, *form_in], [message, *form.outputs])
        save.click(handlers.save, [preset, description, *form_in], [message, preset])
        save_as.click(handlers.save_as, [name, description, *form_in], [message, preset])
        download.click(handlers.download, [name, description, *form_in], [message, download_file])

    return wire


def build_browser(ctx: AppContext):
    """Walk the allowed folders and put a file or folder path into an option."""
    browser = FolderBrowser(ctx.workspace)
    first = browser.roots[0]
    with gr.Accordion("Browse files", open=False, elem_id="browse") as panel:
        gr.Markdown("Only these folders can be browsed: " +
                    ", ".join(f"`{r}`" for r in browser.roots) +
                    ". Start the GUI with `--root DIR` to add one.")
        with gr.Row():
            root = gr.Dropdown([str(r) for r in browser.roots], value=str(first), label="Folder",
                               elem_id="browse-root", scale=4)
            up = gr.Button("Up", elem_id="browse-up", scale=1)
        entries = gr.Radio(browser.entries(first), label=str(first), elem_id="browse-entries")
        with gr.Row():
            target = gr.Dropdown(choices=PATH_OPTIONS, value="train_data_dir",
                                 label="Put the path into", scale=3, elem_id="browse-target")
            use = gr.Button("Use selected", elem_id="browse-use", scale=1)
            use_here = gr.Button("Use this folder", elem_id="browse-use-here", scale=1)
    here = gr.State(str(first))

    def show(folder: str):
        return folder, gr.update(choices=browser.entries(Path(folder)), value=None, label=folder)

    def go(folder, selected):
        target_dir = browser.enter(folder, selected)
        return show(str(target_dir)) if target_dir else (gr.skip(), gr.skip())

    panel.expand(show, here, [here, entries])  # a fresh listing each time it is opened
    root.change(lambda r: show(str(browser.enter(r, None) or browser.roots[0])), root, [here, entries])
    up.click(lambda f: show(str(browser.parent(f))), here, [here, entries])
    # Clicking a folder opens it; a file stays selected for "Use selected".
    entries.input(lambda f, s: go(f, s) if s and Path(s).is_dir() else (gr.skip(), gr.skip()),
                  [here, entries], [here, entries])

    def wire(form: Form) -> None:
        outputs = [form.widgets[n] for n in PATH_OPTIONS]

        def put(path, option) -> dict:
            """The chosen path into the chosen option's widget; the other paths stay."""
            if not path or not browser.allowed(path) or option not in PATH_OPTIONS:
                return gr.skip()  # (an empty dict would not do: gradio wants one key at least)
            return {form.widgets[option]: str(path)}

        use.click(put, [entries, target], outputs)
        use_here.click(put, [here, target], outputs)

    return wire


def build(ctx: AppContext) -> TrainTab:
    initial, selected = start_config(ctx.workspace, ctx.start_preset)
    radio = mode_radio(initial.mode)
    with gr.Row(equal_height=True):
        check_btn = gr.Button("Check", elem_id="train-check")
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        print_btn = gr.Button("Print command", elem_id="train-print")
        new_folder = gr.Button("New run folder", elem_id="train-new-folder")
    message = gr.HTML(elem_id="train-message")
    command = gr.Textbox(label="Command", visible=False, interactive=False, lines=3,
                         buttons=["copy"], elem_id="train-command")
    wire_presets = build_presets(ctx, message, selected)
    wire_browser = build_browser(ctx)
    family = gr.HTML(elem_id="model-family")
    form = build_form(radio, initial)
    wire_presets(form)
    wire_browser(form)
    handlers = TrainHandlers(ctx, form, message)
    form.mode.change(handlers.switch_mode, form.inputs, form.outputs)
    check_btn.click(handlers.check, form.inputs, message)
    print_btn.click(handlers.print_command, form.inputs, [command, message])
    folder_outputs = [form.widgets["output_dir"], form.widgets["logging_dir"]]
    new_folder.click(handlers.new_folder, form.inputs, folder_outputs)
    ctx.on_load(handlers.new_folder, form.inputs, folder_outputs)
    model = form.widgets["pretrained_model_name_or_path"]
    show_family = lambda value: family_html(ctx.workspace, value)  # noqa: E731
    model.change(show_family, model, family)
    ctx.on_load(show_family, [model], [family])
    return TrainTab(form, start, message, command, handlers)
