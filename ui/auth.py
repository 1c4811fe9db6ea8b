"""Sign-in for every route of the GUI: a per-launch token, or a user name and password.

`Gate` is ASGI middleware in front of the whole gradio app, so the page, its API, the queue,
uploads and file downloads are all refused (401, or the login form) without a valid session
cookie. The token arrives once in the URL the console prints; the answer to that request sets
the cookie (HttpOnly, SameSite=Strict), and the page works without the token from then on.
"""

from __future__ import annotations

import hmac
import html
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from .throttle import SignInThrottle

LOGIN_PATH = "/login"
# gradio's launch() calls this once, without credentials, to start its queue.
STARTUP_PATH = "/gradio_api/startup-events"


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two secrets."""
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Auth:
    """token: the URL secret (token mode); username/password: the login form's (password mode)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    port: int = 0
    session: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def with_token(cls, port: int) -> "Auth":
        return cls(token=secrets.token_urlsafe(24), port=port)

    @property
    def cookie_name(self) -> str:
        return f"trainer-gui-{self.port}"  # cookies ignore ports: one name per GUI

    def page_url(self, base: str) -> str:
        """What the console prints (and --inbrowser opens)."""
        return f"{base}?token={quote(self.token)}" if self.token else base

    def cookie_header(self) -> tuple[bytes, bytes]:
        value = (f"{self.cookie_name}={self.session}; Path=/; HttpOnly; SameSite=Strict")
        return b"set-cookie", value.encode()

    def signed_in(self, headers: dict[str, str]) -> bool:
        # Parsed by hand: other local apps' cookies may be ones SimpleCookie gives up on.
        for pair in headers.get("cookie", "").split(";"):
            name, _, value = pair.strip().partition("=")
            if name == self.cookie_name and same(value.strip(), self.session):
                return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return bool(self.token) and scheme.lower() == "bearer" and same(value.strip(), self.token)

    def check_login(self, username: str, password: str) -> bool:
        # Both compared, always, so the time taken tells nothing about which one was wrong.
        name_ok = same(username, self.username)
        return same(password, self.password) & name_ok


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Gate:
    """ASGI middleware: nothing reaches gradio without a signed-in session."""

    def __init__(self, app, auth: Auth):
        self.app, self.auth = app, auth
        self.started = False
        self.throttle = SignInThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == STARTUP_PATH and not self.started:
            self.started = True
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        if self.auth.signed_in(headers):
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.auth.token and same((query.get("token") or [None])[0], self.auth.token):
            return await self.app(scope, receive, self._setting_cookie(send))
        if self.auth.password and path == LOGIN_PATH and scope["type"] == "http":
            return await self._login(scope, receive, send)
        await self._refuse(scope, headers, send)

    def _setting_cookie(self, send):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  self.auth.cookie_header()]}
            await send(message)
        return wrapped

    async def _refuse(self, scope, headers, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        wants_page = scope.get("method") == "GET" and "text/html" in headers.get("accept", "")
        if self.auth.password and wants_page:
            await _respond(send, 303, b"", [(b"location", LOGIN_PATH.encode())])
            return
        text = ("Sign in first: open the URL with ?token=... that the GUI printed when it started."
                if self.auth.token else "Sign in first at /login.")
        await _respond(send, 401, text.encode(), [(b"content-type", b"text/plain; charset=utf-8")])

    async def _login(self, scope, receive, send):
        failed = False
        if scope.get("method") == "POST":
            client = (scope.get("client") or ("unknown",))[0]
            form = parse_qs((await _body(receive)).decode("utf-8", "replace"))
            wait = self.throttle.wait_seconds(client)
            if wait:
                page = login_page(False, wait=wait).encode()
                await _respond(send, 429, page, [(b"content-type", b"text/html; charset=utf-8"),
                                                 (b"retry-after", str(wait).encode())])
                return
            username = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            if self.auth.check_login(username, password):
                self.throttle.succeeded(client)
                await _respond(send, 303, b"", [(b"location", b"/"), self.auth.cookie_header()])
                return
            self.throttle.failed(client)
            failed = True
        page = login_page(failed).encode()
        await _respond(send, 401 if failed else 200, page,
                       [(b"content-type", b"text/html; charset=utf-8")])


async def _body(receive, limit: int = 16384) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit or not message.get("more_body"):
            return b"".join(chunks)[:limit]


async def _respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]):
    headers = [*headers, (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def login_page(failed: bool, wait: int = 0) -> str:
    note = '<p class="err">Wrong user name or password.</p>' if failed else ""
    if wait:
        note = (f'<p class="err">Too many failed sign-ins. Try again in {wait} seconds.</p>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Sign in</title>"
            f"<style>body{{font-family:sans-serif;max-width:22em;margin:4em auto}}"
            f"input{{display:block;width:100%;margin:.3em 0 1em}}.err{{color:#b91c1c}}</style>"
            f"</head><body><h2>{html.escape('Sign in to the trainer')}</h2>{note}"
            f"<form method='post' action='{LOGIN_PATH}'>"
            f"<label>User name<input name='username' id='username' autocomplete='username'>"
            f"</label><label>Password<input name='password' id='password' type='password' "
            f"autocomplete='current-password'></label>"
            f"<button type='submit' id='login'>Sign in</button></form></body></html>")
