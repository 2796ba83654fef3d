#!/usr/bin/env python3
"""Launch commands and measure them: peak GPU memory of each process tree (NVML, polled)
and step timing from sd-scripts' tqdm ``steps:`` progress lines.

Used as a library by ``campaign.py`` (several jobs at once, one poller) and as a CLI::

    python scripts/gpu/measure.py --name NAME --log run.log --out row.json -- CMD ARGS...

The child's stdout and stderr go, merged and byte for byte (tqdm's ``\\r`` kept), to the log.
Memory: every ``--interval`` seconds NVML's per-process ``usedGpuMemory`` is summed over the
job's process tree (the launcher and the trainer it spawns); the peak is kept, split into the
part before the first training step (load, caching) and after it. If NVML cannot attribute
memory to processes (PIDs not visible), the device-wide ``memory.used`` is used and the row
says so (``mem_method``). Timing: the wall time at which each ``steps: ... N/M`` first appears;
steady s/step is the least-squares slope over steps >= ``steady_from`` (default 2).
Only the standard library is needed (NVML through ``pynvml`` from nvidia-ml-py when present).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3

# "steps:  40%|████      | 4/10 [00:05<00:07,  1.20s/it, avr_loss=0.123]"
STEP_RE = re.compile(rb"steps:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)\s*\[([^\]\r\n]*)\]")
LOSS_RE = re.compile(rb"avr_loss=([-+0-9.eE]+|nan|inf|-inf|NaN|Inf)")
OOM_RE = re.compile(rb"OutOfMemoryError|CUDA out of memory|out of memory", re.I)


# --------------------------------------------------------------------------- log parsing


@dataclass
class StepParser:
    """Incremental parser of a trainer's merged output; call feed() with raw chunks."""

    t0: float
    step_times: dict[int, float] = field(default_factory=dict)
    total_steps: int | None = None
    progress_start: float | None = None  # first "steps: 0%" line
    losses: dict[int, float] = field(default_factory=dict)  # step -> avr_loss shown at that step
    nan_seen: bool = False
    oom_seen: bool = False
    _buf: bytes = b""

    def feed(self, chunk: bytes, now: float) -> None:
        data = self._buf + chunk
        # split on both \r and \n; keep the unfinished tail for the next chunk
        parts = re.split(rb"[\r\n]", data)
        self._buf = parts.pop()
        if len(self._buf) > 65536:
            self._buf = self._buf[-65536:]
        for line in parts:
            self._line(line, now)
        # tqdm *starts* each refresh with \r, so a finished progress line sits in the tail until the
        # next refresh arrives: read it now (re-reading it later changes nothing)
        if self._buf.endswith(b"]") and STEP_RE.search(self._buf):
            self._line(self._buf, now)

    def close(self, now: float) -> None:
        if self._buf:
            self._line(self._buf, now)
            self._buf = b""

    def _line(self, line: bytes, now: float) -> None:
        if OOM_RE.search(line):
            self.oom_seen = True
        m = STEP_RE.search(line)
        if not m:
            return
        n, total = int(m.group(1)), int(m.group(2))
        self.total_steps = total
        if self.progress_start is None:
            self.progress_start = now
        if n > 0 and n not in self.step_times:
            self.step_times[n] = now
        lm = LOSS_RE.search(line)
        if lm:
            txt = lm.group(1).decode().lower()
            try:
                val = float(txt)
            except ValueError:
                val = float("nan")
            if val != val or val in (float("inf"), float("-inf")):
                self.nan_seen = True
            if n > 0:
                self.losses[n] = val

    def summary(self, steady_from: int = 2) -> dict[str, Any]:
        st = sorted(self.step_times.items())
        out: dict[str, Any] = {
            "steps_seen": st[-1][0] if st else 0,
            "total_steps": self.total_steps,
            "startup_s": round(self.progress_start - self.t0, 2) if self.progress_start else None,
            "time_to_first_step_s": round(st[0][1] - self.t0, 2) if st and st[0][0] == 1 else None,
            "first_step_s": (
                round(st[0][1] - self.progress_start, 3) if st and st[0][0] == 1 and self.progress_start else None
            ),
            "s_per_step": None,
            "steady_points": 0,
            "last_loss": _jsonable(self.losses[max(self.losses)]) if self.losses else None,
            "nan_loss": self.nan_seen,
        }
        pts = [(n, t) for n, t in st if n >= steady_from]
        out["steady_points"] = len(pts)
        if len(pts) >= 2:
            mn = sum(n for n, _ in pts) / len(pts)
            mt = sum(t for _, t in pts) / len(pts)
            den = sum((n - mn) ** 2 for n, _ in pts)
            out["s_per_step"] = round(sum((n - mn) * (t - mt) for n, t in pts) / den, 4) if den else None
        return out


