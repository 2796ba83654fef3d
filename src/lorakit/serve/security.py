"""What every request must pass before a route sees it (docs/serve.md, "Security").

- A token when the server listens beyond loopback: ``Authorization: Bearer``, the
  ``lorakit_token`` cookie, or ``?token=`` once (a GET then sets the cookie and redirects).
- On a loopback bind, the ``Host`` header must name the loopback address and port (DNS
  rebinding: a page whose name resolves to 127.0.0.1 cannot read the API).
- State-changing requests (anything but GET/HEAD): ``Origin`` equal to the server's own origin,
  the ``X-CSRF-Token`` header equal to the token the pages carry, and a JSON body
  (a cross-site form cannot send ``application/json`` without a CORS preflight).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "lorakit_token"
SAFE_METHODS = ("GET", "HEAD")


@dataclass
class Guard:
    csrf: str
    token: str | None = None  # required on every request when set (a non-loopback bind)
    loopback: bool = True
    port: int = 0

    def allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        g = self.guard
        host = headers.get("host", "")
        if g.loopback and host not in g.allowed_hosts():
            await _reply(send, 400, "this server answers only on its loopback address (Host header refused)")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if g.token is not None:
            given = None
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if given is None and "cookie" in headers:
                jar: SimpleCookie = SimpleCookie()
                jar.load(headers["cookie"])
                if COOKIE in jar:
                    given = jar[COOKIE].value
            if given is None and scope["method"] == "GET" and _same(query.get("token"), g.token):
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                where = scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={g.token}; HttpOnly; SameSite=Strict; Path=/"
                await _reply(send, 303, "", [("location", where), ("set-cookie", cookie)])
                return
            if not _same(given, g.token):
                await _reply(send, 401, "a token is required: open the URL lorakit serve printed (it ends ?token=...)")
                return
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is None or origin != f"http://{host}":
                await _reply(send, 403, "cross-site request refused (Origin is not this server)")
                return
            if not _same(headers.get("x-csrf-token"), g.csrf):
                await _reply(send, 403, "missing or wrong X-CSRF-Token (reload the page)")
                return
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                await _reply(send, 415, "send a JSON body (Content-Type: application/json)")
                return
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, text: str, extra: list[tuple[str, str]] | None = None) -> None:
    import json

    body = json.dumps({"error": text}).encode() if text else b""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra or []]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CrashMiddleware:
    """A bug in a route: one JSON message naming the file that holds the traceback (as the CLI's
    edge does), never a traceback in the answer or in the server's terminal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            from lorakit.serve._core import save_crash

            where = save_crash(exc)
            if not started:
                text = (
                    f"lorakit hit an internal error ({type(exc).__name__}: {exc}). This is a bug in lorakit; "
                    f"the details are in {where} (attach it to a bug report)."
                )
                await _reply(send, 500, text)
