"""The runner's types: what a view sees (Snapshot, Observer), what to run (Child, Options) and
what came of it (ChildResult, RunOutcome). ``lorakit.run.runner`` re-exports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lorakit.events import (
    Event,
    Progress,
    WarningEvent,
)
from lorakit.kohya.logparse import LogParser
from lorakit.run.diagnose import Context, Diagnosis
from lorakit.run.disk import Need
from lorakit.run.signals import Signals as Signals
from lorakit.run.watch import GpuReading, Speed

if TYPE_CHECKING:
    pass


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
