"""The run page's live stream: a new events.jsonl line, the run's state and the trainer's
TensorBoard loss reach a client of /api/runs/{id}/events, and the stream ends with the run."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from lorakit.run.events import Progress, Started
from lorakit.run.reaper import start_ticks
from tests.serve.conftest import Server
from tests.tbwrite import Launch


def make_running_run(runs: Path, name: str, steps: int) -> Path:
    """A run folder as the runner leaves it mid-run; this test's process is its 'lorakit'."""
    run = runs / name
    run.mkdir(parents=True)
    lines = [Started(run_dir=str(run), argv=["sdxl_train_network.py"], total_steps=100).to_json()]
    lines += [Progress(step=s, total=100, avr_loss=1.0 - s / 100).to_json() for s in range(1, steps + 1)]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = {
        "status": "running",
        "lorakit_pid": os.getpid(),
        "lorakit_started": start_ticks(os.getpid()),
        "step": steps,
    }
    (run / "state.json").write_text(json.dumps({**state, "total": 100, "save_state": False}), encoding="utf-8")
    return run


class Stream:
    """An SSE client on a raw socket: messages as they arrive."""

    def __init__(self, srv: Server, path: str) -> None:
        self.sock = socket.create_connection((srv.host, srv.port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n\r\n".encode())
        self.buf = b""
        self.head = False

    def next(self, event: str, timeout: float = 5.0) -> dict[str, str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\n\n" in self.buf.replace(b"\r\n", b"\n"):
                text = self.buf.replace(b"\r\n", b"\n").decode()
                block, _, rest = text.partition("\n\n")
                self.buf = rest.encode()
                if not self.head:
                    self.head = True
                    continue
                # chunked transfer: drop chunk-size lines
                msg = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
                if msg.get("event") == event:
                    return msg
            self.buf += self.sock.recv(65536)
        raise AssertionError(f"no {event!r} message within {timeout} s")

    def close(self) -> None:
        self.sock.close()


def test_new_lines_state_and_tensorboard_loss_arrive_live(server: Server) -> None:
    run = make_running_run(server.runs, "live-20261202-120000", steps=5)
    time.sleep(0.6)  # the runs index refreshes at most twice a second
    status, snap = server.get(f"/api/runs/{run.name}")
    assert status == 200 and snap["status"] == "running"
    assert snap["live"]["step"] == 5 and len(snap["loss_series"]) == 5 and snap["loss_source"] == "progress"
    stream = Stream(server, f"/api/runs/{run.name}/events?from={snap['events_offset']}")
    try:
        assert json.loads(stream.next("runstate")["data"])["status"] == "running"
        with (run / "events.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(Progress(step=6, total=100, avr_loss=0.9).to_json() + "\n")
        msg = stream.next("progress", timeout=2.0)
        assert json.loads(msg["data"])["step"] == 6
        assert int(msg["id"]) == (run / "events.jsonl").stat().st_size
        launch = Launch(run, "20261202120000")
        for step in (1, 2, 3):
            launch.log({"loss/current": 0.5 / step}, step)
        points = json.loads(stream.next("loss", timeout=4.0)["data"])
        assert [p[0] for p in points] == [1, 2, 3] and points[0][1] == 0.5
        state = json.loads((run / "state.json").read_text())
        (run / "state.json").write_text(json.dumps({**state, "status": "done"}), encoding="utf-8")
        stream.next("end", timeout=3.0)
    finally:
        stream.close()
    status, snap = server.get(f"/api/runs/{run.name}")
    assert snap["loss_source"] == "tensorboard" and [p[0] for p in snap["loss_series"]] == [1, 2, 3]
