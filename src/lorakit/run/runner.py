"""The monitored trainer process.

:func:`supervise` starts the child from an argv list (never a shell string) in its own
process group/session, merges its stdout and stderr into one pipe, appends the raw bytes to
``train.log`` as they arrive, feeds the decoded text to the sd-scripts log parser and appends
the typed events to ``events.jsonl``. Signals: the first SIGINT/SIGTERM sends SIGINT to the
child's process group and waits for it to stop; a second sends SIGKILL. A NaN loss stops the
run the same way (SIGINT, SIGKILL after a grace period).

:func:`run_planned` is the whole real run used by ``lorakit train``: write the plan's files
into the run folder, supervise, diagnose a failure, verify and copy the final LoRA, write the
``finished`` event and ``state.json``. It returns a :class:`RunOutcome`; the caller turns it
into an exit code.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from lorakit.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_OK, EXIT_TRAINING_FAILED, EnvironmentProblem
from lorakit.kohya.logparse import LogParser
from lorakit.kohya.tblog import ScalarLog
from lorakit.run import folder
from lorakit.run.diagnose import Context, Diagnosis, diagnose, with_fix
from lorakit.run.disk import DiskWatch, Need, release_reserve
from lorakit.run.events import (
    EVENTS_FILE,
    Checkpoint,
    EpochStarted,
    ErrorEvent,
    Event,
    EventLog,
    Finished,
    Progress,
    Sample,
    Started,
    StateSaved,
    WarningEvent,
)
from lorakit.run.losslog import open_scalars
from lorakit.run.reaper import start_ticks
from lorakit.run.watch import GpuReading, GpuSampler, Speed, SpeedWatch

if TYPE_CHECKING:
    from lorakit.kohya.install import Trainer
    from lorakit.kohya.launch import LaunchPlan
    from lorakit.planning import PlannedRun, PlanRequest

# ``auto_fit(planned, outcome)``: called once when a run failed with CUDA OOM; returns the
# request to retry with (e.g. the fitted overrides added), or None to give up. ``lorakit train
# --auto-fit`` passes the VRAM fitter's function here.
AutoFit = Callable[["PlannedRun", "RunOutcome"], "PlanRequest | None"]

SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DISK_FIX = (
    "free space on that disk (old runs' checkpoints and *-state folders are the big files), then "
    "`lorakit resume RUN` (with saving.save_state) or start again; or put the runs elsewhere with "
    "--set output.folder=PATH"
)


@dataclass
class Snapshot:
    """What a view shows, refreshed on every tick."""

    run_dir: Path
    started_at: float
    now: float
    progress: Progress | None  # the bar's latest state (may be ahead of the last event)
    speed: Speed
    gpu: GpuReading | None
    epoch: int | None
    epochs: int | None
    losses: list[float]
    last_checkpoint: str | None
    warnings: list[WarningEvent]
    stopping: str | None  # why the run is being stopped (signal / nan), None while running
    step_losses: list[float] = field(default_factory=list)  # the trainer's per-step loss (TensorBoard logs)


class Observer(Protocol):
    """A view of the run (``lorakit.run.live``); every method is called from the main thread."""

    def start(self, run_dir: Path, argv: list[str], total_steps: int | None) -> None: ...

    def event(self, ev: Event) -> None: ...

    def tick(self, snap: Snapshot) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Child:
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ


@dataclass
class Options:
    observer: Observer | None = None
    total_steps: int | None = None
    batch_size: int = 1
    expected_s_per_step: float | None = None
    gpu_index: int | None = 0  # None: no NVML polling
    stop_on_nan: bool = True
    stop_grace_s: float = 120.0  # after asking the trainer to stop, kill it this much later
    poll_s: float = 0.25
    state_every_s: float = 5.0
    context: Context = field(default_factory=Context)
    resumed_from: str | None = None
    # called with each event (and the parser, for what it has seen) before it is written;
    # returns the events to write instead (resume.py's step offset and restart check)
    transform: Callable[[Event, LogParser], list[Event]] | None = None
    # called once the trainer has exited, before the outcome is decided; returns events to add
    # (resume.py renames the files of a resumed launch to the run's names here)
    after_exit: Callable[[ChildResult], list[Event]] | None = None
    handle_signals: bool = True
    # run_planned's handler, kept until the run's final state is written; None: supervise
    # installs its own for the trainer's lifetime
    signals: Signals | None = None
    hold_fds: tuple[int, ...] = ()  # the GPU lock descriptors the watchdog holds (reaper.py)
    reap_grace_s: float = 10.0  # lorakit killed: the watchdog's SIGINT → SIGKILL delay
    disk: Need | None = None  # what one save writes: the free-space watch (disk.py); None: off
    disk_every_s: float = 2.0
    # a trainer silent for max(stall_floor_s, stall_factor × s/step) is reported stalled;
    # stopped only with stall_timeout_s (`--stall-timeout`)
    stall_factor: float = 10.0
    stall_floor_s: float = 300.0
    stall_timeout_s: float | None = None


@dataclass
class ChildResult:
    returncode: int | None
    interrupted: bool
    stopped_for: str | None  # "nan" when lorakit stopped it
    parser: LogParser
    events: list[Event]
    duration_s: float
    gpu_baseline_bytes: int | None = None  # device memory in use at the first reading
    gpu_peak_bytes: int | None = None  # the highest device reading while the trainer ran
    stop_message: str | None = None  # why lorakit stopped it (stopped_for "disk" / "stall")

    @property
    def peak_vram_gib(self) -> float | None:
        """The run's own peak: highest device reading minus what was in use when it started."""
        if self.gpu_peak_bytes is None:
            return None
        return round((self.gpu_peak_bytes - (self.gpu_baseline_bytes or 0)) / 2**30, 2)


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # done | failed | interrupted
    exit_code: int
    returncode: int | None
    diagnosis: Diagnosis | None
    events: list[Event]
    duration_s: float
    lora: Path | None = None
    copies: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # LoRA check problems
    unrecorded: list[str] = field(default_factory=list)  # the outcome could not be written (why)


