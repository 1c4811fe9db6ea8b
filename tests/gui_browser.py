"""Drive the real GUI (python app.py in a subprocess) with Playwright and Debian's Chromium."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="/usr/bin/chromium is missing (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


READY = re.compile(r"GUI ready at (\S+)")


class AppServer:
    """`python app.py` with its working directory in `home`; start_seconds = start to first page.

    `url` is the page's URL as the GUI printed it, with its sign-in token; `base` has none.
    Unless `test_root=False`, the pytest temporary folder above `home` is a --root, so the tiny
    models and datasets of the fixtures may be used."""

    def __init__(self, home: Path, *extra: str, test_root: bool = True,
                 ignore_sigint: bool = False):
        self.home = Path(home)
        # As `nohup python app.py &` starts it: SIGINT ignored, and inherited by its children.
        self.ignore_sigint = ignore_sigint
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.url = self.base
        # Tests start from the plain defaults unless they ask for a preset (the app's own default
        # is the bundled demo).
        self.extra = list(extra) if "--preset" in extra else ["--preset", "none", *extra]
        if test_root:
            self.extra += ["--root", str(self.home.parent.parent)]
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self.log_path = self.home.parent / f"gui-{self.port}.log"

    def start(self, timeout: float = 180) -> "AppServer":  # a busy machine starts it slowly
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": str(REPO)}
        began = time.monotonic()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "app.py"), "--port", str(self.port), *self.extra],
                cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_ignore_sigint if self.ignore_sigint else None)
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the GUI exited early:\n{self.log()}")
            fresh = self.log_path.read_bytes()[offset:].decode(errors="replace")
            ready = READY.search(fresh)  # this start's line, not an earlier one's
            if ready:
                self.url = ready.group(1)
                page = urllib.request.Request(self.url, headers={"Accept": "text/html"})
                with urllib.request.urlopen(page, timeout=10) as response:  # or its login form
                    assert response.status == 200
                self.start_seconds = time.monotonic() - began
                return self
            time.sleep(0.1)
        self.stop()  # a GUI that never answered must not outlive the test that started it
        raise RuntimeError(f"the GUI did not answer within {timeout} s:\n{self.log()}")

    @property
    def token(self) -> str | None:
        query = urllib.parse.urlparse(self.url).query
        return (urllib.parse.parse_qs(query).get("token") or [None])[0]

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def stop(self, end_trainers: bool = True) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if self.ignore_sigint else signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if end_trainers:
            self.stop_trainers()

    def stop_trainers(self) -> None:
        """Trainers outlive the GUI by design; a test ends the ones its GUI started."""
        import json

        from trainer.processes import is_process

        index = self.home / "outputs" / ".runs.json"
        if not index.exists():
            return
        for entry in json.loads(index.read_text(encoding="utf-8")).get("runs", {}).values():
            pid = entry.get("pid")
            if is_process(pid, entry.get("pid_started"), entry.get("launched")):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def option_group_ids(name: str) -> tuple[str, str | None]:
    """(accordion elem_id, inner Advanced accordion elem_id or None) of an option's widget."""
    from trainer.config import BY_NAME
    from ui.form import group_id

    option = BY_NAME[name]
    outer = group_id(option.group)
    return outer, (outer + "-advanced" if option.advanced else None)


def _kind(name: str) -> str:
    from trainer.config import BY_NAME
    from ui.formvalues import widget_kind

    return widget_kind(BY_NAME[name])


def progress(gui: Gui) -> dict:
    box = gui.page.locator("#run-progress .run-progress")
    if not box.count():
        return {}
    return {"status": box.get_attribute("data-status"), "step": int(box.get_attribute("data-step") or 0),
            "text": box.inner_text()}


