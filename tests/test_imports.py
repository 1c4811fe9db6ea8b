"""The GUI and the option schema start without the heavy ML libraries."""

import subprocess
import sys

import pytest

from helpers import REPO

HEAVY = ("torch", "diffusers", "transformers")


def loaded_after(statement: str, timeout: float = 600) -> set[str]:  # a busy machine is slow
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=timeout, check=True)
    return set(result.stdout.split())


def test_gui_starts_without_torch():
    modules = loaded_after("import app, ui; ui.build_app()")
    assert not modules & set(HEAVY)


def test_option_schema_and_cli_entry_import_nothing_heavy():
    modules = loaded_after("import trainer.config, trainer.commands, trainer.run_cli")
    assert not modules & {*HEAVY, "gradio", "numpy"}


@pytest.mark.slow  # loads a model
def test_a_trainer_process_loads_a_model_without_importing_bitsandbytes():
    """diffusers would import bitsandbytes (seconds of torch.compile) for quantized loading,
    which the trainer never uses; `python -m trainer` starts with prepare_process()."""
    from trainer.demo import files

    modules = loaded_after(
        "from trainer.commands import prepare_process; prepare_process(); "
        "from trainer.models import load_model; "
        f"load_model({str(files.BASE_MODEL)!r}, tokenizer={str(files.TOKENIZER)!r})",
        timeout=600)
    assert "diffusers.models.modeling_utils" in modules and "bitsandbytes" not in modules