class _Stopper:
    """Signals to the child's process group, from a signal handler or the main loop."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.requests = 0
        self.reason: str | None = None
        self.kill_at: float | None = None

    def _send(self, sig: int) -> None:
        if self.proc.poll() is not None and os.name != "posix":
            return
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)
            elif sig == signal.SIGINT:
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined,unused-ignore]
            else:
                self.proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def ask(self, reason: str, grace_s: float | None) -> None:
        """First request: SIGINT to the group; later ones: SIGKILL."""
        self.requests += 1
        if self.requests == 1:
            self.reason = reason
            self._send(signal.SIGINT)
            if grace_s is not None:
                self.kill_at = time.monotonic() + grace_s
        else:
            self.kill()

    def kill(self) -> None:
        self._send(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
        self.kill_at = None


class Signals:
    """lorakit's one handler for SIGINT/SIGTERM/SIGHUP during a run.

    Installed before the trainer starts (a handled signal is reset to the default in the child
    at exec, while an *ignored* one stays ignored: lorakit started with `&` from a script has
    SIGINT ignored, and the trainer would shrug off the stop request) and kept until the run's
    final state is written: a second Ctrl-C while lorakit writes the outcome is noted, never a
    KeyboardInterrupt halfway through ``finish_run``. While the trainer runs, each signal goes
    to ``target`` (the supervisor's stop: SIGINT to the group, then SIGKILL)."""

    def __init__(self) -> None:
        self.count = 0
        self.target: Callable[[], None] | None = None
        self.quiet = False  # a view prints the stop itself
        self.finishing = False  # the trainer has exited
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.target is not None:
            self.target()
        elif not self.quiet:
            msg = "writing the run's outcome, one moment" if self.finishing else "stopping"
            with contextlib.suppress(Exception):
                sys.stderr.write(f"\nlorakit: {msg}\n")

    def install(self) -> Signals:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        sigs = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP"):
            sigs.append(signal.SIGHUP)
        for s in sigs:
            with contextlib.suppress(ValueError, OSError):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def restore(self) -> None:
        for s, h in self._previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)
        self._previous = {}

    def __enter__(self) -> Signals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


