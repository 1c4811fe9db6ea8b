"""The GPU check's environment line and its markdown table."""

from __future__ import annotations

import datetime
import platform

GIB = 2 ** 30


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # missing or broken: the table says so
        return "not installed"


def environment(dry: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "date": datetime.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU dry run)",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
        if cuda else None,
        "dry_run": dry, "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "diffusers": _version("diffusers"),
        "transformers": _version("transformers"), "accelerate": _version("accelerate"),
        "bitsandbytes": _version("bitsandbytes"),
        "xformers": _version("xformers") + " (xformers presets ran with SDPA; not measured)"
        if _version("xformers") == "not installed" else _version("xformers"),
    }


def _gib(value) -> str:
    return "–" if value is None else f"{value / GIB:.2f}"


def _seconds(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _fits(row: dict) -> str:
    if row.get("fits") is None:
        return "–"
    return f"yes ({row['promised_gb']} GB)" if row["fits"] else f"**NO** ({row['promised_gb']} GB)"


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"GPU check, {env['date']}: {env['gpu']}, torch {env['torch']} (CUDA {env['cuda']}), "
             f"diffusers {env['diffusers']}, bitsandbytes {env['bitsandbytes']}, "
             f"xformers {env['xformers']}; {results.get('seconds', '?')} s in all.", ""]
    rows = results.get("presets", []) + results.get("sdxl", [])
    if rows:
        lines += ["| preset | px | batch | s/step | start-up s | peak allocated GiB | "
                  "peak reserved GiB | estimate GiB | fits |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            status = "" if r["status"] == "finished" else f" ({r['status']}: {r.get('error')})"
            lines.append(f"| {r['preset']}{status} | {r['resolution']} | {r['batch']} | "
                         f"{_seconds(r['s_per_step'])} | {_seconds(r['startup_s'])} | "
                         f"{_gib(r['peak_allocated'])} | {_gib(r['peak_reserved'])} | "
                         f"{_gib(r['estimate_allocated'])} | {_fits(r)} |")
        lines.append("")
    if results.get("bench"):
        lines += ["| bench | precision | px | batch | trainer s/step | bare s/step | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for r in results["bench"]:
            what = "LoRA (U-Net)" if r["mode"] == "lora" else "DreamBooth (U-Net)"
            lines.append(f"| {what} | {r['mixed_precision']} | {r['resolution']} | {r['batch']} | "
                         f"{r['trainer_s_per_step']:.4f} | {r['bare_s_per_step']:.4f} | "
                         f"{r['ratio']:.3f} |")
        lines.append("")
    if results.get("correctness"):
        lines += ["| CUDA correctness | steps | finite loss | saved model loads | result |",
                  "|---|---|---|---|---|"]
        for r in results["correctness"]:
            lines.append(f"| {r['check']} | {r['steps']} | {r['finite_loss']} | {r['loads_back']} "
                         f"| {'ok' if r['ok'] else 'FAILED: ' + str(r.get('error'))} |")
        lines.append("")
    return "\n".join(lines)
