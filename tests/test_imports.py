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


# ---------------------------------------------------------------- layering (docs DESIGN.md)
# Read from the source with ast, so an import inside a function counts as much as one at the
# top of a file.

# What the GUI may use of the trainer: the option schema, the dataset previews, the run folder
# reader, and the small one-file helpers at trainer/'s top level (errors, atomic writes, file
# locks, process checks). Never the training loop, the models or the networks.
UI_MAY_IMPORT = ("trainer.config", "trainer.data", "trainer.runs")
ML_LIBRARIES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors",
                "gradio")


def _modules(folder: str) -> list:
    return sorted((REPO / folder).rglob("*.py"))


def _dotted(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    import ast

    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from trainer import atomic` imports the module trainer.atomic
            names = [f"{base}.{alias.name}" for alias in node.names] if not node.module or \
                base == "trainer" else [base]
            found += [(node.lineno, name) for name in names]
    return found


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _top_level_helper(name: str) -> bool:
    """trainer.<module> where trainer/<module>.py is one file (not a package)."""
    parts = name.split(".")
    return len(parts) == 2 and (REPO / "trainer" / f"{parts[1]}.py").is_file()


def test_gui_uses_only_the_schema_data_and_runs_of_the_trainer():
    bad = [f"{path.relative_to(REPO)}:{line} imports {name}"
           for path in [*_modules("ui"), REPO / "app.py"] for line, name in imports_of(path)
           if _within(name, ("trainer",)) and name != "trainer"
           and not _within(name, UI_MAY_IMPORT) and not _top_level_helper(name)]
    assert not bad, "the GUI reaches into the trainer's internals:\n" + "\n".join(bad)


def test_trainer_never_imports_the_gui_or_gradio():
    bad = [f"{path.relative_to(REPO)}:{line} imports {name}"
           for path in _modules("trainer") for line, name in imports_of(path)
           if _within(name, ("ui", "app", "gradio", "gradio_client"))]
    assert not bad, "the trainer must work headless:\n" + "\n".join(bad)


def test_option_schema_imports_no_ml_library():
    bad = [f"{path.relative_to(REPO)}:{line} imports {name}"
           for path in _modules("trainer/config") for line, name in imports_of(path)
           if _within(name, ML_LIBRARIES)]
    assert not bad, "trainer/config must stay light:\n" + "\n".join(bad)


def test_import_reader_resolves_relative_and_package_imports():
    """The checks above see `from ..train import x` and `from trainer import x` as what they are."""
    names = {name for _, name in imports_of(REPO / "ui" / "runner.py")}
    assert "trainer.runs" in names and "ui.formvalues" in names
    names = {name for _, name in imports_of(REPO / "trainer" / "run_lock.py")}
    assert {"trainer.file_lock", "trainer.errors"} <= names


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