class _Watchdog:
    """The trainer's watchdog process (``reaper.py``, whose docstring says how it works)."""

    def __init__(self, hold_fds: tuple[int, ...], grace_s: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._w: int | None = None
        if os.name != "posix":
            return
        r, w = os.pipe()  # not inheritable: only the watchdog gets the read end, via stdin
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).with_name("reaper.py")), f"{grace_s:g}"],
                stdin=r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=hold_fds,
                start_new_session=True,
            )
            self._w = w
        except OSError:
            os.close(w)
        finally:
            os.close(r)

    def watch(self, pgid: int) -> None:
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.write(self._w, f"{pgid}\n".encode())

    def close(self, wait_s: float = 5.0) -> None:
        """lorakit is done with the trainer: the watchdog stops what is left of its group and exits."""
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.close(self._w)
            self._w = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)


def _reader(fd: int, q: queue.Queue[bytes | None]) -> None:
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            q.put(chunk)
    finally:
        q.put(None)


def _spawn(child: Child) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(child.env)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined,unused-ignore]
    return subprocess.Popen(
        child.argv,
        cwd=child.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


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


def add_events(run_dir: Path, result: ChildResult, events: list[Event], observer: Observer | None) -> None:
    """Events decided after the trainer exited: into events.jsonl, the result and the view."""
    if not events:
        return
    with EventLog(run_dir / EVENTS_FILE) as log:
        for ev in events:
            ev = replace(ev, t=time.time()) if ev.t == 0.0 else ev
            log.append(ev)
            result.events.append(ev)
            if observer is not None:
                observer.event(ev)


def outcome_of(
    result: ChildResult,
    run_dir: Path,
    *,
    final_lora: Path | None,
    ctx: Context,
) -> tuple[str, int, Diagnosis | None]:
    """(status, exit code, diagnosis) of a trainer process."""
    errors = [e for e in result.events if isinstance(e, ErrorEvent)]
    lora_missing = final_lora is not None and not final_lora.is_file()
    # a stop request the trainer did not act on before it finished is no interruption
    completed = result.returncode == 0 and final_lora is not None and not lora_missing
    diag = diagnose(
        returncode=result.returncode,
        errors=errors,
        exceptions=[x.line for x in result.parser.exceptions],
        tail=list(result.parser.tail),
        interrupted=result.interrupted and not completed,
        lora_missing=lora_missing,
        ctx=ctx,
    )
    if diag is None:
        return "done", EXIT_OK, None
    return diag.status, diag.exit_code, diag


def finish_run(
    run_dir: Path,
    result: ChildResult,
    *,
    final_lora: Path | None,
    expected: Any | None = None,
    lora_folders: list[Path] | None = None,
    ctx: Context | None = None,
    observer: Observer | None = None,
) -> RunOutcome:
    """Diagnose, verify + copy the LoRA on success, write ``finished`` and the final state."""
    from lorakit.run.finish import copy_lora, verify_lora

    ctx = ctx or Context()
    release_reserve(run_dir)  # room for the outcome, even when the trainer filled the disk
    status, code, diag = outcome_of(result, run_dir, final_lora=final_lora, ctx=ctx)
    stopped = _stopped_diagnosis(result)
    if stopped is not None and status != "done":
        status, code, diag = stopped.status, stopped.exit_code, stopped
    copies: list[str] = []
    problems: list[str] = []
    extra: list[Event] = []
    if diag is not None and not any(isinstance(e, ErrorEvent) for e in result.events) and diag.kind != "interrupted":
        extra.append(ErrorEvent(kind=diag.kind, message=diag.message, fix=diag.fix, evidence=diag.evidence))
    lora = final_lora if (final_lora is not None and final_lora.is_file()) else None
    if status == "done" and lora is not None and expected is not None:
        check = verify_lora(lora, expected)
        problems = check.problems
        if problems:
            status, code = "failed", EXIT_TRAINING_FAILED
            msg = f"the final LoRA {lora.name} does not match the spec: " + "; ".join(problems)
            fix = "check the trainer version and the run's command.txt"
            if not check.tensors:  # not a whole safetensors file
                msg = f"the final LoRA {lora.name} is incomplete: " + "; ".join(problems)
                fix = "it was cut short (a full disk, or the trainer killed while saving): free space, then train again"
            diag = Diagnosis("crash", msg, fix, code)
            extra.append(ErrorEvent(kind="crash", message=msg, fix=diag.fix))
    if status == "done" and lora is not None:
        for dest in lora_folders or []:
            try:
                c = copy_lora(lora, Path(dest))
                copies.append(str(c.dest))
                if c.action == "renamed":
                    extra.append(WarningEvent(code="copy_renamed", message=c.describe()))
            except OSError as exc:
                extra.append(
                    WarningEvent(
                        code="copy_failed",
                        message=f"could not copy {lora.name} to {dest}: {exc}",
                        fix="copy it by hand from the run folder",
                    )
                )
    finished = Finished(
        status=status,
        exit_code=code,
        duration_s=round(result.duration_s, 3),
        lora=str(lora) if lora and status == "done" else None,  # never a half-written file
        peak_vram_gib=result.peak_vram_gib,
    )
    unrecorded: list[str] = []
    with EventLog(run_dir / EVENTS_FILE) as log:
        for ev in [*extra, finished]:
            log.append(ev)
            if observer is not None:
                observer.event(ev)
        if not log.flush() and log.problem:
            unrecorded.append(log.problem)
    events = result.events + extra + [finished]
    try:
        folder.update_state(
            run_dir,
            last_resort=True,
            status=status,
            exit_code=code,
            returncode=result.returncode,
            finished_at=finished.t,
            pid=None,
            lora=finished.lora,
            copies=copies,
            diagnosis=None if diag is None else {"kind": diag.kind, "message": diag.message, "fix": diag.fix},
        )
    except OSError as exc:
        unrecorded.append(f"cannot write {folder.STATE_FILE}: {exc.strerror or exc}")
    lora = lora if status == "done" else None
    out = RunOutcome(run_dir, status, code, result.returncode, diag, events, result.duration_s, lora, copies, problems)
    out.unrecorded = unrecorded
    return out


def _stopped_diagnosis(result: ChildResult) -> Diagnosis | None:
    """lorakit stopped the trainer for a full disk or a stall, or the trainer hit a full disk."""
    if result.stopped_for == "disk":
        return Diagnosis("disk_full", result.stop_message or "the disk is full", DISK_FIX, EXIT_ENVIRONMENT)
    if result.stopped_for == "stall":
        msg = result.stop_message or "the trainer stopped printing"
        fix = "`lorakit runs tail RUN` shows where it stopped; `lorakit resume RUN` continues from the last state"
        return Diagnosis("stall", f"lorakit stopped a stalled trainer: {msg}", fix, EXIT_TRAINING_FAILED)
    if result.returncode not in (0, None) and any("No space left on device" in line for line in result.parser.tail):
        return Diagnosis("disk_full", "the trainer ran out of disk space (No space left on device)", DISK_FIX,
                         EXIT_ENVIRONMENT, evidence="No space left on device")  # fmt: skip
    return None


def expected_lora(planned: PlannedRun) -> Any:
    """The Expected (finish.py) for a planned run's spec."""
    from lorakit.config.schema import LYCORIS_KINDS
    from lorakit.kohya.families import family
    from lorakit.run.finish import Expected

    spec = planned.spec
    lycoris = spec.network.kind in LYCORIS_KINDS
    return Expected(
        module="lycoris.kohya" if lycoris else family(spec.model.family).lora_module,
        dim=spec.network.dim,
        alpha=spec.network.alpha,
        unet_only=spec.training.unet_only,
        plain_lora=not lycoris,
    )


def context_for(planned: PlannedRun, trainer_python: str | None = None) -> Context:
    spec = planned.spec
    return Context(
        trainer_python=trainer_python or planned.plan.argv[0],
        sd_scripts=str(planned.plan.cwd),
        precision=spec.training.precision,
        lr=spec.optimizer.lr,
        no_half_vae=spec.training.no_half_vae,
        family=spec.model.family,
        gradient_checkpointing=spec.training.gradient_checkpointing,
        batch_size=spec.training.batch_size,
    )


def final_lora_path(plan: LaunchPlan, output_name: str) -> Path:
    """sd-scripts writes the last LoRA as ``<output_dir>/<output_name>.safetensors``."""
    return plan.run_dir / f"{output_name}.safetensors"


def write_plan_files(planned: PlannedRun) -> None:
    """spec.yaml, command.txt, dataset.toml (+ sample_prompts.txt), atomically."""
    import yaml

    from lorakit.planning import spec_dump

    files = planned.plan.files() | {folder.SPEC_FILE: yaml.safe_dump(spec_dump(planned.spec), sort_keys=False)}
    folder.write_files(planned.plan.run_dir, files)


def run_planned(
    planned: PlannedRun,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    extra_argv: list[str] | None = None,
) -> RunOutcome:
    """The real run: files → trainer → diagnosis → LoRA check + copy → finished event.

    lorakit's signal handler stays in place from before the trainer starts until the outcome
    (``finished``, ``state.json``, report) is written (:class:`Signals`)."""
    with Signals() as sigs:
        opts = replace(options) if options is not None else Options()
        opts.signals = sigs
        return _run_planned(planned, observer=observer, options=opts, extra_argv=extra_argv)


def _run_planned(
    planned: PlannedRun,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    extra_argv: list[str] | None = None,
) -> RunOutcome:
    """The real run: files → trainer → diagnosis → LoRA check + copy → finished event.

    ``planned.plan.run_dir`` must exist (``folder.create_run_dir``). ``extra_argv`` is
    appended to the plan's argv (``lorakit resume`` adds ``--resume=DIR``)."""
    plan, spec = planned.plan, planned.spec
    run_dir = plan.run_dir
    _prepare_folder(planned)
    opts = replace(options) if options is not None else Options()
    if opts.disk is None:
        opts.disk = disk_need(spec)
    _stall_env(opts)
    opts.observer = observer if observer is not None else opts.observer
    if opts.total_steps is None:
        opts.total_steps = plan.steps.total_steps
    opts.batch_size = spec.training.batch_size
    if spec.training.gpus:
        opts.gpu_index = spec.training.gpus[0]
    if opts.context == Context():
        opts.context = context_for(planned)
    if opts.expected_s_per_step is None and opts.gpu_index is not None:
        from lorakit.run.watch import expected_s_per_step

        expected = expected_s_per_step(spec, opts.gpu_index)
        if expected is not None:
            opts.expected_s_per_step = expected[0]
    folder.update_state(
        run_dir,
        status="running",
        lorakit_pid=os.getpid(),
        lorakit_started=start_ticks(os.getpid()),  # tells a reused pid from this process
        cwd=os.getcwd(),
        output_name=spec.output.name,
        folder=str(run_dir),
        preset=planned.loaded.preset,
        total_steps=plan.steps.total_steps,
        save_state=spec.saving.save_state,
        resumed_from=opts.resumed_from,
    )
    argv = list(plan.argv) + list(extra_argv or [])
    child = Child(argv=argv, cwd=plan.cwd, env=dict(plan.env))
    from lorakit.run.lock import GpuBusy, gpu_lock

    # every GPU of the run is locked for its whole life: a second lorakit training on one of
    # them is refused (exit 3) instead of both dying of OOM
    try:
        with gpu_lock(spec.training.gpus, run=str(run_dir)) as lock:
            opts.hold_fds = lock.fds()  # the watchdog holds them too: kill -9 frees no GPU early
            result = supervise(child, run_dir, opts)
            if opts.after_exit is not None:
                add_events(run_dir, result, opts.after_exit(result), opts.observer)
    except GpuBusy:
        folder.update_state(run_dir, status="refused", pid=None)
        raise
    outcome = finish_run(
        run_dir,
        result,
        final_lora=final_lora_path(plan, spec.output.name),
        expected=expected_lora(planned),
        lora_folders=list(spec.output.lora_folders),
        ctx=opts.context,
        observer=opts.observer,
    )
    if opts.observer is not None:
        opts.observer.stop()
    write_report(run_dir)
    return outcome


def _prepare_folder(planned: PlannedRun) -> None:
    """Free space checked, the plan's files written, the outcome's reserve made. A new run
    folder that cannot take them is removed again (it holds nothing but lorakit's own files),
    and the problem is one message (exit 3), not a traceback."""
    from lorakit.run.disk import check_before, make_reserve

    run_dir = planned.plan.run_dir
    fresh = not any(run_dir.iterdir())
    try:
        check_before(run_dir, disk_need(planned.spec))
        write_plan_files(planned)
    except (EnvironmentProblem, OSError) as exc:
        if fresh:
            for name in [*planned.plan.files(), folder.SPEC_FILE]:
                with contextlib.suppress(OSError):
                    (run_dir / name).unlink()
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when empty: never anything but our files
        if isinstance(exc, EnvironmentProblem):
            raise
        raise EnvironmentProblem(
            f"cannot write the run's files in {run_dir}: {exc.strerror or exc}", fix=DISK_FIX.replace(" RUN`", "`")
        ) from None
    make_reserve(run_dir)


def disk_need(spec: Any) -> Need:
    from lorakit.run.disk import need

    return need(spec)


def _stall_env(opts: Options) -> None:
    """LORAKIT_STALL_FACTOR / LORAKIT_STALL_FLOOR_S: when a silent trainer counts as stalled."""
    for var, attr in (("LORAKIT_STALL_FACTOR", "stall_factor"), ("LORAKIT_STALL_FLOOR_S", "stall_floor_s")):
        with contextlib.suppress(ValueError):
            if os.environ.get(var):
                setattr(opts, attr, float(os.environ[var]))


def write_report(run_dir: Path) -> None:
    """report.png / report.html (+ samples.png) from the run's events; a report that cannot be
    drawn (matplotlib missing, say) is a warning, never a failed training."""
    from lorakit.report.build import build_report

    try:
        build_report(run_dir)
    except Exception as exc:  # the LoRA is done; the report is a convenience
        with EventLog(run_dir / EVENTS_FILE) as log:
            log.append(WarningEvent(code="report_failed", message=f"report not written: {exc}",
                                    fix=shlex.join(["lorakit", "report", str(run_dir)])))  # fmt: skip


def plan_new_run(req: PlanRequest, trainer: Trainer, *, now: Any = None) -> PlannedRun:
    """Plan a real run into a new, created run folder ``<output.folder>/<name>-<stamp>/``.
    Nothing is created when the plan fails (bad config, dataset error)."""
    from lorakit.planning import plan_resolved, resolve_spec

    loaded, warnings = resolve_spec(req)  # the run folder's name comes from the spec: load it once
    spec = loaded.spec
    run_dir = folder.run_dir_path(Path(spec.output.folder).expanduser(), spec.output.name, now).absolute()
    planned = plan_resolved(loaded, warnings, trainer, run_dir)
    folder.create_run_dir(run_dir)
    return planned


def start_run(
    req: PlanRequest,
    trainer: Trainer,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    auto_fit: AutoFit | None = None,
    on_planned: Callable[[PlannedRun], None] | None = None,
) -> RunOutcome:
    """Plan → new run folder → train → check/copy the LoRA. The programmatic ``lorakit train``.

    With ``auto_fit``, an OOM failure is retried once, in a new run folder, with the request
    ``auto_fit`` returns. ``on_planned`` is called with each plan before it launches."""
    planned = plan_new_run(req, trainer)
    if on_planned is not None:
        on_planned(planned)
    outcome = run_planned(planned, observer=observer, options=options)
    if auto_fit is not None and outcome.diagnosis is not None and outcome.diagnosis.kind == "oom":
        retry = auto_fit(planned, outcome)
        if retry is not None:
            planned = plan_new_run(retry, trainer)
            if on_planned is not None:
                on_planned(planned)
            folder.update_state(planned.plan.run_dir, retry_of=str(outcome.run_dir))
            outcome = run_planned(planned, observer=observer, options=_fresh(options))
    return outcome


def _fresh(options: Options | None) -> Options | None:
    if options is None:
        return None
    return replace(options, total_steps=None, context=Context())


EXIT_FOR_STATUS = {"done": EXIT_OK, "failed": EXIT_TRAINING_FAILED, "interrupted": EXIT_INTERRUPTED}