def _jsonable(x: float) -> float | str:
    """Non-finite floats as strings ("nan", "inf", "-inf"): strict JSON has no NaN."""
    return x if x == x and abs(x) != float("inf") else str(x)


def parse_log_bytes(data: bytes) -> dict[str, Any]:
    """Offline check of a finished log (no timestamps): steps, losses, nan, oom."""
    p = StepParser(t0=0.0)
    p.feed(data, 0.0)
    p.close(0.0)
    s = p.summary()
    return {
        "steps_seen": s["steps_seen"],
        "total_steps": s["total_steps"],
        "last_loss": s["last_loss"],
        "nan_loss": s["nan_loss"],
        "oom": p.oom_seen,
    }


# --------------------------------------------------------------------------- process trees


def _ppid_map() -> dict[int, int]:
    m: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
            # pid (comm) state ppid ...; comm may hold spaces/parens: split after the last ')'
            rest = s[s.rindex(b")") + 2 :].split()
            m[int(d)] = int(rest[1])
        except (OSError, ValueError, IndexError):
            continue
    return m


def tree_pids(root: int, ppids: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, pp in ppids.items():
        children.setdefault(pp, []).append(pid)
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# --------------------------------------------------------------------------- NVML poller


class Nvml:
    def __init__(self, index: int = 0) -> None:
        self.ok = False
        self.error = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nv = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.ok = True
        except Exception as e:  # no NVML: still runs, memory fields stay None
            self.error = f"{type(e).__name__}: {e}"

    def processes(self) -> dict[int, int]:
        if not self.ok:
            return {}
        out: dict[int, int] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                for p in getattr(self.nv, fn)(self.h):
                    used = p.usedGpuMemory
                    if used is not None and used < (1 << 60):
                        out[p.pid] = max(out.get(p.pid, 0), int(used))
            except Exception:
                continue
        return out

    def device_used(self) -> int | None:
        if not self.ok:
            return None
        try:
            return int(self.nv.nvmlDeviceGetMemoryInfo(self.h).used)
        except Exception:
            return None

    def device_total(self) -> int | None:
        if not self.ok:
            return None
        try:
            return int(self.nv.nvmlDeviceGetMemoryInfo(self.h).total)
        except Exception:
            return None


class Job:
    """One measured child process. Start with start(); the Poller updates its peaks."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = env
        self.timeout_s = timeout_s
        self.meta = meta or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0
        self.t_end: float | None = None
        self.parser: StepParser | None = None
        self.peak_tree = 0
        self.peak_setup = 0
        self.peak_train = 0
        self.peak_rss = 0
        self.cur_rss = 0
        self.peak_device_alone: int | None = None
        self.pid_matched = False
        self.killed_reason: str | None = None
        self.max_concurrent = 1
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- process
    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.parser = StepParser(t0=self.t0)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.parser is not None
        fd = self.proc.stdout.fileno()
        with open(self.log_path, "wb") as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                now = time.time()
                log.write(chunk)
                log.flush()
                with self._lock:
                    self.parser.feed(chunk, now)
        with self._lock:
            self.parser.close(time.time())

    def poll(self) -> int | None:
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is not None and self.t_end is None:
            self.t_end = time.time()
        return rc

    def kill(self, reason: str) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killed_reason = reason
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        assert self.proc is not None
        rc = self.proc.wait()
        if self._reader is not None:
            self._reader.join(30)
        if self.t_end is None:
            self.t_end = time.time()
        return rc

    @property
    def in_training(self) -> bool:
        return bool(self.parser and self.parser.progress_start is not None)

    # -- result
    def row(self) -> dict[str, Any]:
        assert self.parser is not None
        rc = self.proc.returncode if self.proc else None
        s = self.parser.summary(int(self.meta.get("steady_from", 2)))
        status = "ok" if rc == 0 else "error"
        if self.parser.oom_seen and rc != 0:
            status = "oom"
        elif self.killed_reason:
            status = self.killed_reason
        if s["nan_loss"] and status == "ok":
            status = "ok_nan"
        batch = self.meta.get("config", {}).get("batch")
        ips = round(batch / s["s_per_step"], 3) if batch and s["s_per_step"] else None

        def g(b: int | None) -> float | None:
            return round(b / GIB, 2) if b else None

        row = {
            "name": self.name,
            "status": status,
            "rc": rc,
            **({"config": self.meta["config"]} if "config" in self.meta else {}),
            "peak_gib": g(self.peak_tree) if self.pid_matched else g(self.peak_device_alone),
            "peak_setup_gib": g(self.peak_setup) if self.pid_matched else None,
            "peak_train_gib": g(self.peak_train) if self.pid_matched else None,
            "mem_method": "nvml_per_process_tree" if self.pid_matched else "nvml_device_used",
            "peak_host_rss_gib": g(self.peak_rss),
            **s,
            "images_per_s": ips,
            "wall_s": round((self.t_end or time.time()) - self.t0, 2),
            "max_concurrent_jobs": self.max_concurrent,
            "log": self.log_path.name,
            "argv": self.argv,
        }
        return row


class Poller(threading.Thread):
    """Polls NVML every ``interval`` s and updates each registered job's peaks."""

    def __init__(self, interval: float = 0.15, device_index: int = 0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.nvml = Nvml(device_index)
        self.jobs: list[Job] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.device_peak = 0
        self.samples = 0

    def add(self, job: Job) -> None:
        with self._lock:
            self.jobs.append(job)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.time()
            try:
                self.sample()
            except Exception as e:  # keep polling whatever happens
                print(f"[measure] poll error: {e}", file=sys.stderr)
            self._halt.wait(max(0.0, self.interval - (time.time() - t)))

    def sample(self) -> None:
        with self._lock:
            live = [j for j in self.jobs if j.proc is not None and j.t_end is None and j.proc.poll() is None]
        used = self.nvml.device_used()
        if used is not None:
            self.device_peak = max(self.device_peak, used)
        self.samples += 1
        if not live:
            return
        procs = self.nvml.processes()
        ppids = _ppid_map()
        for j in live:
            assert j.proc is not None
            pids = tree_pids(j.proc.pid, ppids)
            mem = sum(v for p, v in procs.items() if p in pids)
            if mem:
                j.pid_matched = True
            j.peak_tree = max(j.peak_tree, mem)
            if j.in_training:
                j.peak_train = max(j.peak_train, mem)
            else:
                j.peak_setup = max(j.peak_setup, mem)
            j.cur_rss = sum(rss_bytes(p) for p in pids)
            j.peak_rss = max(j.peak_rss, j.cur_rss)
            j.max_concurrent = max(j.max_concurrent, len(live))
            if len(live) == 1 and used is not None:
                j.peak_device_alone = max(j.peak_device_alone or 0, used)


def run_one(job: Job, interval: float = 0.15) -> dict[str, Any]:
    poller = Poller(interval)
    poller.add(job)
    job.start()
    poller.start()
    try:
        deadline = job.t0 + job.timeout_s if job.timeout_s else None
        while job.poll() is None:
            if deadline and time.time() > deadline:
                job.kill("timeout")
            time.sleep(0.2)
        job.wait()
    finally:
        poller.stop()
        poller.join(2)
    row = job.row()
    if not poller.nvml.ok:
        row["nvml_error"] = poller.nvml.error
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="job")
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="write the JSON row here (default: stdout only)")
    ap.add_argument("--cwd", default=None)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--interval", type=float, default=0.15)
    ap.add_argument("--batch", type=int, default=None, help="batch size, for images/s")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command given (put it after --)")
    meta: dict[str, Any] = {"config": {"batch": a.batch}} if a.batch else {}
    job = Job(a.name, cmd, a.log, cwd=a.cwd, timeout_s=a.timeout, meta=meta)
    row = run_one(job, a.interval)
    text = json.dumps(row, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    print(text)
    return 0 if row["rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
