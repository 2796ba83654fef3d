"""GPU smoke for issue 16 (`lorakit serve`): a real training started from the web page finishes
and its page shows the LoRA.

Imported by the smoke driver (scripts/gpu/smoke.py on sys.path as ``smoke``) after its
``synth-model sdxl`` and ``dataset prepare`` steps. It starts the installed ``lorakit serve``
(from the wheel, with the serve extra's packages), then does what the "New training" page does:
GET /new for the page's CSRF token, POST /api/runs with the form's JSON (Origin and
X-CSRF-Token headers, as app.js sends them), follows /api/runs/{id} to the end, and fetches the
run page. Its own lorakit home (own GPU lock), so it may run beside the other steps' trainings.
Expected: ~40-60 s (lorakit + trainer start-up ~25 s, 6 steps of the synthetic SDXL model).

Wheels the serve extra needs on the device (no internet there; add them to .whl-lk/):
    starlette==1.10.0 anyio==4.16.0 idna==3.20 typing_extensions (if the image lacks it)
    uvicorn==0.54.0 click==8.5.1 h11==0.16.0 jinja2==3.1.6 markupsafe==3.0.4
(pip download --no-deps --only-binary=:all: --python-version 3.12 ... as scripts/gpu/wheels.txt says).
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import smoke as S

STEPS: list[tuple[str, Callable[[], None]]] = []


class Client:
    """HTTP as the page's JS does it: JSON bodies, same Origin, the page's CSRF token."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.csrf = ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {}
        data = None
        if method != "GET":
            headers = {
                "Content-Type": "application/json",
                "Origin": f"http://{self.host}:{self.port}",
                "X-CSRF-Token": self.csrf,
            }
            data = json.dumps(body or {}).encode()
        t = time.perf_counter()
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        raw = res.read()
        ms = round((time.perf_counter() - t) * 1000, 1)
        conn.close()
        out: Any = (
            json.loads(raw) if "json" in (res.getheader("content-type") or "") else raw.decode("utf-8", "replace")
        )
        return res.status, out, ms


def step_serve_train() -> None:
    runs = S.WORK / "runs-serve"
    log = open(S.LOGS / "serve.log", "w", encoding="utf-8")  # noqa: SIM115
    argv = ["lorakit", "serve", "--port", "0", "--runs", str(runs), "--root", str(S.BASE)]
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    t0 = time.time()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=log, text=True, env=S.user_env("home-serve"), cwd=S.WORK
    )  # fmt: skip
    figures: dict[str, Any] = {}
    ok = False
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        log.write(first)
        m = re.match(r"lorakit serve: http://([\d.]+):(\d+)/", first)
        if m is None:
            S.row("serve: train from the page", False, error=f"no URL printed: {first!r}")
            return
        c = Client(m.group(1), int(m.group(2)))
        figures["serve_up_s"] = round(time.time() - t0, 2)
        status, html, figures["new_page_ms"] = c.call("GET", "/new")
        c.csrf = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
        sets = S.sdxl_sets()[1::2]  # ["--set", "k=v", ...] → the form's override rows
        body = {"preset": "comic-style", "data": str(S.DATA), "overrides": [*sets, "training.max_steps=6"]}
        status, out, figures["start_ms"] = c.call("POST", "/api/runs", body)
        if status != 202:
            S.row("serve: train from the page", False, status=status, answer=out, **figures)
            return
        run = out["run"]
        holder = None
        info: dict[str, Any] = {}
        while time.time() - t0 < 300:
            status, info, _ = c.call("GET", f"/api/runs/{run}")
            if holder is None and info.get("status") == "running":
                _, gpus, figures["gpus_ms"] = c.call("GET", "/api/gpus")
                holder = [g.get("holder") for g in gpus.get("gpus", []) if g.get("holder")]
            if info.get("status") not in ("running", None):
                break
            time.sleep(1.0)
        status, page, figures["run_page_ms"] = c.call("GET", f"/runs/{run}")
        _, _, figures["runs_page_ms"] = c.call("GET", "/runs")
        lora = info.get("lora")
        figures.update(
            run=run,
            status=info.get("status"),
            lora=lora,
            loss_points=len(info.get("loss_series") or []),
            loss_source=info.get("loss_source"),
            gpu_holder_seen=bool(holder),
            seconds=round(time.time() - t0, 1),
        )
        ok = info.get("status") == "done" and bool(lora) and status == 200 and str(lora) in page
        ok = ok and bool(figures["loss_points"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            figures["serve_exit"] = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            figures["serve_exit"] = "killed"
        log.close()
        S.copy_run_logs(S.one_run(runs), "serve")
    S.row("serve: train from the page", ok and figures.get("serve_exit") == 0, **figures)


STEPS.append(("serve: train from the page", step_serve_train))
