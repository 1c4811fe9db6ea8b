"""The run queue: real trainer subprocesses, one at a time, remembered across GUI restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, ended_trainer_start_token, make_db_dataset, wait_for
from trainer.config import Config
from trainer.runs import EventWriter, read_events
from ui.runner import Runner, folder_in_use
from ui.workspace import Workspace

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


def bad_model_config(ws: Workspace, name: str) -> Config:
    data = ws.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    return Config("db", {"pretrained_model_name_or_path": str(ws.home / "missing model.safetensors"),
                         "train_data_dir": str(data), "output_dir": str(ws.outputs / name)})


def test_a_trainer_that_refuses_its_config_is_failed_with_its_message(tmp_path):
    ws = Workspace.create(tmp_path / "home é")
    runner = Runner(ws)
    run_dir = runner.submit(bad_model_config(ws, "first run"))
    assert folder_in_use(run_dir) and (run_dir / "config.toml").is_file()
    info = wait_for(lambda: (lambda i: i if i.status == "failed" else None)(runner.info(run_dir)),
                    what="the trainer to exit")
    assert "missing model.safetensors does not exist" in info.error["message"]
    assert (run_dir / "trainer.log").read_text(encoding="utf-8").startswith("error:")


def test_queue_waits_for_the_active_run_and_survives_a_restart(tmp_path):
    ws = Workspace.create(tmp_path / "home")
    busy = ws.outputs / "busy"
    writer = EventWriter(busy)
    writer.emit("start", total_steps=10, mode="db", pid=os.getpid(), first_step=0)
    runner = Runner(ws)
    assert runner.active() == busy
    first = runner.submit(bad_model_config(ws, "a"))
    second = runner.submit(bad_model_config(ws, "b"))
    third = runner.submit(bad_model_config(ws, "c"))
    runner.tick()
    assert runner.queue() == [first, second, third]
    assert {runner.info(p).status for p in (first, second, third)} == {"queued"}
    runner.move(third, -1)
    assert runner.remove(second) and not runner.remove(busy)
    assert runner.queue() == [first, third]

    restarted = Runner(ws)  # a new GUI process finds the queue and the busy run again
    assert restarted.queue() == [first, third] and restarted.active() == busy
    writer.emit("end", status="finished", step=10)
    writer.close()
    restarted.tick()
    assert restarted.queue() == [third] and restarted.info(first).status in ("starting", "failed")
    wait_for(lambda: restarted.info(first).status == "failed", what="the first queued run to end")
    restarted.tick()
    assert restarted.queue() == []
    wait_for(lambda: restarted.info(third).status == "failed", what="the next run to end")
    first_log, third_log = first / "trainer.log", third / "trainer.log"
    assert first_log.stat().st_mtime <= third_log.stat().st_mtime
    assert not (second / "trainer.log").exists()  # removed before it started: never ran
    assert [p.name for p in restarted.run_dirs()][:1] == ["c"]


def test_stop_asks_the_trainer_through_its_run_folder(tmp_path):
    ws = Workspace.create(tmp_path / "home")
    run_dir = ws.outputs / "r"
    run_dir.mkdir(parents=True)
    Runner(ws).stop(Path(run_dir))
    assert (run_dir / "stop.request").exists()


# ------------------------------------------------------------------ reused PIDs
@pytest.fixture
def start_unrelated_program():
    """Starts a live program that has nothing to do with any run. In its own session, so that
    even a signal to its process group could reach nothing else."""
    started = []

    def start() -> subprocess.Popen:
        started.append(subprocess.Popen(["sleep", "600"], start_new_session=True))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        process.wait()


def assert_untouched(process: subprocess.Popen) -> None:
    with pytest.raises(subprocess.TimeoutExpired):  # nothing to wait for: it must stay alive
        process.wait(timeout=1)


@pytest.mark.parametrize("record", ["start time", "older run folder"])
def test_a_dead_run_whose_pid_went_to_another_program_is_not_running(tmp_path, record,
                                                                      start_unrelated_program):
    ws = Workspace.create(tmp_path / "home")
    died = ws.outputs / "died"
    trainer_started = ended_trainer_start_token()
    unrelated_program = start_unrelated_program()  # after the trainer ended, with its PID
    with EventWriter(died) as writer:
        if record == "start time":  # what the trainer writes now
            writer.emit("start", total_steps=10, mode="db", pid=unrelated_program.pid,
                        pid_started=trainer_started, first_step=0)
        else:  # written without a start time, an hour ago
            writer.emit("start", total_steps=10, mode="db", pid=unrelated_program.pid,
                        first_step=0, time=time.time() - 3600)
        writer.emit("step", step=3, epoch=1, loss=0.1)
    runner = Runner(ws)
    info = runner.info(died)
    assert info.status == "failed" and "ended unexpectedly" in info.error["message"]
    assert runner.active() is None

    queued = runner.submit(bad_model_config(ws, "next"))
    runner.tick()
    assert runner.queue() == []  # the dead run does not hold the queue
    wait_for(lambda: runner.info(queued).status == "failed", what="the next run to end")

    runner.stop(died, now=True)
    assert_untouched(unrelated_program)


def test_a_restarted_gui_does_not_take_a_reused_pid_for_its_starting_trainer(
        tmp_path, start_unrelated_program):
    ws = Workspace.create(tmp_path / "home")
    runner = Runner(ws)
    run_dir = runner.submit(bad_model_config(ws, "launched"))
    wait_for(lambda: runner.info(run_dir).status == "failed", what="the trainer to exit")
    # The GUI restarts; meanwhile the system gave the ended trainer's PID to another program.
    unrelated_program = start_unrelated_program()
    index = ws.outputs / ".runs.json"
    data = json.loads(index.read_text(encoding="utf-8"))
    data["runs"][str(run_dir)]["pid"] = unrelated_program.pid
    index.write_text(json.dumps(data), encoding="utf-8")
    restarted = Runner(ws)
    assert restarted.info(run_dir).status == "failed"
    assert restarted.active() is None
    restarted.stop(run_dir, now=True)
    assert_untouched(unrelated_program)


# ------------------------------------------------------------------ Stop while a run starts
# A GUI started in the background (`nohup python app.py &`) ignores SIGINT, and so would its
# trainers. This parent does the same, starts a long run and presses Stop at once.
IGNORING_PARENT = """
import json, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
from trainer.config import Config
from ui.runner import Runner
from ui.workspace import Workspace

