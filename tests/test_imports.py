"""The GUI and the option schema start without the heavy ML libraries."""

import subprocess
import sys

from helpers import REPO

HEAVY = ("torch", "diffusers", "transformers")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    return set(result.stdout.split())


def test_gui_starts_without_torch():
    modules = loaded_after("import app, ui; ui.build_app()")
    assert not modules & set(HEAVY)


def test_option_schema_and_cli_entry_import_nothing_heavy():
    modules = loaded_after("import trainer.config, trainer.commands, trainer.run_cli")
    assert not modules & {*HEAVY, "gradio", "numpy"}
