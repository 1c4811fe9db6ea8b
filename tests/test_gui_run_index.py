"""Two GUIs on one outputs folder share its run list: neither loses the other's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import REPO
from trainer.config import Config
from trainer.errors import UserError
from trainer.run_lock import RunFolderLock
from trainer.runs import EventWriter
from ui.runner import INDEX_FILE, Runner
from ui.workspace import Workspace


def busy_workspace(home: Path) -> Workspace:
    """A workspace whose outputs hold a running run (this test's process), so queued runs
    wait and no trainer is started."""
    ws = Workspace.create(home)
    EventWriter(ws.outputs / "busy").emit("start", total_steps=10, mode="db", pid=os.getpid(),
                                          first_step=0)
    (ws.home / "data").mkdir(parents=True, exist_ok=True)
    return ws


def config(ws: Workspace, name: str) -> Config:
    return Config("db", {"pretrained_model_name_or_path": str(ws.home / "model.safetensors"),
                         "train_data_dir": str(ws.home / "data"),
                         "output_dir": str(ws.outputs / name)})


def test_two_guis_queue_runs_and_both_lists_keep_all_of_them(tmp_path):
    ws = busy_workspace(tmp_path / "home")
    first_gui, second_gui = Runner(ws), Runner(ws)
    a = first_gui.submit(config(ws, "from-first"))
    b = second_gui.submit(config(ws, "from-second"))
    c = first_gui.submit(config(ws, "first-again"))
    assert second_gui.remove(c)  # the second GUI can take the first's run out of the queue
    for gui in (first_gui, second_gui, Runner(ws)):
        assert gui.queue() == [a, b]
        assert {info.run_dir for info in gui.runs()} >= {a, b}
        assert {gui.info(p).status for p in (a, b)} == {"queued"}


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from trainer.config import Config
    from ui.runner import Runner
    from ui.workspace import Workspace

    home, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ws = Workspace.create(home)
    runner = Runner(ws)  # a GUI that has started and read the run list
    (home / f"{name}.ready").write_text("", encoding="utf-8")
    while not (home / "go").exists():  # both GUIs write at the same time
        time.sleep(0.01)
    for i in range(count):
        runner.submit(Config("db", {"pretrained_model_name_or_path": str(home / "m.safetensors"),
                                    "train_data_dir": str(home / "data"),
                                    "output_dir": str(ws.outputs / f"{name}-{i}")}))
    print("done")
""")


def test_two_gui_processes_writing_the_run_list_at_once_keep_every_entry(tmp_path):
    ws = busy_workspace(tmp_path / "home")
    count = 12
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ws.home), name, str(count)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
               for name in ("left", "right")]
    deadline = time.monotonic() + 120
    while not all((ws.home / f"{name}.ready").exists() for name in ("left", "right")):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers), \
            [w.communicate()[0] for w in writers if w.poll() is not None]
        time.sleep(0.05)
    (ws.home / "go").write_text("", encoding="utf-8")
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    index = json.loads((ws.outputs / INDEX_FILE).read_text(encoding="utf-8"))
    expected = {str(ws.outputs / f"{name}-{i}") for name in ("left", "right") for i in range(count)}
    assert set(index["runs"]) == expected
    assert sorted(index["queue"]) == sorted(expected)
    assert set(map(str, Runner(ws).queue())) == expected


def test_a_gui_leaves_a_run_folder_alone_while_a_trainer_holds_it(tmp_path):
    ws = busy_workspace(tmp_path / "home")
    run_dir = ws.outputs / "taken"
    lock = RunFolderLock(run_dir).acquire()  # as a trainer started elsewhere holds it
    (run_dir / "config.toml").write_text("# the running trainer's\n", encoding="utf-8")
    try:
        with pytest.raises(UserError, match=f"in use by a training run \\(pid {os.getpid()}\\)"):
            Runner(ws).submit(config(ws, "taken"))
        with pytest.raises(UserError, match="in use by a training run"):
            Runner(ws).resume(run_dir, run_dir / "last-state")
    finally:
        lock.release()
    assert (run_dir / "config.toml").read_text(encoding="utf-8") == "# the running trainer's\n"
    assert Runner(ws).queue() == []
