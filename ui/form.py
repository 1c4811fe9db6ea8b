"""The Train tab's option widgets, generated from the option schema.

One accordion per schema group, an inner "Advanced" accordion for advanced options; label =
option name (the flag users know), info = its help text; hidden when the mode does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from trainer.config import GROUPS, MODE_TITLES, MODES, OPTIONS, Config, Option

from .formvalues import dropdown_choices, to_widget, widget_kind

OPEN_GROUPS = ("Model", "Folders")
# Gradio sizes checkboxes by their label only; every option gets the same room in a row.
FORM_CSS = ".option { min-width: 260px !important; flex: 1 1 260px !important; }\n"


def group_id(group: str) -> str:
    return "group-" + "".join(c if c.isalnum() else "-" for c in group.lower()).strip("-")


@dataclass
class Form:
    mode: gr.Radio
    widgets: dict[str, gr.components.Component] = field(default_factory=dict)
    groups: dict[str, gr.Accordion] = field(default_factory=dict)
    advanced: dict[str, gr.Accordion] = field(default_factory=dict)

    @property
    def inputs(self) -> list:
        """Mode first, then every option widget in schema order (see values())."""
        return [self.mode, *self.widgets.values()]

    @property
    def outputs(self) -> list:
        return [self.mode, *self.widgets.values(), *self.groups.values(), *self.advanced.values()]

    def values(self, args: tuple | list) -> tuple[str, dict[str, Any]]:
        """(mode, {option: widget value}) from the arguments of a handler given `inputs`."""
        mode, rest = args[0], args[1:len(self.widgets) + 1]
        return mode, dict(zip(self.widgets, rest))

    def show(self, cfg: Config, only: set[str] | None = None) -> dict:
        """{component: update} for `outputs` that display `cfg` (values, and visibility for its
        mode); values only of the options in `only` (all when None)."""
        updates: dict = {self.mode: cfg.mode}
        for option in OPTIONS:
            update: dict[str, Any] = {"visible": option.used_in(cfg.mode)}
            if only is None or option.name in only:
                update["value"] = to_widget(option, cfg.get(option.name))
            updates[self.widgets[option.name]] = gr.update(**update)
        for group, accordion in self.groups.items():
            updates[accordion] = gr.update(visible=_group_visible(group, cfg.mode))
        for group, accordion in self.advanced.items():
            updates[accordion] = gr.update(visible=_advanced_visible(group, cfg.mode))
        return updates


def _group_visible(group: str, mode: str) -> bool:
    return any(o.used_in(mode) for o in OPTIONS if o.group == group)


def _advanced_visible(group: str, mode: str) -> bool:
    return any(o.used_in(mode) and o.advanced for o in OPTIONS if o.group == group)


def make_widget(option: Option, cfg: Config) -> gr.components.Component:
    kind = widget_kind(option)
    mode = cfg.mode
    value = to_widget(option, cfg.get(option.name))
    common: dict[str, Any] = dict(label=option.name, info=option.help, elem_id=f"opt-{option.name}",
                  visible=option.used_in(mode), min_width=260, elem_classes=["option"])
    if kind == "checkbox":
        return gr.Checkbox(value=value, **common)
    if kind == "dropdown":
        return gr.Dropdown(choices=dropdown_choices(option), value=value, **common)
    if kind == "number":
        return gr.Number(value=value, precision=0, **common)
    placeholder = {"dir": "folder path", "file": "file path", "path": "file or folder path"}.get(
        option.path or "", "")
    if option.default is None and not placeholder:
        placeholder = "unset"
    return gr.Textbox(value=value, placeholder=placeholder, max_lines=1, **common)


def mode_radio(mode: str = "db") -> gr.Radio:
    return gr.Radio(choices=[(MODE_TITLES[m], m) for m in MODES], value=mode, label="Training",
                    elem_id="train-mode")


def build_form(radio: gr.Radio, start: Config | None = None) -> Form:
    """The accordions of option widgets showing `start` (defaults of `radio`'s mode if None)."""
    mode = radio.value
    start = start or Config(mode)
    form = Form(radio)
    for group in GROUPS:
        options = [o for o in OPTIONS if o.group == group]
        if not options:
            continue
        with gr.Accordion(group, open=group in OPEN_GROUPS, visible=_group_visible(group, mode),
                          elem_id=group_id(group)) as accordion:
            with gr.Row(equal_height=False):
                for option in (o for o in options if not o.advanced):
                    form.widgets[option.name] = make_widget(option, start)
            if any(o.advanced for o in options):
                with gr.Accordion("Advanced", open=False, visible=_advanced_visible(group, mode),
                                  elem_id=group_id(group) + "-advanced") as inner:
                    with gr.Row(equal_height=False):
                        for option in (o for o in options if o.advanced):
                            form.widgets[option.name] = make_widget(option, start)
                form.advanced[group] = inner
        form.groups[group] = accordion
    # Keep the schema order so values() maps arguments to names reliably.
    form.widgets = {o.name: form.widgets[o.name] for o in OPTIONS}
    return form
