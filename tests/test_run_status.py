"""A run's status: one enum (trainer.runs.RunStatus), decided in one function
(ui.runner.run_status), shown the same way in the table, the progress box and the buttons."""

import json
import os
import time

from trainer.runs import EventWriter, RunState, RunStatus, latest_state, request_stop
from ui.run_view import progress_html, runs_table
from ui.runner import Runner, run_status
from ui.workspace import Workspace

GONE_PID = 2 ** 22 + 12345  # no such process


def _started(run_dir, pid=None):
    with EventWriter(run_dir) as writer:
        writer.emit("start", total_steps=4, mode="db", pid=pid or os.getpid(), first_step=0)
    return RunState(run_dir).refresh()


def test_status_from_queue_launch_and_events(tmp_path):
    never = RunState(tmp_path).refresh()  # nothing written yet
    assert run_status(tmp_path, never, {}, True, lambda: True) == (RunStatus.QUEUED, None)
    launched = {"launched": time.time()}
    assert run_status(tmp_path, never, launched, False, lambda: True)[0] == RunStatus.STARTING

    (tmp_path / "trainer.log").write_text("loading\nerror: the model file is damaged\n")
    status, error = run_status(tmp_path, never, launched, False, lambda: False)
    assert status == RunStatus.FAILED and error["message"] == "the model file is damaged"

    request_stop(tmp_path)  # Stop pressed while it was starting
    assert run_status(tmp_path, never, launched, False, lambda: False)[0] == RunStatus.STOPPED

    running = _started(tmp_path)
    assert run_status(tmp_path, running, {"launched": running.started}, False,
                      lambda: True) == (RunStatus.RUNNING, None)
    assert RunStatus.RUNNING.active and RunStatus.STARTING.active
    assert not RunStatus.QUEUED.active and RunStatus.STOPPED.interrupted


def test_folder_without_start_event_counts_as_failed(tmp_path):
    (tmp_path / "events.jsonl").write_text(json.dumps({"kind": "warning", "message": "x"}) + "\n")
    state = RunState(tmp_path).refresh()
    assert state.status == RunStatus.NEW
    assert run_status(tmp_path, state, {}, False, lambda: False)[0] == RunStatus.FAILED


def test_end_status_the_trainer_never_writes_is_shown_as_failed(tmp_path):
    """events.jsonl is a text file anyone may edit: an odd end status is not shown as a status."""
    workspace = Workspace.create(home=tmp_path)
    run_dir = workspace.outputs / "dog"
    run_dir.mkdir(parents=True)
    with EventWriter(run_dir) as writer:
        writer.emit("start", total_steps=4, mode="db", pid=GONE_PID, first_step=0)
        writer.emit("end", status="<b>exploded</b>", step=2)
    info = Runner(workspace).info(run_dir)
    assert info.status == RunStatus.FAILED
    assert 'data-status="failed"' in runs_table([info], [], None)
    assert "exploded" not in progress_html(info)


def test_latest_state_is_read_from_the_run_folder(tmp_path):
    for name, step in (("last-000001-state", 5), ("last-000002-state", 10)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_state.json").write_text(json.dumps({"step": step}))
    (tmp_path / "broken-state").mkdir()
    (tmp_path / "broken-state" / "train_state.json").write_text("{not json")
    (tmp_path / "partial-state").mkdir()  # no train_state.json: an interrupted save
    assert latest_state(tmp_path) == tmp_path / "last-000002-state"
    assert latest_state(tmp_path / "missing") is None