home, model, data = sys.argv[1:4]
runner = Runner(Workspace.create(home))
run_dir = runner.submit(Config("db", {
    "pretrained_model_name_or_path": model, "train_data_dir": data, "resolution": "64",
    "output_dir": home + "/outputs/long run", "max_train_steps": 100000, "cache_latents": True}))
first = runner.info(run_dir).status
runner.stop(run_dir)
deadline = time.monotonic() + 240
while runner.info(run_dir).status in ("starting", "running") and time.monotonic() < deadline:
    time.sleep(0.2)
last = runner.info(run_dir).status
if last in ("starting", "running"):  # the stop was lost: do not leave it training
    import os
    os.killpg(runner._index["runs"][str(run_dir)]["pid"], signal.SIGKILL)
print(json.dumps({"first": first, "last": last, "run_dir": str(run_dir)}))
"""


def test_stop_right_after_start_stops_the_run_when_the_gui_ignores_sigint(tmp_path, tiny_model):
    train, _ = make_db_dataset(tmp_path / "data", reg_images=0)
    result = subprocess.run([sys.executable, "-c", IGNORING_PARENT, str(tmp_path / "home"),
                             str(tiny_model("tiny-v1")), str(train)], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    run_dir = Path(seen["run_dir"])
    log = (run_dir / "trainer.log").read_text(encoding="utf-8")
    assert seen["first"] == "starting" and seen["last"] == "stopped", log
    ends = [e for e in read_events(run_dir / "events.jsonl")[0] if e["kind"] == "end"]
    if ends:  # the request reached it once it trained: it stopped after a step, and saved
        assert ends[-1]["status"] == "stopped" and ends[-1]["step"] < 100, log
    else:  # SIGINT ended it while it was starting up
        assert "interrupted" in log, log
