"""The processes ``lorakit serve`` starts: ``lorakit train``, ``lorakit resume`` and
``lorakit queue run``, each a child ``python -m lorakit ...`` exactly as a user would type it
(docs/serve.md, "How a training started from the web runs").

Children run in their own session (Ctrl-C in the server's terminal does not reach them) with
output to a log file (a dead server must not SIGPIPE a run); a restarted server sees their runs
through ``state.json``. Stopping goes through the run's ``lorakit_pid`` (``run/control.py``),
never through this table.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.errors import EnvironmentProblem, LorakitError
from lorakit.run.lock import data_home
from lorakit.serve import _core

if TYPE_CHECKING:
    from lorakit.serve.app import ServeConfig

FOUND_TIMEOUT_S = 60.0
RUNNER_SETTLE_S = 2.0  # a queue runner that exits sooner: its outcome is the answer


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    log: Path
    what: str


class Children:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self.procs: list[Child] = []

    def logs_dir(self) -> Path:
        d = (self.home or data_home()) / "serve" / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def spawn(self, args: list[str], *, cwd: Path, what: str) -> Child:
        """``python -m lorakit ARGS`` in its own session, output to a log file."""
        argv = [sys.executable, "-m", "lorakit", *args]
        log = self.logs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{what}-{os.getpid()}-{len(self.procs)}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log.open("ab") as fh:
            fh.write(f"$ {shlex.join(argv)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        child = Child(proc, log, what)
        self.procs.append(child)
        return child

    def reap(self) -> None:
        self.procs = [c for c in self.procs if c.proc.poll() is None]

    # -- train -------------------------------------------------------------------------------
    def start_training(self, cfg: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
        """`lorakit train` with the form's arguments: checked here first as train checks them
        (config, dataset, trainer, GPU) so a mistake answers at once, then the child."""
        from lorakit.gpu.guard import require_gpu
        from lorakit.serve.app import plan_request

        req = plan_request(cfg, body)
        loaded, _ = _core.resolve_spec(req)
        spec = loaded.spec
        _core.scan_dataset(spec.dataset)
        _core.require_trainer(None)
        require_gpu((spec.training.gpus or [0])[0])
        job = _core.Job(
            id="web", name=spec.output.name, estimate_gib=0.0, cwd=str(cfg.cwd), runs_base=str(cfg.runs),
            preset=req.preset, config=str(req.config) if req.config else None, overrides=list(req.overrides),
            data=str(req.data) if req.data else None,
        )  # fmt: skip
        flags = ["--quiet"] + [f"--{f}" for f in ("force", "fastest", "auto-fit") if body.get(f.replace("-", "_"))]
        job.started = time.time()
        child = self.spawn(["train", *job.train_args(), *flags], cwd=cfg.cwd, what="train")
        job.pid = child.proc.pid
        run_dir = self._wait_for_run(child, lambda: _core.find_run_dir(job))
        return {"run": run_dir.name, "pid": child.proc.pid, "log": str(child.log)}

    def resume(self, cfg: ServeConfig, run_dir: Path) -> dict[str, Any]:
        """`lorakit resume RUN` after the same refusals it makes first."""
        _core.last_state(run_dir)
        _core.require_trainer(None)
        _core.require_run_gpu(run_dir)
        before = _core.read_state(run_dir).get("lorakit_pid")
        child = self.spawn(["resume", str(run_dir), "--quiet", "--runs-dir", str(cfg.runs)], cwd=cfg.cwd, what="resume")

        def mine() -> Path | None:
            pid = _core.read_state(run_dir).get("lorakit_pid")
            return run_dir if pid == child.proc.pid and pid != before else None

        self._wait_for_run(child, mine)
        return {"run": run_dir.name, "pid": child.proc.pid, "log": str(child.log)}

    def _wait_for_run(self, child: Child, find: Any) -> Path:
        deadline = time.monotonic() + FOUND_TIMEOUT_S
        while time.monotonic() < deadline:
            found = find()
            if found is not None:
                return Path(found)
            if child.proc.poll() is not None:
                found = find()
                if found is not None:
                    return Path(found)
                raise _child_error(child)
            time.sleep(0.05)
        raise EnvironmentProblem(
            f"lorakit started (pid {child.proc.pid}) but no run folder appeared in {FOUND_TIMEOUT_S:.0f} s",
            fix=f"see its output in {child.log}",
        )

    # -- queue runner ------------------------------------------------------------------------
    def queue_runner_pid(self, store: _core.QueueStore) -> int | None:
        """The pid of the `lorakit queue run` holding the queue's runner lock (None: none)."""
        from lorakit.run.lock import file_lock, lock_text  # the one lock (Windows-safe)

        path = store.dir / "runner.lock"
        if not path.exists():
            return None
        with file_lock(path, blocking=False) as free:
            if free:
                return None
        text = lock_text(path)
        return int(text) if text.isdigit() else -1

    def start_queue_runner(self, cfg: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
        """`lorakit queue run [--gpus IDS] [--share]`; its refusals (no GPU, a runner already
        at work) come back as its own error when it exits within a moment."""
        args = ["queue", "run"]
        if body.get("gpus"):
            args += ["--gpus", str(body["gpus"])]
        if body.get("share"):
            args.append("--share")
        child = self.spawn(args, cwd=cfg.cwd, what="queue")
        try:
            code = child.proc.wait(timeout=RUNNER_SETTLE_S)
        except subprocess.TimeoutExpired:
            return {"pid": child.proc.pid, "log": str(child.log), "running": True}
        if code not in (0, 1):
            raise _child_error(child)
        return {"pid": child.proc.pid, "log": str(child.log), "running": False, "exit_code": code,
                "message": "the queue runner worked through the queue and stopped" if code == 0
                else f"the queue runner stopped: a job failed (see {child.log})"}  # fmt: skip

    def stop_queue_runner(self, store: _core.QueueStore) -> dict[str, Any]:
        """SIGINT to the runner, as Ctrl-C in its terminal: it stops placing jobs and forwards
        the stop to the running ones."""
        pid = self.queue_runner_pid(store)
        if pid is None or pid <= 0:
            raise LorakitError("the queue runner is not running", fix="start it first")
        os.kill(pid, signal.SIGINT)
        return {"stopping": pid}


def _child_error(child: Child) -> LorakitError:
    """The child's own `error: ... Fix: ...` lines (exit 2 / 3 before a run folder exists)."""
    text = _core._log_error(child.log) or f"lorakit exited with code {child.proc.returncode}; see {child.log}"
    message, _, fix = text.partition(" Fix: ")
    err = LorakitError(message, fix=fix or None)
    err.exit_code = child.proc.returncode or 2
    return err
