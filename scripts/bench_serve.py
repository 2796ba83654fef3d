"""Benchmark of `lorakit serve`: page answer times with 1,000 runs, and live-update latency.

    python scripts/bench_serve.py [--runs 1000] [--events 400] [--repeat 20]

Makes N synthetic run folders (state.json as the runner writes it + an events.jsonl of
``--events`` lines: started, progress..., finished) in a temporary folder, starts the installed
`lorakit serve` on 127.0.0.1 as a child process, then:
- times each page and API answer (first = cold, then median / p95 / max of --repeat warm calls);
- times the runs list after one run's state.json changed (the index re-reads one run);
- live latency: a running run (this process stands in as its lorakit), an SSE client on its
  events stream, a progress line appended; the time until the client has it (--repeat times).
Prints a Markdown table (docs/serve.md keeps the figures).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_runs(base: Path, n: int, events: int) -> list[str]:
    t0 = 1796000000.0
    names = []
    for i in range(n):
        name = f"run{i % 7}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(t0 + 60 * i))}"
        d = base / name
        d.mkdir(parents=True)
        lines = [json.dumps({"t": t0, "type": "started", "run_dir": str(d), "argv": ["x"], "total_steps": events})]
        for s in range(1, events - 1):
            lines.append(json.dumps({"t": t0 + s, "type": "progress", "step": s, "total": events, "avr_loss": 0.1}))
        lines.append(json.dumps({"t": t0 + events, "type": "finished", "status": "done", "exit_code": 0}))
        (d / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        state = {"status": "done", "step": events - 2, "total": events, "started_at": t0 + 60 * i, "exit_code": 0}
        (d / "state.json").write_text(json.dumps(state), encoding="utf-8")
        names.append(name)
    return names


def get(host: str, port: int, path: str) -> float:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    t = time.perf_counter()
    conn.request("GET", path)
    res = conn.getresponse()
    res.read()
    ms = (time.perf_counter() - t) * 1000
    conn.close()
    assert res.status == 200, (path, res.status)
    return ms


def live_latency(host: str, port: int, run: Path, repeat: int) -> list[float]:
    from lorakit.run.reaper import start_ticks

    lines = [json.dumps({"t": 0, "type": "started", "run_dir": str(run), "argv": ["x"], "total_steps": 1000})]
    (run).mkdir()
    (run / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = {"status": "running", "lorakit_pid": os.getpid(), "lorakit_started": start_ticks(os.getpid())}
    (run / "state.json").write_text(json.dumps(state), encoding="utf-8")
    time.sleep(1.1)  # the index refreshes at most twice a second
    size = (run / "events.jsonl").stat().st_size
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(f"GET /api/runs/{run.name}/events?from={size} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    buf = b""
    out = []
    for step in range(1, repeat + 1):
        time.sleep(0.3)
        line = json.dumps({"t": time.time(), "type": "progress", "step": step, "total": 1000}) + "\n"
        t = time.perf_counter()
        with (run / "events.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(line)
        while f'"step": {step},'.encode() not in buf:
            buf += sock.recv(65536)
        out.append((time.perf_counter() - t) * 1000)
        buf = b""
    sock.close()
    return out


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return f"{statistics.median(xs):.1f} | {p95:.1f} | {xs[-1]:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--big", type=int, default=20000, help="events of one long run (its page is timed too)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lorakit-bench-serve-"))
    runs = tmp / "runs"
    t = time.perf_counter()
    names = make_runs(runs, args.runs, args.events)
    big = make_runs(tmp / "big", 1, args.big)[0]
    (tmp / "big" / big).rename(runs / f"long-{big.split('-', 1)[1]}")
    big = f"long-{big.split('-', 1)[1]}"
    print(f"{args.runs} runs × {args.events} events written in {time.perf_counter() - t:.1f} s ({tmp})")
    env = dict(os.environ, LORAKIT_HOME=str(tmp / "home"))
    argv = ["lorakit", "serve", "--port", "0", "--runs", str(runs), "--root", str(REPO / "examples")]
    proc = subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    t = time.perf_counter()
    m = re.match(r"lorakit serve: http://([\d.]+):(\d+)/", proc.stdout.readline())
    assert m, "no URL"
    host, port = m.group(1), int(m.group(2))
    while True:  # the first answer after the index is built
        try:
            get(host, port, "/api/runs?limit=1")
            break
        except (ConnectionError, AssertionError):
            time.sleep(0.05)
    print(f"server answering {time.perf_counter() - t:.2f} s after start\n")
    newest = names[-1]
    paths = [
        ("/runs (newest 100 of all)", "/runs"),
        ("/api/runs?limit=100", "/api/runs?limit=100"),
        ("/api/runs?limit=500", "/api/runs?limit=500"),
        (f"/runs/{{run}} ({args.events} events)", f"/runs/{newest}"),
        ("/api/runs/{run}", f"/api/runs/{newest}"),
        (f"/runs/{{run}} ({args.big} events)", f"/runs/{big}"),
        ("/new", "/new"),
        ("/queue", "/queue"),
        ("/gpus", "/gpus"),
        ("/dataset?path=examples/comic-sample", f"/dataset?path={REPO / 'examples' / 'comic-sample'}"),
    ]
    print("| request | first (ms) | median (ms) | p95 (ms) | max (ms) |\n|---|---|---|---|---|")
    try:
        for label, path in paths:
            first = get(host, port, path)
            warm = [get(host, port, path) for _ in range(args.repeat)]
            print(f"| {label} | {first:.1f} | {stats(warm)} |")
        touched = []
        for i in range(args.repeat):
            st = runs / names[i] / "state.json"
            st.write_text(st.read_text(encoding="utf-8").replace('"done"', '"done" '), encoding="utf-8")
            time.sleep(0.55)
            touched.append(get(host, port, "/api/runs?limit=100"))
        print(f"| /api/runs?limit=100 after one run changed | - | {stats(touched)} |")
        lat = live_latency(host, port, runs / "live-20300101-000000", args.repeat)
        print(f"| live: progress line appended → SSE client has it | - | {stats(lat)} |")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    print(f"\n{sys.platform}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.repeat} warm calls each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
