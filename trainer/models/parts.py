"""The parts a user may give separately: the tokenizer (--tokenizer) and the VAE (--vae)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import hub

TOKENIZER_HINT = "pass --tokenizer PATH (a tokenizer folder, or a diffusers model folder with tokenizer/)"


def _tokenizer_folder(path: Path) -> Path:
    for folder in (path / "tokenizer", path):
        if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
            return folder
    raise UserError(f"tokenizer {path} holds no tokenizer (no vocab.json or tokenizer.json, "
                    "and no tokenizer/ folder)", TOKENIZER_HINT)


def load_tokenizer(spec: str | None, v2: bool, model_folder: Path | None = None):
    """--tokenizer, else the diffusers model's own, else the hub cache's SD tokenizer."""
    from transformers import CLIPTokenizer

    if spec is None and model_folder is not None:
        tokenizer = CLIPTokenizer.from_pretrained(str(_tokenizer_folder(model_folder)))
    elif spec is not None and Path(spec).exists():
        path = Path(spec)
        if not path.is_dir():
            raise UserError(f"--tokenizer {spec} is a file; it must be a folder", TOKENIZER_HINT)
        tokenizer = CLIPTokenizer.from_pretrained(str(_tokenizer_folder(path)))
    else:
        repo, subfolder = (spec, None) if spec else (hub.V2_TOKENIZER if v2 else hub.V1_TOKENIZER)
        tokenizer = _hub_tokenizer(CLIPTokenizer, repo, subfolder, given=spec is not None)
    if tokenizer.model_max_length > 77 * 1000:  # "no limit" in configs without one
        tokenizer.model_max_length = 77
    if v2 and tokenizer.pad_token != "!":
        tokenizer.pad_token = "!"  # OpenCLIP pads with token 0, which is "!"
    return tokenizer


def _hub_tokenizer(cls, repo: str, subfolder: str | None, given: bool):
    where = "hub id" if given else "default tokenizer"
    subfolders = [subfolder] if subfolder or not given else [None, "tokenizer"]
    for sub in subfolders:
        folder = hub.file_folder(repo, sub, ["vocab.json", "merges.txt", "tokenizer.json",
                                             "tokenizer_config.json", "special_tokens_map.json"])
        if folder is not None and ((folder / "vocab.json").is_file()
                                   or (folder / "tokenizer.json").is_file()):
            return cls.from_pretrained(str(folder))
    state = "the machine is offline" if hub.offline() else "it could not be downloaded"
    raise UserError(f"{where} {repo!r} is not in the local hub cache and {state}; "
                    "single-file models contain no tokenizer", TOKENIZER_HINT)


def check_tokenizer(tokenizer, vocab_size: int, source: str) -> None:
    if len(tokenizer) > vocab_size or len(tokenizer) < vocab_size // 2:
        raise UserError(f"the tokenizer has {len(tokenizer)} tokens but the text encoder of "
                        f"{source} knows only {vocab_size}: they do not belong together",
                        TOKENIZER_HINT)


# ---------------------------------------------------------------- VAE


VAE_HINT = "--vae takes a VAE .safetensors/.ckpt, a Stable Diffusion checkpoint, a diffusers " \
           "model or VAE folder, or a hub id"


def load_vae(spec: str):
    """An AutoencoderKL (float32, CPU) from any of the forms --vae accepts."""
    path = Path(spec)
    if path.is_dir():
        return _vae_from_folder(path)
    if path.is_file():
        return _vae_from_file(path)
    if hub.looks_like_hub_id(spec):
        from diffusers import AutoencoderKL

        for subfolder in (None, "vae"):
            try:
                return hub.from_hub(AutoencoderKL.from_pretrained, spec, subfolder)
            except LookupError:
                continue
        raise UserError(f"VAE {spec!r} is not in the local hub cache"
                        + (" and the machine is offline" if hub.offline() else ""), VAE_HINT)
    raise UserError(f"VAE {spec} does not exist", VAE_HINT)


def _vae_from_folder(path: Path):
    from diffusers import AutoencoderKL

    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise UserError(f"VAE folder {path} has no config.json (nor vae/config.json)", VAE_HINT)
    try:
        return AutoencoderKL.from_pretrained(str(folder)).float().eval()
    except Exception as err:
        raise UserError(f"VAE folder {folder} cannot be loaded ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})", VAE_HINT) from None


def _vae_from_file(path: Path):
    from .checkpoint_io import read_state_dict
    from .ldm_config import SCALE_FACTOR, _vae_params
    from .ldm_export import VAE_PREFIX, vae_to_ldm
    from .ldm_import import build_vae

    state = read_state_dict(path)
    if any(k.startswith(VAE_PREFIX) for k in state):  # a whole SD checkpoint
        state = {k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    parts = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    state = {k: v for k, v in state.items() if k.startswith(parts)}
    if any(".down_blocks." in k for k in state):  # diffusers key names
        state = {k[len(VAE_PREFIX):]: v for k, v in vae_to_ldm(state).items()}
    try:
        config = {"model": {"params": {"scale_factor": SCALE_FACTOR,
                                       "first_stage_config": {"params": _vae_params(state, "")}}}}
    except (KeyError, IndexError, ZeroDivisionError):
        raise UserError(f"{path} holds no VAE weights", VAE_HINT) from None
    return build_vae(state, config, 64, str(path))
