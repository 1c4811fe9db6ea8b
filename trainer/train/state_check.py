"""Refuse state folders whose pickles would run code when loaded.

accelerate reads the registered objects of a state folder (`custom_checkpoint_*.pkl`) with
`weights_only=False`, so a doctored folder would execute code on --resume. Every pickle the
folder holds is therefore opened weights-only first; only tensors, plain containers and the
numpy types of the saved random states are accepted.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

# Everything accelerate may read from a state folder is one of these (model*.bin, optimizer.bin,
# scheduler.bin, sampler.bin, scaler.pt, random_states_*.pkl, custom_checkpoint_*.pkl ...).
PICKLE_SUFFIXES = (".pkl", ".bin", ".pt", ".pth", ".ckpt")


def _safe_globals() -> list:
    """numpy's random state is an array with a dtype; nothing else needs a global."""
    import codecs

    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    safe = [core.multiarray._reconstruct, np.ndarray, np.dtype, codecs.encode]
    if hasattr(np, "dtypes"):
        safe.append(np.dtypes.UInt32DType)
    return safe


def check_file(path: Path) -> None:
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_safe_globals()):
            # mmap: a large optimizer state is checked without being read into memory
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines()
        detail = next((line for line in lines if "unsupported" in line.lower()), lines[0]).strip()
        detail = detail.removeprefix("Trying to load ").rstrip(".")
        raise UserError(f"{path} holds objects that would run code when loaded ({detail}); "
                        "refusing to resume from it",
                        "resume only from state folders this trainer wrote") from None
    except Exception as err:  # truncated or not a torch file at all
        first = str(err).splitlines()[0] if str(err) else ""
        raise UserError(f"{path} cannot be read as training state ({type(err).__name__}: {first})",
                        "resume from another state folder") from None


def check_state_folder(folder: str | Path) -> None:
    """UserError naming the first file that is not plain data; nothing is trained before."""
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            check_file(path)
