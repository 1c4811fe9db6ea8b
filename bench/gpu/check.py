"""The GPU check: the shipped presets' speed and peak memory, the trainer's overhead against a
bare loop, and CUDA correctness of each precision, in one call.

    python bench/gpu/check.py --out RESULTS_DIR [--dry-run]

--dry-run (automatic without a CUDA GPU) runs every path on miniature models for a few steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from report import environment, markdown  # noqa: E402
from runs import loads_back, train  # noqa: E402
from setup import DRY, GPU, PRESETS, XL_PRESETS, build_model, make_images, preset_values, promised_gb, read_preset  # noqa: E402,E501

GIB = 2 ** 30
MARGIN = 0.9  # a preset fits a card when its peak reserved memory stays under 90 % of it
BENCHES = [("db", 1), ("db", 4), ("lora", 1), ("lora", 4)]
# (name, options) of the CUDA correctness runs: each must train without NaN and save a model
# that loads back.
CORRECTNESS = [
    ("fp16 + scaler", "db", {"mixed_precision": "fp16"}),
    ("bf16", "db", {"mixed_precision": "bf16"}),
    ("full_fp16", "db", {"mixed_precision": "fp16", "full_fp16": True}),
    ("AdamW8bit", "db", {"mixed_precision": "bf16", "optimizer_type": "AdamW8bit"}),
    ("LoRA fp16", "lora", {"mixed_precision": "fp16", "network_dim": 8}),
]


def _estimate(mode: str, values: dict) -> int | None:
    try:
        from trainer.config import Config
        from trainer.memory import estimate_vram
    except ImportError:
        return None
    return estimate_vram(Config(mode, values)).allocated


# What a trainer without SDXL training says when given an SDXL model (one line, no steps).
XL_REFUSED = "Stable Diffusion XL"


def check_presets(scale, workdir: Path, log: Path, names=PRESETS) -> list[dict]:
    rows = []
    for name in names:
        mode, values = preset_values(name, scale, workdir)
        row = {"preset": name, "promised_gb": promised_gb(read_preset(name)),
               "resolution": values["resolution"], "batch": values.get("train_batch_size", 1),
               "estimate_allocated": _estimate(mode, values)}
        row.update(train(mode, values, log))
        promised, peak = row["promised_gb"], row["peak_reserved"]
        row["fits"] = None if not (promised and peak) else peak <= MARGIN * promised * GIB
        rows.append(row)
        print(f"preset {name}: {row['status']}, {row['s_per_step']} s/step", flush=True)
    return rows


def check_sdxl(scale, workdir: Path, log: Path) -> list[dict]:
    """The SDXL presets at 1024 px on the real SDXL architecture (miniature in the dry run).
    A trainer that cannot train SDXL yet refuses in one line: reported as "refused"."""
    rows = []
    for name in XL_PRESETS:
        [row] = check_presets(scale, workdir, log, (name,))
        said = row.get("error") or _last_error(log)
        if row["status"] != "finished" and not row["steps"] and XL_REFUSED in said:
            row.update(status="refused", error=said)
        rows.append(row)
    return rows


def _last_error(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("error:")]
    return lines[-1] if lines else ""


def check_bench(scale, workdir: Path) -> list[dict]:
    from trainer.bench import _parser, measure

    rows = []
    resolution = scale.resolution(512)
    for mode, batch in BENCHES[::2] if scale.dry else BENCHES:  # dry: batch 1 only
        args = _parser().parse_args([
            "--mode", mode, "--model", scale.model_spec(False, False), "--batch", str(batch),
            "--resolution", str(resolution), "--steps", str(scale.bench_steps),
            "--warmup", "2" if scale.dry else "3", "--mixed_precision", scale.bench_precision,
            "--workdir", str(workdir)])
        rows.append(measure(args))
        print(f"bench {mode} batch {batch}: ratio {rows[-1]['ratio']:.3f}", flush=True)
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the correctness runs that follow are separate processes
    return rows


def check_correctness(scale, workdir: Path, log: Path) -> list[dict]:
    rows = []
    resolution = scale.resolution(256)
    data = make_images(workdir / f"data-{resolution}" / "img" / "10_sks dog", resolution).parent
    model = str(build_model(scale.model_spec(False, False), workdir))
    for name, mode, options in CORRECTNESS:
        out = workdir / "runs" / ("correct-" + name.split()[0].lower())
        values = {"pretrained_model_name_or_path": model, "train_data_dir": str(data),
                  "output_dir": str(out), "resolution": str(resolution), "train_batch_size": 1,
                  "max_train_steps": scale.correctness_steps, "learning_rate": 1e-5, "seed": 0,
                  "cache_latents": True, "save_model_as": "safetensors", **options}
        row = {"check": name, **train(mode, values, log)}
        row["loads_back"] = loads_back(out, row["saved"], mode, tokenizer=model)
        row["ok"] = row["status"] == "finished" and row["finite_loss"] and row["loads_back"] == "ok"
        rows.append(row)
        print(f"correctness {name}: {'ok' if row['ok'] else 'FAILED'}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="results folder (JSON, markdown table, log)")
    parser.add_argument("--workdir", help="models and runs (default: OUT/work)")
    parser.add_argument("--dry-run", action="store_true", help="miniature models, a few steps")
    parser.add_argument("--only", default="presets,sdxl,bench,correctness",
                        help="comma-separated parts to run (default: all four)")
    args = parser.parse_args(argv)
    import torch

    scale = DRY if args.dry_run or not torch.cuda.is_available() else GPU
    out = Path(args.out)
    workdir = Path(args.workdir) if args.workdir else out / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    log = out / "trainer-runs.log"
    started = time.time()
    results = {"environment": environment(scale.dry)}
    parts = {"presets": check_presets, "sdxl": check_sdxl, "bench": check_bench,
             "correctness": check_correctness}
    for part in args.only.split(","):
        function = parts[part]
        results[part] = function(scale, workdir) if part == "bench" else \
            function(scale, workdir, log)
    results["seconds"] = round(time.time() - started, 1)
    (out / "gpu-check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(results)
    (out / "gpu-check.md").write_text(table)
    print(table)
    failed = [r["check"] for r in results.get("correctness", []) if not r["ok"]]
    failed += [r["preset"] for r in results.get("presets", []) if r["status"] != "finished"]
    failed += [r["preset"] for r in results.get("sdxl", []) if r["status"] not in
               ("finished", "refused")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
