"""Names of saved models and state folders, retention of old saves, training-state I/O.

Names follow sd-scripts: without output_name the final model is `last`, epoch saves are
`epoch-000001`, step saves `at-step00000100`; with output_name they all start with it. A state
folder is the model name plus `-state`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..disk_space import disk_full_error, ensure_free_space, is_disk_full
from ..errors import UserError
from ..runs import STATE_FILE

MODEL_EXTENSIONS = {"safetensors": ".safetensors", "ckpt": ".ckpt", "pt": ".pt",
                    "diffusers": "", "diffusers_safetensors": ""}


@dataclass(frozen=True)
class Naming:
    output_dir: Path
    output_name: str | None
    model_format: str  # a save_model_as value

    def last(self) -> str:
        return self.output_name or "last"

    def epoch(self, epoch: int) -> str:
        return f"{self.output_name or 'epoch'}-{epoch:06d}"

    def step(self, step: int) -> str:
        return f"{self.output_name or 'at'}-step{step:08d}"

    def model_path(self, stem: str) -> Path:
        return self.output_dir / (stem + MODEL_EXTENSIONS[self.model_format])

    def state_path(self, stem: str) -> Path:
        return self.output_dir / f"{stem}-state"

    def _pattern(self, kind: str, state: bool) -> re.Pattern:
        prefix = re.escape(self.output_name or {"epoch": "epoch", "step": "at"}[kind])
        number = r"(\d{6})" if kind == "epoch" else r"step(\d{8})"
        suffix = "-state" if state else re.escape(MODEL_EXTENSIONS[self.model_format])
        return re.compile(f"^{prefix}-{number}{suffix}$")

    def existing(self, kind: str, state: bool) -> list[tuple[int, Path]]:
        """Saves of one kind on disk, oldest first, as (epoch or step, path)."""
        pattern = self._pattern(kind, state)
        found = []
        for path in self.output_dir.iterdir() if self.output_dir.exists() else []:
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prune(naming: Naming, kind: str, *, state: bool, keep_last: int | None,
          current: int) -> list[Path]:
    """Delete old saves: epochs beyond the newest `keep_last`; steps older than current-keep_last."""
    if not keep_last:
        return []
    saves = naming.existing(kind, state)
    if kind == "epoch":
        doomed = [path for _, path in saves[:-keep_last]]
    else:
        doomed = [path for number, path in saves if number < current - keep_last]
    for path in doomed:
        remove_path(path)
    return doomed


def save_training_state(accelerator, folder: Path, train_state: dict, *,
                        weight_bytes: int = 0) -> Path:
    """accelerate's state (models, optimizer, schedule, scaler, RNG) plus our position.

    Written into a temporary folder first, so an interrupted save never replaces a good one;
    a failed save (a full disk) removes it again. `weight_bytes` (the trained weights, a lower
    bound of the state's size) is checked against the free space first.
    """
    partial = atomic.partial_state_dir(folder)
    if accelerator.is_main_process:
        ensure_free_space(folder.parent, weight_bytes, f"the training state {folder.name}")
        if partial.exists():
            shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic.write_text(partial / STATE_FILE, json.dumps(train_state, indent=2))
            atomic.give_default_mode(partial)  # safetensors writes private 0600 files
            if folder.exists():
                shutil.rmtree(folder)
            partial.rename(folder)
    except Exception as err:
        full = is_disk_full(err, folder.parent)
        if accelerator.is_main_process:
            atomic.remove_path(partial)
        if full:
            raise disk_full_error(folder) from None
        raise
    accelerator.wait_for_everyone()
    return folder


def read_training_state(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not a state folder written by this trainer (no {STATE_FILE})",
                        "give a '-state' folder from this trainer's output_dir to --resume")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is damaged", "resume from another state folder") from None


@dataclass(frozen=True)
class Retention:
    """How many epoch and step saves to keep (None: all), of models and of states."""

    epochs: int | None = None
    steps: int | None = None
    epoch_states: int | None = None
    step_states: int | None = None

    def keep(self, kind: str, state: bool) -> int | None:
        if kind == "epoch":
            return self.epoch_states if state else self.epochs
        return self.step_states if state else self.steps


class CheckpointSaver:
    """Writes the model (main process) and the training state (every process takes part), and
    prunes older saves of the same kind."""

    def __init__(self, procs, target, naming: Naming, reporter, retention: Retention,
                 optimizer, describe_state):
        """describe_state(position) -> the train_state.json content."""
        self.procs, self.target, self.naming, self.reporter = procs, target, naming, reporter
        self.retention, self.optimizer, self.describe_state = retention, optimizer, describe_state

    def save(self, stem: str, position, *, kind: str, number: int, with_state: bool) -> None:
        """kind: "epoch", "step" (pruned), "stop" or "last"; number: its epoch or step."""
        step, epoch = position.step, position.epoch_of_last_step
        pruned = kind in ("epoch", "step")
        if self.procs.is_main:
            path = self.target.save(self.naming.model_path(stem), step=step, epoch=epoch)
            self.reporter.save(step, epoch, path, "model")
            if pruned:
                prune(self.naming, kind, state=False, keep_last=self.retention.keep(kind, False),
                      current=number)
        if with_state:
            folder = save_training_state(self.procs.accelerator, self.naming.state_path(stem),
                                         self.describe_state(position),
                                         weight_bytes=self._trained_bytes())
            if self.procs.is_main:
                self.reporter.save(step, epoch, folder, "state")
                if pruned:
                    prune(self.naming, kind, state=True,
                          keep_last=self.retention.keep(kind, True), current=number)
        self.procs.accelerator.wait_for_everyone()
        self.reporter.resume_clock()

    def _trained_bytes(self) -> int:
        """The trained weights' size: every state holds them (and more: the optimizer's moments)."""
        return sum(p.numel() * p.element_size() for group in self.optimizer.param_groups
                   for p in group["params"])
