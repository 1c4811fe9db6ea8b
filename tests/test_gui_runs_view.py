"""The Runs tab follows a run folder: progress, loss chart, samples, log and errors as they are
written, whoever writes them (here the event writer the trainer uses, driven step by step)."""

from __future__ import annotations

import os
import time
from urllib.parse import urljoin

import pytest

from gui_browser import AppServer, Gui, browser, needs_chromium, page  # noqa: F401 - fixtures
from helpers import make_image
from trainer.runs import EventWriter

pytestmark = [needs_chromium, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("runs") / "home").start()
    yield app
    app.stop()


def step_shown(gui: Gui, step: int) -> bool:
    return gui.page.locator(f"#run-progress [data-step='{step}']").count() > 0


def test_events_show_up_in_the_page_within_two_seconds(page, server):
    run_dir = server.home / "outputs" / "watched run"
    writer = EventWriter(run_dir)
    writer.emit("start", total_steps=20, total_epochs=2, steps_per_epoch=10, mode="db",
                pid=os.getpid(), first_step=0)
    (run_dir / "trainer.log").write_text("loading model\n", encoding="utf-8")
    gui = Gui(page, server).open()
    gui.tab("Runs")
    gui.page.locator("#run-progress [data-status='running']").wait_for()
    assert "watched run" in gui.text("runs-table")

    latencies = []
    for step in range(1, 9):
        writer.emit("step", step=step, epoch=1, loss=0.5 / step, lr=1e-6, seconds_per_step=0.5,
                    eta_seconds=(20 - step) * 0.5)
        written = time.monotonic()
        while not step_shown(gui, step):
            assert time.monotonic() - written < 10, f"step {step} never showed up"
            time.sleep(0.02)
        latencies.append(time.monotonic() - written)
    latencies.sort()
    print(f"\nevent -> page latency: median {latencies[len(latencies) // 2]:.2f} s, "
          f"max {latencies[-1]:.2f} s")
    assert latencies[len(latencies) // 2] < 2.0
    progress = gui.text("run-progress")
    assert "step 8 / 20" in progress and "40%" in progress and "ETA 0:06" in progress
    gui.page.locator("#run-chart .loss-chart[data-points='8']").wait_for()

    sample = make_image(run_dir / "samples" / "step000008_0.png", (64, 64))
    writer.emit("sample", step=8, epoch=1, path="samples/step000008_0.png", prompt="a sks dog")
    shown = gui.page.locator("#run-gallery img").first
    shown.wait_for()
    # the page shows this very picture (the bytes it serves), not just some image
    served = gui.page.request.get(urljoin(gui.page.url, shown.get_attribute("src")))
    assert served.ok and served.body() == sample.read_bytes()
    with open(run_dir / "trainer.log", "a", encoding="utf-8") as log:
        log.write("step 8/20 loss 0.0625\n")
    gui.page.wait_for_function(
        "() => document.querySelector('#run-log textarea')?.value?.includes('step 8/20 loss')")

    writer.emit("error", message="CUDA out of memory", hint="lower train_batch_size")
    writer.emit("end", status="failed", step=8)
    gui.page.locator("#run-progress [data-status='failed']").wait_for()
    messages = gui.wait_text("run-messages", "CUDA out of memory")
    assert "lower train_batch_size" in messages
    writer.close()


def test_a_run_whose_process_died_is_reported_failed(page, server):
    run_dir = server.home / "outputs" / "crashed run"
    with EventWriter(run_dir) as writer:
        writer.emit("start", total_steps=10, mode="lora", pid=2 ** 22 + 12345, first_step=0)
        writer.emit("step", step=3, epoch=1, loss=0.2, lr=1e-4)
    gui = Gui(page, server).open()
    gui.tab("Runs")
    gui.choose("#run-select", "crashed run")
    gui.page.locator("#run-progress [data-status='failed']").wait_for()
    assert "ended unexpectedly" in gui.wait_text("run-messages", "Error")


def test_queued_runs_can_be_reordered_and_removed_before_they_start(page, server, tiny_model):
    busy = EventWriter(server.home / "outputs" / "busy run")
    busy.emit("start", total_steps=100, mode="db", pid=os.getpid(), first_step=0)
    data = server.home / "data"
    make_image(data / "img" / "3_sks dog" / "a.png")
    gui = Gui(page, server).open()
    gui.set("pretrained_model_name_or_path", str(tiny_model("tiny-v1")))
    gui.set("train_data_dir", str(data / "img"))
    names = []
    for _ in range(2):
        gui.tab("Train")
        gui.page.locator("#train-start", has_text="Queue").wait_for()
        names.append(gui.value("output_dir").rsplit("/", 1)[-1])
        gui.press("train-start", expect="Queued")
    first, second = names
    table = gui.page.locator("#runs-table")
    table.locator(f"tr[data-run='{second}'] >> text=queue #2").wait_for()
    gui.choose("#run-select", second)
    gui.click("queue-up")
    table.locator(f"tr[data-run='{second}'] >> text=queue #1").wait_for()
    table.locator(f"tr[data-run='{first}'] >> text=queue #2").wait_for()
    gui.choose("#run-select", first)
    gui.press("queue-remove", "run-action", expect="Removed")
    table.locator(f"tr[data-run='{first}']").wait_for(state="detached")
    assert (server.home / "outputs" / first / "config.toml").exists()  # its folder is kept

    busy.emit("end", status="finished", step=100)  # the GPU is free: the queue moves on
    busy.close()
    table.locator(f"tr[data-run='{second}']:not([data-status='queued'])").wait_for(timeout=30000)
