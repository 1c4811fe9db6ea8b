"""The event stream: appended by the trainer, tailed incrementally by the GUI."""

import json
import os

from trainer.runs import EventWriter, RunState, read_events, request_stop, stop_requested


def test_reader_tails_only_complete_lines(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit("start", total_steps=10, mode="db", pid=os.getpid(), first_step=0)
    writer.emit("step", step=1, epoch=1, loss=0.5, lr=1e-6)
    events, offset = read_events(tmp_path / "events.jsonl")
    assert [e["kind"] for e in events] == ["start", "step"]
    with open(tmp_path / "events.jsonl", "a") as handle:  # a line still being written
        handle.write(json.dumps({"kind": "step", "step": 2})[:10])
    more, offset2 = read_events(tmp_path / "events.jsonl", offset)
    assert more == [] and offset2 == offset
    writer.close()


def test_run_state_folds_events(tmp_path):
    with EventWriter(tmp_path) as writer:
        writer.emit("start", total_steps=4, mode="lora", pid=os.getpid(), first_step=0)
        for step in range(1, 5):
            writer.emit("step", step=step, epoch=1, loss=1.0 / step, lr=1e-4)
        writer.emit("sample", step=4, epoch=1, path="samples/a.png", prompt="a dog")
        writer.emit("end", status="finished", step=4)
    state = RunState(tmp_path).refresh()
    assert state.status == "finished" and state.step == 4 and state.progress == 1.0
    assert [s for s, _ in state.losses] == [1, 2, 3, 4]
    assert state.samples[0]["prompt"] == "a dog"


def test_run_without_end_and_without_process_is_failed(tmp_path):
    with EventWriter(tmp_path) as writer:
        writer.emit("start", total_steps=4, mode="db", pid=2 ** 22 + 12345, first_step=0)
    state = RunState(tmp_path).refresh()
    assert state.status == "failed" and "ended unexpectedly" in state.error["message"]


def test_stop_request_file(tmp_path):
    assert not stop_requested(tmp_path)
    request_stop(tmp_path)
    assert stop_requested(tmp_path)
