"""`python -m trainer <command> …`: one entry point for training and the tools.

Each command lives in its own module and is imported only when used, so `--help` is instant.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from typing import Callable, Sequence

from .errors import UserError
from .lean_imports import skip_unused_imports
from .runs import LAUNCH_TIME_ENV

# command -> (summary, "module:function"); the function takes argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("DreamBooth / fine-tune the U-Net and text encoder", "trainer.run_cli:main_db"),
    "lora": ("train a LoRA network (kohya format)", "trainer.run_cli:main_lora"),
    "convert": ("convert a model between .safetensors/.ckpt and diffusers formats",
                "trainer.models.convert:main"),
    "lora-merge": ("merge LoRA files into a base model", "trainer.networks.merge:main"),
    "lora-info": ("show a LoRA file's layers, ranks and metadata", "trainer.networks.info:main"),
    "lora-resize": ("reduce a LoRA's rank by SVD", "trainer.networks.resize:main"),
    "lora-extract": ("make a LoRA from a fine-tuned model and its base",
                     "trainer.networks.extract:main"),
    "caption": ("write caption files for a folder of images (BLIP or WD14 tags)",
                "trainer.captioning.cli:main"),
    "reg-generate": ("draw regularization (class) images with the base model",
                     "trainer.reg_images.cli:main"),
    "bench": ("time a training step against a bare training loop", "trainer.bench:main"),
    "demo": ("train the bundled demo on this machine and measure what it learned",
             "trainer.demo.cli:main"),
}


def prepare_process() -> None:
    """Once per `python -m trainer` process, before anything else.

    A launcher started in the background (`nohup … &`, or a GUI started so) ignores SIGINT, and
    its children inherit that: Stop and Ctrl-C would then never reach the trainer. Its graceful
    stop replaces the handler later; until then SIGINT interrupts as usual.
    The launch time lets the run keep a stop request made while it was starting up; a launcher
    that set it earlier (the GUI) is kept, and the several-GPU processes inherit it.
    Model libraries are kept from importing what no command uses (start-up time).
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault(LAUNCH_TIME_ENV, repr(time.time()))
    skip_unused_imports()


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m trainer <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (summary, _) in COMMANDS.items()]
    lines += ["", "Run 'python -m trainer <command> --help' for the options of a command."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[list[str]], int]:
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)


def report_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        report_error(f"unknown command {command!r}. " + _usage().splitlines()[0])
        return 2
    try:
        return _resolve(COMMANDS[command][1])(rest)
    except UserError as err:
        report_error(str(err))
        return 2
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130
