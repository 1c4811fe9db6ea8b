"""Serve the page behind the sign-in gate and the file-route guard (see auth.py, fileroutes.py)."""

from __future__ import annotations

from starlette.middleware import Middleware

from .auth import Auth, Gate
from .fileroutes import FileGuard
from .paths import upload_dirs
from .workspace import Workspace


def middleware(workspace: Workspace, auth: Auth | None) -> list[Middleware]:
    """Outermost first: the gate sees every request before anything else does."""
    stack = [Middleware(Gate, auth=auth)] if auth else []
    return stack + [Middleware(FileGuard, workspace=workspace, extra_dirs=upload_dirs())]


def launch(app, workspace: Workspace, auth: Auth | None, host: str, port: int, *, share: bool,
           css: str) -> list[str]:
    """Start serving (in the background); the local URL with its token, then any share link."""
    app.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, share=share, inbrowser=False, show_error=True,
        allowed_paths=[str(r) for r in workspace.roots], css=css, prevent_thread_lock=True,
        quiet=True, ssr_mode=False, mcp_server=False, num_workers=0,
        app_kwargs={"middleware": middleware(workspace, auth)})
    base = f"http://{host}:{port}/"
    urls = [auth.page_url(base) if auth else base]
    if share and app.share_url:
        urls.append(auth.page_url(app.share_url.rstrip("/") + "/") if auth else app.share_url)
    return urls
