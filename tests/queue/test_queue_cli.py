"""`lorakit queue` end to end: real `lorakit` processes, real `lorakit train` children running a
fake trainer install (tests/queue/queue_fakes.py), GPU facts given as data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_kohya_dataset
from tests.queue.queue_fakes import FakeInstall

TWO_GPUS = [
    {"index": 0, "total_gib": 24.0, "free_gib": 23.0, "processes": 0, "name": "RTX 4090"},
    {"index": 1, "total_gib": 48.0, "free_gib": 47.0, "processes": 0, "name": "RTX A6000"},
]


class Q:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fake = FakeInstall(tmp / "inst")
        self.home = tmp / "home"
        self.home.mkdir()
        self.data = make_kohya_dataset(tmp / "data", {"10_zzc style": 3})
        self.facts = tmp / "facts.json"
        self.facts.write_text(json.dumps(TWO_GPUS), encoding="utf-8")
        self.env = self.fake.env(self.home)
        self.work = tmp / "work"
        self.work.mkdir()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lorakit", *args],
            cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def add(self, name: str, *extra: str) -> str:
        r = self.cli(
            "queue", "add", "--preset", "comic-style", "--data", str(self.data), "--json",
            "--set", f"model.checkpoint={self.fake.checkpoint}", "--set", f"output.name={name}", "--vram", "12", *extra,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return str(json.loads(r.stdout)["id"])

    def jobs(self) -> dict[str, dict[str, Any]]:
        r = self.cli("queue", "list", "--json")
        assert r.returncode == 0, r.stderr
        return {j["name"]: j for j in json.loads(r.stdout)}

    def run_args(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "lorakit",
            "queue",
            "run",
            "--gpu-facts",
            str(self.facts),
            "--poll",
            "0.2",
            *extra,
        ]


@pytest.fixture
def q(tmp_path: Path) -> Q:
    return Q(tmp_path)


def test_add_validates_like_train_and_lists(q: Q) -> None:
    r = q.cli("queue", "add", "--preset", "no-such-preset", "--data", str(q.data))
    assert r.returncode == 2
    r = q.cli("queue", "add", "--preset", "comic-style", "--data", str(q.tmp / "missing"))
    assert r.returncode == 2
    r = q.cli("queue", "add", "--preset", "comic-style", "--data", str(q.data))  # no model.checkpoint
    assert r.returncode == 2 and "model.checkpoint" in r.stderr
    r = q.cli("queue", "add", "--preset", "comic-style", "--data", str(q.data), "--gpus", "0,x")
    assert r.returncode == 2 and "'x' is not a GPU index" in r.stderr
    assert q.jobs() == {}

    first = q.add("a")
    second = q.add("b", "--gpus", "0,1")
    assert (first, second) == ("1", "2")
    jobs = q.jobs()
    assert jobs["a"]["status"] == "queued" and jobs["a"]["gpus"] is None and jobs["a"]["estimate_gib"] == 12.0
    assert jobs["b"]["gpus"] == [0, 1]
    assert jobs["a"]["data"] == str(q.data) and jobs["a"]["cwd"] == str(q.work)
    assert jobs["a"]["runs_base"] == str(q.work / "runs")
    r = q.cli("queue", "list")
    assert "queued" in r.stdout and "GPU 0,1" in r.stdout and "any GPU" in r.stdout
    # the queue is a file that survives: another process sees it
    assert json.loads((q.home / "lorakit" / "queue" / "queue.json").read_text())["next_id"] == 3


def test_remove(q: Q) -> None:
    q.add("a")
    q.add("b")
    r = q.cli("queue", "remove", "7")
    assert r.returncode == 2 and "no job 7" in r.stderr
    r = q.cli("queue", "remove", "1")
    assert r.returncode == 0 and "removed 1 job(s): 1" in r.stdout
    assert list(q.jobs()) == ["b"]


def test_default_estimate_comes_from_the_spec(q: Q) -> None:
    r = q.cli(
        "queue", "add", "--preset", "comic-style", "--data", str(q.data), "--json",
        "--set", f"model.checkpoint={q.fake.checkpoint}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # the VRAM estimator's figure for this very spec (no second memory model in the queue)
    from lorakit.gpu.estimate import estimate, shape_from_spec
    from lorakit.planning import PlanRequest, resolve_spec

    req = PlanRequest("comic-style", None, (f"model.checkpoint={q.fake.checkpoint}",), q.data, strict_paths=False)
    spec = resolve_spec(req)[0].spec
    assert json.loads(r.stdout)["estimate_gib"] == round(float(estimate(shape_from_spec(spec)).peak_gib), 2)


def test_run_one_by_one_failed_job_is_diagnosed_and_the_queue_moves_on(q: Q) -> None:
    q.fake.plan(
        {
            "oom": {"lines": ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"], "exit": 1},
            "ok": {"sleep": 0.2},
        }
    )
    q.add("oom")
    q.add("ok")
    r = subprocess.run(q.run_args(), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 done, 1 failed, 0 interrupted" in r.stdout
    jobs = q.jobs()
    assert jobs["oom"]["status"] == "failed" and jobs["oom"]["exit_code"] == 1
    assert jobs["oom"]["diagnosis"].startswith("oom: ")
    assert Path(jobs["oom"]["run_dir"]).parent == q.work / "runs"
    assert jobs["ok"]["status"] == "done" and jobs["ok"]["exit_code"] == 0 and jobs["ok"]["diagnosis"] is None
    assert (Path(jobs["ok"]["run_dir"]) / "ok.safetensors").is_file()
    rec = q.fake.records()
    # one by one: the second started after the first ended, both on GPU 0
    assert rec["ok"]["start"] >= rec["oom"]["end"]
    assert rec["ok"]["cuda_visible"] == "0" and "--gpu_ids=0" in rec["ok"]["accelerate"]
    assert rec["ok"]["device_order"] == "PCI_BUS_ID" and rec["ok"]["queue_job"] == "2"
    r = q.cli("queue", "list")
    assert "oom: " in r.stdout and "run: " in r.stdout


def test_run_side_by_side_and_multi_gpu_job_waits_for_both(q: Q) -> None:
    q.fake.plan({"a": {"sleep": 1.5}, "b": {"sleep": 1.5}, "dp": {"sleep": 0.1}, "huge": {}})
    q.add("a")
    q.add("b")
    q.add("dp", "--gpus", "0,1")
    r = q.cli(
        "queue", "add", "--preset", "comic-style", "--data", str(q.data), "--json", "--vram", "100",
        "--set", f"model.checkpoint={q.fake.checkpoint}", "--set", "output.name=huge",
    )  # fmt: skip
    assert r.returncode == 0
    r = subprocess.run(q.run_args("--gpus", "all"), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr  # `huge` never fits
    jobs, rec = q.jobs(), q.fake.records()
    assert {n: j["status"] for n, j in jobs.items()} == {"a": "done", "b": "done", "dp": "done", "huge": "failed"}
    assert jobs["huge"]["diagnosis"].startswith("never fits: needs 100.0 GiB")
    assert "huge" not in rec
    # a and b ran at the same time, on different GPUs (best fit: a → the 24 GB card)
    assert jobs["a"]["assigned_gpus"] == [0] and jobs["b"]["assigned_gpus"] == [1]
    assert rec["a"]["start"] < rec["b"]["end"] and rec["b"]["start"] < rec["a"]["end"]
    # dp needed both GPUs: it started after both ended, as one data-parallel run
    assert rec["dp"]["start"] >= max(rec["a"]["end"], rec["b"]["end"])
    assert rec["dp"]["accelerate"][:2] == ["--multi_gpu", "--num_processes=2"]
    assert "--gpu_ids=0,1" in rec["dp"]["accelerate"]
    assert "job 3: waiting: needs 12.0 GiB" in r.stdout


def test_gpu_locked_by_another_lorakit_run_is_left_alone(q: Q) -> None:
    q.fake.plan({"a": {"sleep": 0.1}})
    q.add("a")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from lorakit.run.lock import acquire_gpus; l = acquire_gpus([0], run='elsewhere'); "
         "print('locked', flush=True); sys.stdin.readline()"],
        env=q.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    runner = subprocess.Popen(q.run_args(), cwd=q.work, env=q.env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while "GPU 0 runs another lorakit run" not in (q.jobs()["a"].get("waiting") or ""):
            assert time.time() < deadline, "job never reported waiting for the locked GPU"
            time.sleep(0.2)
        assert q.fake.records() == {}
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=20)
        assert runner.wait(timeout=120) == 0
    finally:
        for p in (holder, runner):
            if p.poll() is None:
                p.kill()
    assert q.jobs()["a"]["status"] == "done"


def test_second_queue_runner_is_refused_and_sigint_interrupts(q: Q) -> None:
    q.fake.plan({"long": {"sleep": 60}, "next": {}})
    q.add("long")
    q.add("next")
    runner = subprocess.Popen(q.run_args(), cwd=q.work, env=q.env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while q.jobs()["long"]["status"] != "running" or not list((q.work / "runs").glob("long-*/state.json")):
            assert time.time() < deadline
            time.sleep(0.2)
        r = subprocess.run(q.run_args(), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 3 and f"already being run (by pid {runner.pid})" in r.stderr
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=90) == 130
    finally:
        if runner.poll() is None:
            runner.kill()
    jobs = q.jobs()
    assert jobs["long"]["status"] == "interrupted" and jobs["long"]["exit_code"] == 130
    assert jobs["next"]["status"] == "queued"  # the rest waits for the next queue run
    # the child lorakit train is gone
    pid = jobs["long"]["pid"]
    assert pid is None


def test_restarted_runner_settles_a_job_whose_child_died(q: Q) -> None:
    """A queue.json left with a 'running' job whose process is gone (runner killed with -9)."""
    q.add("a")
    qfile = q.home / "lorakit" / "queue" / "queue.json"
    data = json.loads(qfile.read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data["jobs"][0].update(status="running", pid=dead.pid, started=time.time(), assigned_gpus=[0])
    qfile.write_text(json.dumps(data))
    r = subprocess.run(q.run_args(), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, r.stdout + r.stderr
    job = q.jobs()["a"]
    assert job["status"] == "interrupted"
    assert "queue runner stopped while the job ran" in job["diagnosis"]
    assert os.path.exists(qfile)


FAKE_COMFYUI = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
log = open(sys.argv[1], "a")
state = {"freed": False}
GIB = 1024 ** 3

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _json(self, data):
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        free = 20 * GIB if state["freed"] else 4 * GIB
        self._json({"devices": [{"index": 0, "vram_free": free, "vram_total": 24 * GIB}]})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state["freed"] = True
        log.write(json.dumps({"path": self.path, "t": time.time()}) + "\n")
        log.flush()
        self._json({})

srv = HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def test_comfyui_is_asked_to_unload_before_the_job(q: Q) -> None:
    calls = q.tmp / "comfy.jsonl"
    server = subprocess.Popen([sys.executable, "-c", FAKE_COMFYUI, str(calls)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        q.fake.plan({"a": {}})
        q.add("a", "--set", f"comfyui.url=http://127.0.0.1:{port}")
        r = subprocess.run(q.run_args(), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        server.kill()
        server.wait()
    posts = [json.loads(line) for line in calls.read_text().splitlines()]
    assert posts and posts[0]["path"] == "/free"
    assert posts[0]["t"] < q.fake.records()["a"]["start"]
    assert f"job 1: ComfyUI at http://127.0.0.1:{port} unloaded its models: 16.0 GiB freed" in r.stdout
