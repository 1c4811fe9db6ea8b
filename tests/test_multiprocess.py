"""Data-parallel training with two processes on the CPU (gloo), as on two GPUs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import PYTHON, REPO, make_db_dataset, run_cli
from trainer.runs import RunState, read_events, request_stop

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo on POSIX"), pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 3 + 3 images, batch 4 over 2 processes: every epoch ends with a short batch of 2, which
    # leaves the second process without samples (it must still take part, weighted zero).
    # 128 px: at 64 px the tiny U-Net's deepest level is 1x1, where GroupNorm over two values
    # turns float rounding into percent-size differences between batch layouts.
    return make_db_dataset(tmp_path_factory.mktemp("mp-data"), repeats=1, images=3, reg_images=3,
                           size=(128, 128))


def args(model, dataset, out: Path, batch: int, *extra) -> list[str]:
    train, reg = dataset
    return ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(train),
            "--reg_data_dir", str(reg), "--output_dir", str(out), "--resolution=128",
            f"--train_batch_size={batch}", "--seed=9", "--cache_latents", "--flip_aug",
            "--optimizer_type=SGDNesterov", "--max_grad_norm=0", *extra]


def torchrun(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), "-m", "trainer", *argv],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def events(out: Path) -> list[dict]:
    return read_events(out / "events.jsonl")[0]


def weights(folder: Path) -> dict:
    from trainer.models import load_model

    bundle = load_model(str(folder), xl=True)
    parts = ("unet", "text_encoder") + (("text_encoder_2",) if bundle.xl else ())
    return {f"{part}.{k}": v.clone() for part in parts
            for k, v in getattr(bundle, part).state_dict().items()}


def assert_close(a: dict, b: dict, exact: bool = False) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key


def test_two_processes_match_one_with_twice_the_batch_and_write_once(tiny_model, dataset,
                                                                     tmp_path):
    model = tiny_model("tiny-v1")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of sks dog --s 2 --d 1\n", encoding="utf-8")
    common = ["--max_train_steps=4", "--learning_rate=0.05"]
    single = tmp_path / "single"
    assert run_cli("db", *args(model, dataset, single, 4, *common)).returncode == 0
    double = tmp_path / "double"
    result = torchrun("db", *args(model, dataset, double, 2, *common, "--save_every_n_steps=2",
                                  "--save_state", "--sample_prompts", str(prompts),
                                  "--sample_every_n_steps=2", "--logging_dir",
                                  str(tmp_path / "logs")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_close(weights(single / "last"), weights(double / "last"))
    kinds = Counter(e["kind"] for e in events(double))
    assert kinds["start"] == 1 and kinds["end"] == 1 and kinds["step"] == 4
    start = next(e for e in events(double) if e["kind"] == "start")
    assert start["processes"] == 2 and start["global_batch"] == 4
    saves = [(e["what"], e["path"]) for e in events(double) if e["kind"] == "save"]
    assert len(saves) == len(set(saves)) == 4  # step-2 model and state, last model and state
    assert sorted(p.name for p in (double / "samples").iterdir()) == \
        sorted(Path(e["path"]).name for e in events(double) if e["kind"] == "sample")
    assert len(list((double / "samples").iterdir())) == 2
    assert len(list((tmp_path / "logs").glob("*/events.out.tfevents.*"))) == 1
    # both processes wrote their random state into the shared state folder
    assert sorted(p.name for p in (double / "at-step00000002-state").glob("random_states_*")) \
        == ["random_states_0.pkl", "random_states_1.pkl"]

    resumed = tmp_path / "resumed"
    result = torchrun("db", *args(model, dataset, resumed, 2, *common, "--resume",
                                  str(double / "at-step00000002-state")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [e["step"] for e in events(resumed) if e["kind"] == "step"] == [3, 4]
    assert_close(weights(double / "last"), weights(resumed / "last"), exact=True)


def test_lora_with_num_processes_matches_one_process(tiny_model, dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    model = tiny_model("tiny-v1")
    common = ["--max_train_steps=3", "--learning_rate=0.05", "--network_dim=4",
              "--network_alpha=4"]
    single = tmp_path / "single"
    assert run_cli("lora", *args(model, dataset, single, 4, *common)).returncode == 0
    double = tmp_path / "double"
    result = run_cli("lora", *args(model, dataset, double, 2, *common, "--num_processes=2"),
                     env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting 2 training processes through accelerate" in result.stderr
    a, b = load_file(str(single / "last.safetensors")), load_file(str(double / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if k.endswith("lora_up.weight"))


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    from trainer.models.xl_factory import build_xl_diffusers

    return build_xl_diffusers("tiny-xl", tmp_path_factory.mktemp("xl") / "tiny-xl")


def test_sdxl_with_two_processes_matches_one_process(tiny_xl, dataset, tmp_path):
    """Both text encoders, the pooled text and the size conditioning travel with each sample."""
    import torch
    from safetensors.torch import load_file

    common = ["--max_train_steps=3", "--learning_rate=0.05", "--learning_rate_te1=0.01",
              "--learning_rate_te2=0.02"]
    single, double = tmp_path / "single", tmp_path / "double"
    assert run_cli("db", *args(tiny_xl, dataset, single, 4, *common)).returncode == 0
    result = torchrun("db", *args(tiny_xl, dataset, double, 2, *common))
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = weights(tiny_xl), weights(double / "last")
    assert any(not torch.equal(before[k], after[k]) for k in before
               if k.startswith("text_encoder_2."))
    assert_close(weights(single / "last"), after)

    lora = ["--max_train_steps=3", "--learning_rate=0.05", "--network_dim=4", "--network_alpha=4"]
    single, double = tmp_path / "lora-single", tmp_path / "lora-double"
    assert run_cli("lora", *args(tiny_xl, dataset, single, 4, *lora)).returncode == 0
    result = run_cli("lora", *args(tiny_xl, dataset, double, 2, *lora, "--num_processes=2"),
                     env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = load_file(str(single / "last.safetensors")), load_file(str(double / "last.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("lora_te2_") for k in a)
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def _wait_for_step(out: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ended early:\n{process.stdout.read()[-3000:]}")
        if any(e["kind"] == "step" for e in events(out)):
            return
        time.sleep(0.2)
    raise AssertionError("no training step")


def _start(model, dataset, out: Path) -> subprocess.Popen:
    argv = [PYTHON, "-m", "trainer", "db",
            *args(model, dataset, out, 2, "--max_train_steps=1000", "--num_processes=2")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_stop_request_stops_every_process_with_one_saved_state(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    process = _start(tiny_model("tiny-v1"), dataset, out)
    try:
        _wait_for_step(out, process)
        process.send_signal(signal.SIGINT)  # the supervisor turns it into a stop request
        output = process.communicate(timeout=300)[0]
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    state = RunState(out).refresh()
    assert state.status == "stopped"
    assert [p.name for p in out.glob("*-state")] == [f"at-step{state.step:08d}-state"]


def test_a_crashed_process_ends_the_run_with_an_error_not_a_hang(tiny_model, dataset, tmp_path):
    out = tmp_path / "out"
    process = _start(tiny_model("tiny-v1"), dataset, out)
    try:
        _wait_for_step(out, process)
        main_pid = next(e["pid"] for e in events(out) if e["kind"] == "start")
        workers = _descendants(process.pid)
        other = next(pid for pid in workers if pid != main_pid and _is_trainer(pid))
        os.kill(other, signal.SIGKILL)
        output = process.communicate(timeout=180)[0]
    finally:
        process.kill()
    assert process.returncode != 0, output[-3000:]
    state = RunState(out).refresh()
    assert state.status == "failed"


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().split(") ")[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                children.append(int(entry.name))
    return children + [d for child in children for d in _descendants(child)]


def _is_trainer(pid: int) -> bool:
    try:
        command = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"trainer" in command and b"accelerate.commands.launch" not in command
