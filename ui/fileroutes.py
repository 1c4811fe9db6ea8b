"""gradio's file routes, narrowed: only files the page may show, and never rendered as a page.

gradio serves any file below its allowed paths inline with its own content type, HTML included,
and fetches remote URLs on request. `FileGuard` (ASGI middleware) lets a file request through
only for a file inside the workspace's roots or gradio's upload folder, below no dot-folder, and
sends anything but a picture as a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from .workspace import Workspace, allowed_in

FILE_PREFIXES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")
PICTURES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}  # not .svg: it may hold script


def requested_file(path: str) -> str | None:
    for prefix in FILE_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix):]  # already decoded, once, as gradio's route sees it
    return None


class FileGuard:
    def __init__(self, app, workspace: Workspace, extra_dirs: list[Path]):
        self.app, self.workspace, self.extra_dirs = app, workspace, extra_dirs

    def permitted(self, target: str) -> bool:
        if "://" in target or target.startswith(("http:", "https:", "//")):
            return False  # no fetching of remote URLs on a caller's behalf
        path = Path(target)
        path = path if path.is_absolute() else Path(os.getcwd()) / path
        return allowed_in(path, self.extra_dirs) or self.workspace.allowed(path)

    async def __call__(self, scope, receive, send):
        target = requested_file(scope.get("path", "")) if scope["type"] == "http" else None
        if target is None:
            return await self.app(scope, receive, send)
        if not self.permitted(target):
            body = b"File not allowed."
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        picture = Path(target).suffix.lower() in PICTURES

        async def as_download(message):
            if message["type"] == "http.response.start":
                keep = [(k, v) for k, v in message.get("headers", [])
                        if picture or k.lower() not in (b"content-type", b"content-disposition")]
                keep.append((b"x-content-type-options", b"nosniff"))
                if not picture:
                    keep += [(b"content-type", b"application/octet-stream"),
                             (b"content-disposition", b"attachment")]
                message = {**message, "headers": keep}
            await send(message)

        await self.app(scope, receive, as_download)
