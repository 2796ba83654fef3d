"""What every request must pass: loopback Host, a token beyond loopback, Origin + CSRF token +
JSON on state-changing requests, run ids by exact name, paths under --root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.conftest import Server, start_server, stop_server, train_body


def test_foreign_host_header_is_refused(server: Server) -> None:
    status, out = server.get("/api/runs", headers={"Host": "evil.example:80"})
    assert status == 400 and "Host" in out["error"]
    status, _ = server.get("/api/runs", headers={"Host": f"localhost:{server.port}"})
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Origin": "http://evil.example"}, 403),  # a cross-site page
        ({"X-CSRF-Token": "forged"}, 403),  # no token from one of our pages
        ({"Content-Type": "text/plain"}, 415),  # what a cross-site form could send
    ],
)
def test_state_changes_need_same_origin_csrf_and_json(server: Server, headers: dict[str, str], code: int) -> None:
    before = sorted(server.runs.iterdir()) if server.runs.exists() else []
    status, _ = server.post("/api/runs", train_body(server), headers=headers)
    assert status == code
    assert (sorted(server.runs.iterdir()) if server.runs.exists() else []) == before


@pytest.mark.parametrize("ref", ["..%2F..%2Fetc", "%2e%2e", "..", "%2Fetc%2Fpasswd", "last"])
def test_run_ids_are_exact_folder_names_only(server: Server, ref: str) -> None:
    status, _ = server.get(f"/api/runs/{ref}")
    assert status == 404


def test_paths_outside_the_roots_are_refused(server: Server) -> None:
    status, out = server.get("/api/dataset?path=/etc")
    assert status == 400 and "outside the folders" in out["error"]
    status, out = server.post("/api/validate", {**train_body(server), "data": "/etc"})
    assert status == 400 and "--root" in out["error"]
    status, out = server.post("/api/validate", train_body(server, "model.checkpoint=/etc/passwd"))
    assert status == 400 and "outside the folders" in out["error"]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("remote"), "--host", "0.0.0.0")
    yield srv
    stop_server(srv)


def test_a_remote_bind_refuses_requests_without_the_token(remote: Server) -> None:
    assert remote.token, "a non-loopback bind prints a generated token"
    anon = Server(remote.proc, remote.url, remote.tmp, remote.env, remote.runs, port=remote.port)
    for path in ("/runs", "/api/runs", "/static/app.js", "/api/gpus"):
        status, _ = anon.get(path)
        assert status == 401, path
    status, _ = anon.get("/api/runs", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = remote.get("/api/runs")  # Bearer
    assert status == 200
    # the printed URL: ?token= sets an HttpOnly SameSite=Strict cookie and drops the token from the URL
    status, _, headers = anon.request("GET", f"/runs?token={remote.token}")
    assert status == 303 and headers["location"] == "/runs"
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    cookie = headers["set-cookie"].split(";")[0]
    status, _ = anon.get("/runs", headers={"Cookie": cookie})
    assert status == 200


def test_the_serve_extra_missing_is_one_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from lorakit.cli.main import main; sys.argv = ['lorakit', 'serve', '--port', '0']; main()"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 3
    assert "lorakit[serve]" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/validate", {"preset": "comic-style", "overrides": 5}),
        ("/api/validate", {"preset": ["comic-style"]}),
        ("/api/vram-check", {"preset": "comic-style", "gpu": "x"}),
        ("/api/runs", [1, 2]),
    ],
)
def test_malformed_bodies_are_one_clear_400(server: Server, path: str, body: object) -> None:
    status, out = server.post(path, body)
    assert status == 400 and out["error"] and "internal error" not in out["error"]


def test_malformed_query_is_a_400(server: Server) -> None:
    status, out = server.get("/api/runs?limit=lots")
    assert status == 400 and "whole number" in out["error"]
