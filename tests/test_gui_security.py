"""The GUI is a network service: sign-in on every route, and no path outside the allowed folders,
proven against a real `python app.py` through its HTTP API (what any program could send)."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from gui_api import GradioAPI, request
from gui_browser import CHROMIUM, AppServer, browser, page  # noqa: F401 - fixtures
from helpers import REPO, make_concept, make_image

pytestmark = pytest.mark.slow  # trains, loads models or drives a browser


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """home (the working directory, with secrets), allowed (a --root), outside (neither)."""
    base = tmp_path_factory.mktemp("security")
    home, allowed, outside = base / "home", base / "allowed", base / "outside"
    for folder in (home / ".ssh", allowed / ".hidden", outside):
        folder.mkdir(parents=True)
    (home / ".env").write_text("API_KEY=SECRET-ENV\n")
    (home / ".ssh" / "id_rsa").write_text("SECRET-KEY\n")
    (home / "notes.txt").write_text("SECRET-NOTES\n")
    (outside / "secret.txt").write_text("SECRET-OUTSIDE\n")
    (allowed / "page.html").write_text("<script>document.title='owned'</script>")
    make_image(allowed / "pic.png")
    make_image(allowed / ".hidden" / "pic.png")
    (allowed / "link.txt").symlink_to(outside / "secret.txt")
    make_concept(allowed / "data" / "10_sks dog", 2)
    make_concept(outside / "data" / "10_sks dog", 2)
    return {"home": home, "allowed": allowed, "outside": outside}


@pytest.fixture(scope="module")
def server(world):
    app = AppServer(world["home"], "--root", str(world["allowed"]), test_root=False).start()
    yield app
    app.stop()


def api(server) -> GradioAPI:
    return GradioAPI(server.base, server.token)


def file_url(server, path: Path | str) -> str:
    return server.base + "gradio_api/file=" + urllib.parse.quote(str(path))


# ------------------------------------------------------------------ sign-in
def test_the_printed_url_carries_a_token(server):
    assert server.url.startswith(server.base + "?token=") and len(server.token) >= 24


def test_every_route_refuses_a_request_without_the_token(server, world):
    routes = [("GET", ""), ("GET", "config"), ("GET", "gradio_api/info"),
              ("GET", "gradio_api/queue/data?session_hash=x"), ("POST", "gradio_api/queue/join"),
              ("POST", "gradio_api/upload"), ("GET", "gradio_api/startup-events"),
              ("GET", "gradio_api/file=" + str(world["allowed"] / "pic.png")),
              ("GET", "file=" + str(world["allowed"] / "pic.png"))]
    for method, route in routes:
        data = b"{}" if method == "POST" else None
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Cookie": f"trainer-gui-{server.port}=wrong"}):
            status, _, body = request(server.base + route, data=data, method=method,
                                      headers=headers)
            assert status == 401, (route, headers, status)
            assert b"SECRET" not in body
    status, _, _ = request(server.base + "?token=wrong")
    assert status == 401


def test_the_token_sets_a_strict_http_only_cookie_that_opens_the_page(server):
    status, headers, body = request(server.url)
    assert status == 200 and b"<html" in body.lower()
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    pair = cookie.split(";")[0]
    assert server.token not in pair  # the session cookie is not the URL's token
    for route in ("", "config", "gradio_api/info"):
        status, _, _ = request(server.base + route, headers={"Cookie": pair})
        assert status == 200, route


@pytest.mark.parametrize("flags", [["--listen", "0.0.0.0", "--no-auth"], ["--share", "--no-auth"]])
def test_serving_beyond_this_machine_without_sign_in_is_refused(flags, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "app.py"), *flags], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--no-auth" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def password_server(world):
    app = AppServer(world["home"].parent / "home2", "--username", "ann", "--password", "s3cret pw",
                    test_root=False).start()
    yield app
    app.stop()


def test_username_and_password_sign_in(password_server):
    base = password_server.base
    assert password_server.url == base  # no token in this mode
    status, headers, _ = request(base, headers={"Accept": "text/html"})
    assert status == 303 and headers["Location"] == "/login"
    assert request(base + "config")[0] == 401
    form = urllib.parse.urlencode({"username": "ann", "password": "wrong"}).encode()
    status, headers, _ = request(base + "login", data=form)
    assert status == 401 and "Set-Cookie" not in headers
    form = urllib.parse.urlencode({"username": "ann", "password": "s3cret pw"}).encode()
    status, headers, _ = request(base + "login", data=form)
    assert status == 303 and "HttpOnly" in headers["Set-Cookie"]
    pair = headers["Set-Cookie"].split(";")[0]
    assert request(base + "config", headers={"Cookie": pair})[0] == 200


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing")
def test_the_login_form_opens_the_page_in_a_browser(page, password_server):
    page.goto(password_server.base)
    page.locator("#username").fill("ann")
    page.locator("#password").fill("s3cret pw")
    page.locator("#login").click()
    page.wait_for_selector("#train-start", timeout=30000)


# ------------------------------------------------------------------ files
def test_file_routes_serve_only_allowed_files_and_nothing_inline(server, world):
    auth = {"Authorization": f"Bearer {server.token}"}
    home, allowed, outside = world["home"], world["allowed"], world["outside"]
    for path in (home / ".env", home / ".ssh" / "id_rsa", home / "notes.txt",
                 outside / "secret.txt", allowed / "link.txt", allowed / ".hidden" / "pic.png",
                 allowed / "data" / ".." / ".." / "outside" / "secret.txt",
                 "http://127.0.0.1:1/x"):
        status, _, body = request(file_url(server, path), headers=auth)
        assert status == 403 and b"SECRET" not in body, path
    status, headers, _ = request(file_url(server, allowed / "pic.png"), headers=auth)
    assert status == 200 and headers["Content-Type"] == "image/png"
    status, headers, body = request(file_url(server, allowed / "page.html"), headers=auth)
    assert status == 200 and b"<script>" in body
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"


# ------------------------------------------------------------------ handlers
def test_training_config_paths_outside_the_allowed_folders_are_refused(server, world):
    client = api(server)
    secret = str(world["outside"] / "secret.txt")
    check = client.call("train-check", **{"opt-sample_prompts": secret})[0]
    assert "sample_prompts" in check and "outside the folders" in check and "SECRET" not in check
    outputs = world["home"] / "outputs"
    before = set(outputs.iterdir()) if outputs.exists() else set()
    started = client.call("train-start", **{
        "opt-train_data_dir": str(world["outside"] / "data"),
        "opt-output_dir": str(outputs / "evil-run")})[0]
    assert "train_data_dir" in started and "outside the folders" in started
    started = client.call("train-start", **{
        "opt-train_data_dir": str(world["allowed"] / "data"),
        "opt-output_dir": str(world["outside"] / "run")})[0]
    assert "output_dir" in started and "outside the folders" in started
    toml = world["allowed"] / "dataset.toml"
    toml.write_text("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '%s'\n"
                    % (world["outside"] / "data" / "10_sks dog"))
    check = client.call("train-check", **{"opt-dataset_config": str(toml)})[0]
    assert "dataset_config" in check and "outside the folders" in check
    assert (set(outputs.iterdir()) if outputs.exists() else set()) == before
    assert not (world["outside"] / "run").exists()


def test_previews_builder_and_tools_refuse_paths_outside(server, world):
    client = api(server)
    outside = world["outside"]
    summary, gallery, _ = client.call("captions-run", **{"opt-train_data_dir": str(outside / "data")})
    assert "outside the folders" in summary and not gallery
    summary, gallery = client.call("buckets-run", **{"opt-train_data_dir": str(outside / "data")})
    assert "outside the folders" in summary and not gallery
    built = client.call("build-run", **{"build-folder": str(outside / "data" / "10_sks dog"),
                                        "build-class": "dog"})[0]
    assert "outside the folders" in built and not (world["home"] / "datasets").exists()
    built = client.call("build-run", **{"build-folder": str(world["allowed"] / "data" / "10_sks dog"),
                                        "build-class": "dog", "build-dest": str(outside / "new")})[0]
    assert "outside the folders" in built and not (outside / "new").exists()
    for elem, field in (("info-run", "info-file"), ("resize-run", "resize-file")):
        status = client.call(elem, **{field: str(world["home"] / ".env")})[0]
        assert "outside the folders" in status, status
    status = client.call("convert-run", **{"convert-src": str(world["allowed"] / "pic.png"),
                                           "convert-dst": str(outside / "model.safetensors")})[0]
    assert "outside the folders" in status and not (outside / "model.safetensors").exists()


def test_the_caption_editor_writes_only_caption_files_beside_training_images(server, world):
    client = api(server)
    data = world["allowed"] / "data"
    image = data / "10_sks dog" / "img000.png"
    original = image.read_bytes()
    summary = client.call("captions-run", **{"opt-train_data_dir": str(data)})[0]
    assert "2 images" in summary, summary

    def save(extension: str, path: Path = image) -> str:
        return client.call("caption-save", **{
            "caption-image": str(path), "caption-text": "touch /tmp/owned",
            "opt-train_data_dir": str(data), "opt-caption_extension": extension})[0]

    for extension in (".sh", ".png", ".py", ".safetensors", ".pkl", "/../../x"):
        assert "not a caption file type" in save(extension), extension
    assert image.read_bytes() == original
    assert sorted(p.name for p in image.parent.iterdir()) == ["img000.png", "img001.png"]
    assert "outside the folders" in save(".txt", world["outside"] / "data" / "10_sks dog" /
                                         "img000.png")
    assert not (world["outside"] / "data" / "10_sks dog" / "img000.txt").exists()
    assert "Saved img000.txt" in save(".txt")
    assert image.with_suffix(".txt").read_text() == "touch /tmp/owned\n"


# ------------------------------------------------------------------ HTML
def test_text_from_run_folders_is_escaped(tmp_path):
    from trainer.runs import RunState, RunStatus
    from ui.run_view import messages_html, progress_html, runs_table
    from ui.runner import RunInfo

    evil = "<img src=x onerror=alert(1)>"
    run_dir = tmp_path / evil.replace("/", "")
    state = RunState(run_dir, status=RunStatus.FAILED, mode=evil, step=1, total_steps=2,
                     epoch=1, warnings=[evil], phase={"phase": evil, "done": evil},
                     saves=[{"step": evil, "what": evil, "path": evil}])
    info = RunInfo(run_dir, RunStatus.FAILED, state, error={"message": evil, "hint": evil})
    page = runs_table([info], [], None) + progress_html(info) + messages_html(info)
    assert "<img" not in page and "&lt;img" in page


def test_password_guessing_is_locked_out_for_a_while():
    from ui.throttle import SignInThrottle

    now = [0.0]
    throttle = SignInThrottle(limit=3, window=60, lockout=30, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("10.0.0.7")
    assert throttle.wait_seconds("10.0.0.7") == 0
    throttle.failed("10.0.0.7")
    assert throttle.wait_seconds("10.0.0.7") == 30
    assert throttle.wait_seconds("10.0.0.8") == 0  # other addresses go on
    now[0] = 29.5
    assert throttle.wait_seconds("10.0.0.7") == 1
    now[0] = 30.0
    assert throttle.wait_seconds("10.0.0.7") == 0


# Kept last in this file: it locks this machine's address out of password_server.
def test_many_wrong_passwords_lock_the_sign_in_form(password_server):
    login = password_server.base + "login"
    wrong = urllib.parse.urlencode({"username": "ann", "password": "guess"}).encode()
    statuses = []
    while 429 not in statuses and len(statuses) < 7:
        statuses.append(request(login, data=wrong)[0])
    # Five failures in a minute lock the form (earlier tests may have spent some of them).
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {401} and len(statuses) <= 6
    right = urllib.parse.urlencode({"username": "ann", "password": "s3cret pw"}).encode()
    status, headers, body = request(login, data=right)
    assert status == 429 and "Set-Cookie" not in headers
    assert 0 < int(headers["Retry-After"]) <= 60
    assert b"Too many failed sign-ins" in body