def wait_progress(gui: Gui, test, what: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = progress(gui)
        if state and test(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; the page shows {state}\n"
                         f"{gui.page.locator('#run-log textarea').input_value()[-2000:]}")


class Gui:
    """Actions a user takes on the page, by element ids the GUI sets."""

    def __init__(self, page, server: AppServer):
        self.page = page
        self.server = server

    def open(self) -> "Gui":
        from playwright.sync_api import Error

        for attempt in range(3):
            try:
                self.page.goto(self.server.url)
                break
            except Error as err:
                # A page left open across a GUI restart may abort the navigation while it
                # reconnects; a user would simply load it again.
                if "ERR_ABORTED" not in str(err) or attempt == 2:
                    raise
                time.sleep(1)
        self.page.wait_for_selector("#train-start", timeout=30000)
        # The page is ready once its load event has proposed a run folder.
        self.page.wait_for_function("() => document.querySelector('#opt-output_dir input')?.value",
                                    timeout=30000)
        return self

    def tab(self, title: str) -> None:
        self.page.get_by_role("tab", name=title).click()

    def open_accordion(self, elem_id: str) -> None:
        content = self.page.locator(f"#{elem_id} > [data-testid='accordion-content']").first
        if not content.is_visible():
            self.page.locator(f"#{elem_id} > button.label-wrap").first.click()
            content.wait_for(state="visible")

    def reveal(self, name: str) -> str:
        outer, inner = option_group_ids(name)
        self.open_accordion(outer)
        if inner:
            self.open_accordion(inner)
        return f"#opt-{name}"

    def field(self, name: str):
        return self.page.locator(f"{self.reveal(name)} :is(input, textarea)").first

    def set(self, name: str, value) -> None:
        kind = _kind(name)
        selector = self.reveal(name)
        widget = self.page.locator(selector)
        if kind == "checkbox":
            widget.locator("input[type=checkbox]").set_checked(bool(value))
        elif kind == "dropdown":
            self.choose(selector, str(value))
        else:
            # An accordion opened just now may still be mounting its widgets and replace the
            # field under our fingers: type again until the value stays.
            box = widget.locator("input, textarea").first
            for _ in range(10):
                box.fill(str(value))
                box.press("Tab")
                time.sleep(0.2)
                if box.input_value() == str(value):
                    return
            raise AssertionError(f"{name} does not keep the value {value!r}")

    def wait_sent(self, *flags: str, timeout: float = 20) -> None:
        """Press Print command until the command line (what the page sends the server) holds
        every flag, e.g. "--max_train_steps=20"."""
        deadline = time.monotonic() + timeout
        command = ""
        while time.monotonic() < deadline:
            self.click("train-print")
            time.sleep(0.5)
            box = self.page.locator("#train-command textarea")
            command = box.input_value() if box.count() else ""
            if set(flags) <= set(shlex.split(command)):
                return
        raise AssertionError(f"the form never sent {flags}; its command line: {command}")

    def choose(self, selector: str, label: str) -> None:
        self.page.locator(f"{selector} input[role=combobox]").click()
        self.page.locator(f"{selector} li[role=option][aria-label='{label}']").click()

    def value(self, name: str):
        widget = self.page.locator(self.reveal(name))
        if _kind(name) == "checkbox":
            return widget.locator("input[type=checkbox]").is_checked()
        return widget.locator("input, textarea").first.input_value()

    def click(self, elem_id: str) -> None:
        self.page.locator(f"#{elem_id}").click()

    def text(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id}").inner_text()

    def wait_text(self, elem_id: str, text: str, timeout: float = 20, inner: str = "") -> str:
        """Wait until the element's text contains `text`; returns the text."""
        deadline = time.monotonic() + timeout
        current = ""
        locator = self.page.locator(f"#{elem_id} {inner}".strip()).first
        while time.monotonic() < deadline:
            current = locator.inner_text() if locator.count() else ""
            if text in current:
                return current
            time.sleep(0.05)
        raise AssertionError(f"#{elem_id} never showed {text!r}; it shows:\n{current}")

    def press(self, button_id: str, message_id: str = "train-message", expect: str = "",
              timeout: float = 30) -> str:
        """Click a button and return its new message (the .msg box replaced by the click)."""
        box = self.page.locator(f"#{message_id} .msg").first
        before = box.evaluate("e => e.outerHTML") if box.count() else None
        self.click(button_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            box = self.page.locator(f"#{message_id} .msg").first
            if box.count():
                html = box.evaluate("e => e.outerHTML")
                if html != before and expect in box.inner_text():
                    return box.inner_text()
            time.sleep(0.05)
        raise AssertionError(f"#{button_id} gave no new message with {expect!r} in #{message_id}: "
                             f"{box.inner_text() if box.count() else ''}")

    def upload(self, button_id: str, paths: list[Path], message_id: str = "train-message",
               expect: str = "") -> str:
        """Pick files through the button's file chooser, as a user does; returns the new message."""
        box = self.page.locator(f"#{message_id} .msg").first
        before = box.evaluate("e => e.outerHTML") if box.count() else None
        with self.page.expect_file_chooser() as chooser:
            self.click(button_id)
        chooser.value.set_files([str(p) for p in paths])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            box = self.page.locator(f"#{message_id} .msg").first
            if box.count() and box.evaluate("e => e.outerHTML") != before and expect in box.inner_text():
                return box.inner_text()
            time.sleep(0.05)
        raise AssertionError(f"no new message with {expect!r} after uploading to #{button_id}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20000)
    yield page
    context.close()
