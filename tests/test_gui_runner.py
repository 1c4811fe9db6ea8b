"""The run queue: real trainer subprocesses, one at a time, remembered across GUI restarts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from trainer.config import Config
from trainer.runs import EventWriter
from ui.runner import Runner, folder_in_use
from ui.workspace import Workspace


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
