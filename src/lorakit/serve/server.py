"""Bind, print the URL, run uvicorn until Ctrl-C."""

from __future__ import annotations

import contextlib
import secrets
import socket
import sys
from pathlib import Path

from lorakit.errors import EnvironmentProblem


def run_server(*, host: str, port: int, runs: Path, roots: list[Path], token: str | None) -> None:
    import uvicorn

    from lorakit.gpu.comfyui import is_loopback_host
    from lorakit.serve.app import ServeConfig, create_app
    from lorakit.serve.security import Guard

    loopback = is_loopback_host(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(32)
    runs_abs = runs.expanduser().absolute()
    cwd = Path.cwd()
    root_list = [r.expanduser().resolve() for r in roots] or [cwd.resolve()]
    root_list.append(runs_abs.resolve())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EnvironmentProblem(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            fix="pick another --port (0 takes any free one), or stop what listens there",
        ) from exc
    sock.listen(128)
    real_port = sock.getsockname()[1]
    guard = Guard(csrf=secrets.token_urlsafe(24), token=token, loopback=loopback)
    guard.port = real_port
    cfg = ServeConfig(runs=runs_abs, roots=root_list, guard=guard, cwd=cwd)
    app = create_app(cfg)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{real_port}/"
    if guard.token:
        url += f"?token={guard.token}"
    print(f"lorakit serve: {url}", flush=True)
    if not loopback:
        print(
            "note: listening beyond this machine; every request needs the token in that URL "
            "(keep it secret; traffic is plain HTTP)",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after its clean shutdown
        server.run(sockets=[sock])
    print("lorakit serve: stopped (runs started from it go on; their pages come back with the next serve)")
