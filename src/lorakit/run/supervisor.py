"""The supervisor of one trainer child (one reason for its length: it is the loop that reads the
child's output, parses it into events, watches speed, disk, GPU and stalls, and stops the child;
splitting the loop would scatter its state). :func:`supervise` is its entry point."""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from lorakit.events import (
    EVENTS_FILE,
    Checkpoint,
    EpochStarted,
    ErrorEvent,
    Event,
    EventLog,
    Progress,
    Sample,
    Started,
    StateSaved,
    WarningEvent,
)
from lorakit.kohya.logparse import LogParser
from lorakit.kohya.tblog import ScalarLog
from lorakit.run import folder
from lorakit.run.diagnose import with_fix
from lorakit.run.disk import DiskWatch
from lorakit.run.losslog import open_scalars
from lorakit.run.reaper import start_ticks
from lorakit.run.signals import Signals as Signals
from lorakit.run.watch import GpuReading, GpuSampler, SpeedWatch

if TYPE_CHECKING:
    pass
from lorakit.run.child import _reader, _spawn, _Stopper, _Watchdog
from lorakit.run.types import DISK_FIX, SAMPLE_SUFFIXES, Child, ChildResult, Options, Snapshot


class _Supervisor:
    def __init__(self, child: Child, run_dir: Path, log: EventLog, opts: Options) -> None:
        self.child, self.run_dir, self.log, self.opts = child, run_dir, log, opts
        self.parser = LogParser()
        self.watch = SpeedWatch(
            batch_size=opts.batch_size,
            expected_s_per_step=opts.expected_s_per_step,
            total=opts.total_steps or 0,
        )
        self.gpu = GpuSampler(opts.gpu_index) if opts.gpu_index is not None else None
        self.gpu_reading: GpuReading | None = None
        self.gpu_baseline: int | None = None
        self.gpu_peak: int | None = None
        self.losses: list[float] = []
        self.scalars: ScalarLog | None = None  # <run>/logs, opened at the first scan (imports tensorboard)
        self.step_losses: list[float] = []
        self.warnings: list[WarningEvent] = []
        self.last_checkpoint: str | None = None
        self.last_state: str | None = None
        # images already in sample/ belong to an earlier launch of this run (resume)
        sample_dir = run_dir / "sample"
        self.samples_seen: set[str] = {p.name for p in sample_dir.iterdir()} if sample_dir.is_dir() else set()
        self._step_offset = 0  # run step − trainer bar step (a resumed launch; set by the transform)
        self._total: int | None = None  # the run's total when the transform maps it
        self.stopper: _Stopper | None = None
        self.signals = opts.signals if opts.signals is not None else Signals()
        self._problems: set[str] = set()
        self._recreated = 0
        self.disk = DiskWatch(run_dir, opts.disk) if opts.disk is not None else None
        self._last_disk = 0.0
        self._last_output = time.monotonic()
        self._stalled_since: float | None = None
        self.stop_message: str | None = None  # why lorakit stopped the trainer (disk, stall)
        self.started_at = time.time()
        self._last_state_write = 0.0
        self._last_tick = 0.0
        self._last_scan = 0.0
        self._last_gpu = 0.0

    # -- events ----------------------------------------------------------------------------
    def emit(self, ev: Event) -> None:
        if ev.t == 0.0:
            ev = replace(ev, t=time.time())
        batch = self.opts.transform(ev, self.parser) if self.opts.transform else [ev]
        if isinstance(ev, Progress):
            mapped = next((e for e in batch if isinstance(e, Progress)), None)
            if mapped is not None:
                self._step_offset, self._total = mapped.step - ev.step, mapped.total
        for e in batch:
            self._write(e)

    def current(self) -> Progress | None:
        """The bar's latest state, in the run's own step count."""
        cur = self.parser.current
        if cur is None or (not self._step_offset and self._total is None):
            return cur
        return replace(cur, step=cur.step + self._step_offset, total=self._total or cur.total)

    def _write(self, ev: Event) -> None:
        if isinstance(ev, ErrorEvent):
            ev = with_fix(ev, self.opts.context)
        self.log.append(ev)
        self._check_log()
        milestone = False
        if isinstance(ev, Progress):
            if ev.avr_loss is not None:
                self.losses.append(ev.avr_loss)
            for w in self.watch.add(ev):
                self._write(w)
        elif isinstance(ev, Checkpoint):
            self.last_checkpoint, milestone = ev.path, True
        elif isinstance(ev, StateSaved):
            self.last_state, milestone = ev.path, True
        elif isinstance(ev, EpochStarted):
            milestone = True
        elif isinstance(ev, WarningEvent):
            self.warnings.append(ev)
        elif isinstance(ev, ErrorEvent):
            milestone = True
            if ev.kind == "nan" and self.opts.stop_on_nan and self.stopper and not self.stopper.requests:
                self.stopper.ask("nan", self.opts.stop_grace_s)
        if self.opts.observer is not None:
            self.opts.observer.event(ev)
        if milestone:
            self.write_state()

    def bookkeeping(self, problem: str | None) -> None:
        """lorakit's own files failing (full disk, read-only folder) never stop the training:
        each new problem is reported once (view/stderr, and a warning event when it can be
        written), and supervision goes on."""
        if problem is None or problem in self._problems:
            return
        self._problems.add(problem)
        w = WarningEvent(
            t=time.time(), code="bookkeeping", message=f"lorakit could not record the run: {problem}",
            fix="free space in the run folder / make it writable again; the training goes on",
        )  # fmt: skip
        self.warnings.append(w)
        if self.opts.observer is not None:
            self.opts.observer.event(w)
        else:
            with contextlib.suppress(Exception):
                sys.stderr.write(f"lorakit: warning: {w.message}\n")
        self.log.append(w)

    def _check_log(self) -> None:
        if self.log.recreated > self._recreated:
            self._recreated = self.log.recreated
            self._write(
                WarningEvent(
                    code="events_recreated",
                    message=f"{self.log.path.name} was deleted or replaced while the run was going; "
                    "lorakit wrote it again with the events of this launch",
                )
            )
        self.bookkeeping(self.log.problem)

    def write_state(self, **extra: Any) -> None:
        try:
            self._write_state(**extra)
        except OSError as exc:
            self.bookkeeping(f"cannot update {folder.STATE_FILE}: {exc.strerror or exc}")

    def _write_state(self, **extra: Any) -> None:
        self._last_state_write = time.monotonic()
        cur = self.current()
        speed = self.watch.speed()
        folder.update_state(
            self.run_dir,
            status="running",
            pid=self.stopper.proc.pid if self.stopper else None,
            lorakit_pid=os.getpid(),
            updated_at=time.time(),
            step=cur.step if cur else 0,
            total=cur.total if cur else self.opts.total_steps,
            epoch=self.parser.epoch,
            epochs=self.parser.epochs,
            avr_loss=self.losses[-1] if self.losses else None,
            loss=self.step_losses[-1] if self.step_losses else None,
            steady_s_per_step=speed.steady_s_per_step,
            eta_s=speed.eta_s,
            last_checkpoint=self.last_checkpoint,
            last_state=self.last_state,
            samples=len(self.samples_seen),
            stalled_since=self._stalled_since,
            **extra,
        )

    # -- periodic --------------------------------------------------------------------------
    def _scan_samples(self) -> None:
        sample_dir = self.run_dir / "sample"
        if not sample_dir.is_dir():
            return
        for p in sorted(sample_dir.iterdir()):
            if p.suffix.lower() in SAMPLE_SUFFIXES and p.name not in self.samples_seen:
                self.samples_seen.add(p.name)
                self.emit(Sample(path=str(p)))

    def _poll_scalars(self, final: bool) -> None:
        """New per-step losses the trainer logged (every launch of the run, merged by step); the
        last ones reach state.json at the end too."""
        if self.scalars is None:
            self.scalars = open_scalars(self.run_dir)
        if self.scalars.poll():
            self.step_losses = [p.value for p in self.scalars.series()]
        if final and self.step_losses:
            self.write_state()

    def _check_disk(self, now_m: float) -> None:
        if self.disk is None or now_m - self._last_disk < self.opts.disk_every_s:
            return
        self._last_disk = now_m
        verdict = self.disk.check()
        if verdict is None:
            return
        kind, message = verdict
        if kind == "warn":
            self._write(WarningEvent(code="disk_low", message=message, fix=DISK_FIX))
        elif self.stopper is not None and not self.stopper.requests:
            self.stop_message = message
            self.stopper.ask("disk", self.opts.stop_grace_s)

    def stall_after_s(self) -> float:
        """Seconds of silence that make the trainer stalled (see Options)."""
        per_step = self.watch.speed().steady_s_per_step or self.opts.expected_s_per_step or 0.0
        return max(self.opts.stall_floor_s, self.opts.stall_factor * per_step)

    def _check_stall(self, now_m: float) -> None:
        silent = now_m - self._last_output
        if self._stalled_since is None and silent >= self.stall_after_s():
            self._stalled_since = time.time() - silent
            cur = self.current()
            where = f" at step {cur.step}/{cur.total}" if cur else ""
            self._write(
                WarningEvent(
                    code="stall",
                    message=f"the trainer has printed nothing for {silent:.0f} s{where} (a step takes "
                    f"{self.watch.speed().steady_s_per_step or self.opts.expected_s_per_step or 0:.1f} s); "
                    "it may be stuck",
                    fix="look at the GPU (nvidia-smi) and `lorakit runs tail RUN`; stop it with Ctrl-C and "
                    "`lorakit resume RUN`, or let lorakit stop it: --stall-timeout SECONDS",
                )
            )
            self.write_state()
        timeout = self.opts.stall_timeout_s
        if timeout is not None and silent >= timeout and self.stopper is not None and not self.stopper.requests:
            self.stop_message = f"the trainer printed nothing for {silent:.0f} s (--stall-timeout {timeout:g})"
            self.stopper.ask("stall", self.opts.stop_grace_s)

    def _open_log(self, path: Path) -> contextlib.AbstractContextManager[Any]:
        try:
            return path.open("ab", buffering=0)
        except OSError as exc:
            self.bookkeeping(f"cannot open {path.name}: {exc.strerror or exc}")
            return contextlib.nullcontext(None)

    def output_seen(self) -> None:
        self._last_output = time.monotonic()
        if self._stalled_since is not None:
            self._stalled_since = None
            self._write(WarningEvent(code="stall_over", message="the trainer is printing again"))
            self.write_state()

    def tick(self, final: bool = False) -> None:
        now_m = time.monotonic()
        if not final and now_m - self._last_tick < self.opts.poll_s:
            return
        self._last_tick = now_m
        now = time.time()
        if final or now_m - self._last_scan >= 2.0:
            self._last_scan = now_m
            self._scan_samples()
            self._poll_scalars(final)
        if self.gpu is not None and now_m - self._last_gpu >= 1.0:
            self._last_gpu = now_m
            self.gpu_reading = self.gpu.read()
            if self.gpu_reading is not None:
                used = self.gpu_reading.used_bytes
                self.gpu_baseline = used if self.gpu_baseline is None else self.gpu_baseline
                self.gpu_peak = max(self.gpu_peak or 0, used)
            for w in self.watch.gpu(self.gpu_reading, now):
                self._write(w)
        if not final:
            self._check_disk(now_m)
            self._check_stall(now_m)
        if now_m - self._last_state_write >= self.opts.state_every_s:
            self.write_state()
        if self.opts.observer is not None:
            self.opts.observer.tick(
                Snapshot(
                    run_dir=self.run_dir,
                    started_at=self.started_at,
                    now=now,
                    progress=self.current(),
                    speed=self.watch.speed(),
                    gpu=self.gpu_reading,
                    epoch=self.parser.epoch,
                    epochs=self.parser.epochs,
                    losses=self.losses,
                    last_checkpoint=self.last_checkpoint,
                    warnings=self.warnings,
                    stopping=self.stopper.reason if self.stopper else None,
                    step_losses=self.step_losses,
                )
            )

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> ChildResult:
        # the handler goes in before the child starts (see Signals); run_planned's stays
        # installed until the outcome is written, a bare supervise() installs its own
        own = self.opts.signals is None and self.opts.handle_signals
        self.signals.quiet = self.opts.observer is not None
        if own:
            self.signals.install()
        try:
            return self._run()
        finally:
            self.signals.target = None
            if own:
                self.signals.restore()

    def _on_signal(self) -> None:
        stopper = self.stopper
        if stopper is None:
            return
        first = stopper.requests == 0
        stopper.ask("signal", None)
        if self.opts.observer is None:
            msg = (
                "\nlorakit: stopping the trainer (press Ctrl-C again to kill it)\n"
                if first
                else "\nlorakit: killing the trainer\n"
            )
            with contextlib.suppress(Exception):
                sys.stderr.write(msg)

    def _run(self) -> ChildResult:
        opts = self.opts
        log_path = self.run_dir / folder.LOG_FILE
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        watchdog = _Watchdog(opts.hold_fds, opts.reap_grace_s)
        try:
            proc = _spawn(self.child)
        except OSError as exc:
            watchdog.close()
            folder.update_state(self.run_dir, status="failed", exit_code=EXIT_ENVIRONMENT, finished_at=time.time())
            raise EnvironmentProblem(
                f"cannot start the trainer {self.child.argv[0]}: {exc.strerror or exc}",
                fix="check the trainer's Python (LORAKIT_PYTHON, --sd-scripts, `lorakit doctor`)",
            ) from exc
        watchdog.watch(proc.pid)  # its own process group: pgid == pid
        self.stopper = stopper = _Stopper(proc)
        self.signals.target = self._on_signal
        if self.signals.count:  # a signal came before the trainer was running
            stopper.ask("signal", None)
        self.emit(
            Started(
                run_dir=str(self.run_dir),
                argv=list(self.child.argv),
                pid=proc.pid,
                total_steps=opts.total_steps,
                resumed_from=opts.resumed_from,
            )
        )
        self.write_state(started_at=self.started_at, pid_started=start_ticks(proc.pid))
        if opts.observer is not None:
            opts.observer.start(self.run_dir, list(self.child.argv), opts.total_steps)
        q: queue.Queue[bytes | None] = queue.Queue()
        assert proc.stdout is not None
        reader = threading.Thread(target=_reader, args=(proc.stdout.fileno(), q), daemon=True)
        reader.start()
        try:
            with self._open_log(log_path) as raw_log:
                eof = False
                while not eof:
                    try:
                        item = q.get(timeout=opts.poll_s)
                    except queue.Empty:
                        item = b""
                        for ev in self.parser.idle():
                            self.emit(ev)
                    chunks: list[bytes] = []
                    while item is not None:
                        if item:
                            chunks.append(item)
                        try:
                            item = q.get_nowait()
                        except queue.Empty:
                            break
                    if item is None:
                        eof = True
                    if chunks:
                        data = b"".join(chunks)
                        self.output_seen()
                        try:
                            if raw_log is not None:
                                raw_log.write(data)
                        except OSError as exc:
                            self.bookkeeping(f"cannot write {folder.LOG_FILE}: {exc.strerror or exc}")
                        for ev in self.parser.feed(decoder.decode(data)):
                            self.emit(ev)
                    if stopper.kill_at is not None and time.monotonic() >= stopper.kill_at:
                        stopper.kill()
                    self.tick()
                tail = decoder.decode(b"", final=True)
                for ev in self.parser.feed(tail) + self.parser.flush():
                    self.emit(ev)
            while True:
                try:
                    returncode = proc.wait(timeout=opts.poll_s)
                    break
                except subprocess.TimeoutExpired:
                    if stopper.kill_at is not None and time.monotonic() >= stopper.kill_at:
                        stopper.kill()
        finally:
            self.signals.target = None  # from here on a signal is noted, the outcome still written
            self.signals.finishing = True
            if proc.poll() is None:  # an exception in lorakit itself: never leave a trainer behind
                stopper.kill()
                proc.wait()
            watchdog.close()
            with contextlib.suppress(Exception):
                proc.stdout.close()
        self.tick(final=True)
        if self.gpu is not None:
            self.gpu.close()
        interrupted = stopper.reason == "signal"
        return ChildResult(
            returncode=returncode,
            interrupted=interrupted,
            stopped_for=stopper.reason if not interrupted else None,
            stop_message=self.stop_message,
            parser=self.parser,
            events=list(self.log.events),
            duration_s=time.time() - self.started_at,
            gpu_baseline_bytes=self.gpu_baseline,
            gpu_peak_bytes=self.gpu_peak,
        )


def supervise(child: Child, run_dir: Path, opts: Options | None = None) -> ChildResult:
    """Run ``child`` with its output going to ``run_dir``'s ``train.log`` and events to its
    ``events.jsonl`` (both appended: a resumed run adds to them). Writes no ``finished`` event."""
    opts = opts or Options()
    with EventLog(run_dir / EVENTS_FILE) as log:
        return _Supervisor(child, run_dir, log, opts).run()
