"""A real `lorakit serve` on 127.0.0.1 (a child process on a free port), a small HTTP client
that behaves as the pages' JS does (CSRF header, Origin, JSON), and the stand-in trainer."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.conftest import EXAMPLE
from tests.run.conftest import FAKE_TRAINER, FIXTURES, stand_in_trainer_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the stand-in trainer is a shebang script")


def base_env(tmp: Path) -> dict[str, str]:
    """tests/conftest.py's isolated_env, for a module-scoped server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAKIT_", "FAKE_"))}
    home = tmp / "home"
    home.mkdir()
    (tmp / "tmp").mkdir()
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), LORAKIT_HOME=str(home / "lorakit"), COLUMNS="200")
    env.update(LORAKIT_ALLOW_NO_GPU="1", TMPDIR=str(tmp / "tmp"))
    return env


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    tmp: Path
    env: dict[str, str]
    runs: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    csrf: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        hdrs = dict(self.headers)
        if method not in ("GET", "HEAD"):
            hdrs.update({"Origin": f"http://{self.host}:{self.port}", "X-CSRF-Token": self.csrf})
            hdrs.setdefault("Content-Type", "application/json")
        hdrs.update(headers or {})
        data = (
            raw
            if raw is not None
            else (json.dumps(body).encode() if body is not None else b"{}" if method != "GET" else None)
        )
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        payload = res.read()
        conn.close()
        ctype = res.getheader("content-type", "")
        out: Any = json.loads(payload) if "json" in ctype and payload else payload.decode("utf-8", "replace")
        return res.status, out, {k.lower(): v for k, v in res.getheaders()}

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, out, _ = self.request("GET", path, **kw)
        return status, out

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, out, _ = self.request("POST", path, body, **kw)
        return status, out

    def wait_run(self, run: str, done: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            status, info = self.get(f"/api/runs/{run}")
            assert status == 200, info
            if info["status"] in done:
                return dict(info)
            assert time.monotonic() < end, f"run {run} still {info['status']}"
            time.sleep(0.1)


def start_server(tmp: Path, *args: str, fake: dict[str, str] | None = None, token: str | None = None) -> Server:
    env = stand_in_trainer_env(base_env(tmp), tmp, FAKE_TRAINER)
    env.update(fake or {})
    runs = tmp / "runs"
    argv = [sys.executable, "-m", "lorakit", "serve", "--port", "0", "--runs", str(runs)]
    argv += ["--root", str(tmp), "--root", str(EXAMPLE), "--root", str(FIXTURES), *args]
    proc = subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.match(r"lorakit serve: (http://([^/]+):(\d+)/)(?:\?token=(\S+))?", line)
    if m is None:
        proc.kill()
        raise AssertionError(f"no URL from lorakit serve: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    host = m.group(2).strip("[]")
    if host == "0.0.0.0":
        host = "127.0.0.1"
    srv = Server(proc, m.group(1), tmp, env, runs, host=host, port=int(m.group(3)), token=m.group(4) or token)
    if srv.token:
        srv.headers["Authorization"] = f"Bearer {srv.token}"
    status, html = srv.get("/new")
    assert status == 200, html
    srv.csrf = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    return srv


def stop_server(srv: Server) -> None:
    srv.proc.send_signal(signal.SIGINT)
    try:
        code = srv.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        raise AssertionError("lorakit serve did not stop within 10 s of SIGINT") from None
    assert code == 0, srv.proc.stderr.read() if srv.proc.stderr else code


# the stand-in trainer prints real recorded sd-scripts output (tests/fixtures/sdscripts)
REPLAY = {
    "FAKE_REPLAY": str(FIXTURES / "sdxl_success.log"),
    "FAKE_CHUNK": "600",
    "FAKE_DELAY": "0.03",
    "FAKE_LORA": "1",
    "FAKE_SAMPLE": "1",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("serve"), fake=REPLAY)
    yield srv
    stop_server(srv)


def train_body(srv: Server, *overrides: str) -> dict[str, Any]:
    return {
        "preset": "comic-style",
        "data": str(EXAMPLE),
        "overrides": [f"model.checkpoint={srv.env['FAKE_CKPT']}", *overrides],
    }


def artifacts_dir() -> Path:
    """Where screenshots go: $LORAKIT_TEST_ARTIFACTS, else a fresh temporary folder."""
    import tempfile

    where = os.environ.get("LORAKIT_TEST_ARTIFACTS")
    path = Path(where) if where else Path(tempfile.gettempdir()) / "lorakit-serve-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path
