"""The GUI's hold on trainer processes, seen from its page and its HTTP API: a PID that a dead run
recorded and the system gave to another program is not that run, and Stop pressed while a run
starts reaches it even when the GUI was started in the background with SIGINT ignored."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gui_api import GradioAPI
from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from helpers import ended_trainer_start_token, make_db_dataset, wait_for
from trainer.runs import EventWriter, read_events

pytestmark = [needs_chromium, pytest.mark.slow]


@pytest.fixture
def unrelated_program():
    """A live program that has nothing to do with any run, in its own session so that even a
    signal to a process group could reach nothing else."""
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def still_alive(process: subprocess.Popen) -> bool:
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return True
    return False


# ------------------------------------------------------------------ a reused PID
def test_a_dead_run_whose_pid_went_to_another_program_shows_failed_and_stop_spares_it(
        page, tmp_path, unrelated_program):
    server = AppServer(tmp_path / "home").start()
    try:
        died = server.home / "outputs" / "died"
        with EventWriter(died) as writer:
            writer.emit("start", total_steps=10, mode="db", pid=unrelated_program.pid,
                        pid_started=ended_trainer_start_token(), first_step=0)
            writer.emit("step", step=3, epoch=1, loss=0.1)

        gui = Gui(page, server).open()
        gui.tab("Runs")
        gui.choose("#run-select", "died")
        gui.page.locator("#run-progress [data-status='failed']").wait_for()
        assert "ended unexpectedly" in gui.wait_text("run-messages", "Error")
        table = gui.page.locator("#runs-table")
        assert table.locator("tr[data-run='died'][data-status='failed']").count() == 1
        # Nothing runs, so a new run starts at once instead of waiting in the queue.
        gui.tab("Train")
        gui.page.locator("#train-start", has_text="Start").wait_for()

        # The page greys Stop out for a failed run; a program calling the API is not stopped
        # by that, and the answer must still leave the other program alone.
        client = GradioAPI(server.base, server.token)
        client.tick()
        answer = client.call("run-stop", **{"run-select": str(died)})[0]
        assert "not running" in answer, answer
        assert still_alive(unrelated_program)
    finally:
        server.stop()


# ------------------------------------------------------------------ Stop while a run starts
def test_stop_right_after_start_through_the_api_stops_the_run_of_a_gui_that_ignores_sigint(
        tmp_path, tiny_model):
    train, _ = make_db_dataset(tmp_path / "data", reg_images=0)
    server = AppServer(tmp_path / "home", ignore_sigint=True).start()
    try:
        run_dir = server.home / "outputs" / "long run"
        client = GradioAPI(server.base, server.token)
        started = client.call("train-start", **{
            "opt-pretrained_model_name_or_path": str(tiny_model("tiny-v1")),
            "opt-train_data_dir": str(train), "opt-output_dir": str(run_dir),
            "opt-resolution": "64", "opt-max_train_steps": 100000, "opt-cache_latents": True})
        assert "long run" in str(started[0]), started
        began = time.monotonic()
        client.tick()
        answer = client.call("run-stop", **{"run-select": str(run_dir)})[0]
        assert "Stopping long run" in answer, answer

        def ended() -> dict | None:
            events = read_events(run_dir / "events.jsonl")[0] if (run_dir / "events.jsonl").exists() else []
            ends = [e for e in events if e["kind"] == "end"]
            return ends[-1] if ends else None

        # Lost, the request would leave it training 100000 steps; kept, it ends at the first step.
        end = wait_for(ended, what="the run to stop", timeout=240)
        log = (run_dir / "trainer.log").read_text(encoding="utf-8")
        assert end["status"] == "stopped" and end["step"] < 100, log
        print(f"\nstopped at step {end['step']}, {time.monotonic() - began:.1f} s after Stop")
        # A stop saves the model (and the state to resume from) before it ends.
        assert list(run_dir.rglob("*.safetensors")), sorted(p.name for p in run_dir.iterdir())
    finally:
        server.stop()
