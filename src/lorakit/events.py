"""Typed events of a run, stored one JSON object per line in ``events.jsonl``.

Every line has ``"t"`` (unix time, float) and ``"type"``; the other keys depend on the type:

=========== ==========================================================================
type        keys
=========== ==========================================================================
started     run_dir, argv, pid, total_steps (planned), resumed_from (state dir or null)
dataset     images_x_repeats, batches_per_epoch, epochs, batch_size, grad_accum,
            total_steps — the figures sd-scripts prints before training
epoch       epoch, total (1-based, as sd-scripts prints "epoch 1/10")
progress    step, total, loss (current), avr_loss, s_per_step (tqdm's rate), elapsed_s;
            a NaN/inf loss is written as the string "nan"/"inf" (strict JSON)
checkpoint  path (a saved LoRA file), step, epoch
state       path (a saved --save_state folder), step, epoch
sample      path (a sample image)
warning     code, message, fix
error       kind (oom | nan | missing_model | missing_package | dataset | crash), message, fix,
            evidence (the log line that showed it)
finished    status (done | failed | interrupted), exit_code, duration_s, lora (final file or null)
=========== ==========================================================================

Readers (report, queue, ``lorakit runs``) call :func:`read_events`; writers use
:class:`EventLog`. Unknown keys are ignored and unknown types skipped when reading, so an
older reader survives a newer file; a torn last line (a crash mid-write) is skipped too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

EVENTS_FILE = "events.jsonl"

ErrorKind = Literal["oom", "nan", "missing_model", "missing_package", "dataset", "crash"]
FinishStatus = Literal["done", "failed", "interrupted"]
ERROR_KINDS: tuple[str, ...] = ("oom", "nan", "missing_model", "missing_package", "dataset", "crash")


def _now() -> float:
    return time.time()


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events. ``type`` is a class constant written into every line."""

    type: ClassVar[str] = "event"
    t: float = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"t": data.pop("t"), "type": self.type, **data}

    def to_json(self) -> str:
        """One line of strict JSON: a NaN/inf float (a diverged loss) is written as the string
        "nan" / "inf" / "-inf" and read back as a float by :func:`event_from_dict`."""
        data = {k: _json_float(v) for k, v in self.to_dict().items()}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    type: ClassVar[str] = "started"
    run_dir: str
    argv: list[str]
    pid: int | None = None
    total_steps: int | None = None
    resumed_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class DatasetSummary(Event):
    type: ClassVar[str] = "dataset"
    images_x_repeats: int | None = None
    batches_per_epoch: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    total_steps: int | None = None


@dataclass(frozen=True, kw_only=True)
class EpochStarted(Event):
    type: ClassVar[str] = "epoch"
    epoch: int
    total: int


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    type: ClassVar[str] = "progress"
    step: int
    total: int
    loss: float | None = None
    avr_loss: float | None = None
    s_per_step: float | None = None
    elapsed_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    path: str
    step: int | None = None
    epoch: int | None = None


@dataclass(frozen=True, kw_only=True)
class StateSaved(Event):
    type: ClassVar[str] = "state"
    path: str
    step: int | None = None
    epoch: int | None = None


@dataclass(frozen=True, kw_only=True)
class Sample(Event):
    type: ClassVar[str] = "sample"
    path: str


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    type: ClassVar[str] = "warning"
    message: str
    code: str = "trainer"
    fix: str | None = None


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    kind: str  # one of ERROR_KINDS
    message: str
    fix: str | None = None
    evidence: str | None = None

    def text(self) -> str:
        """One line: ``kind: message Fix: fix`` (the report and the queue's diagnosis)."""
        return f"{self.kind}: {self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    type: ClassVar[str] = "finished"
    status: str  # done | failed | interrupted
    exit_code: int
    duration_s: float | None = None
    lora: str | None = None
    peak_vram_gib: float | None = None  # device memory at its peak minus what was in use at the start


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        Started,
        DatasetSummary,
        EpochStarted,
        Progress,
        Checkpoint,
        StateSaved,
        Sample,
        WarningEvent,
        ErrorEvent,
        Finished,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """The typed event for one decoded line; None for an unknown type or missing keys."""
    cls = EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        return None
    floats = {f.name for f in fields(cls) if "float" in str(f.type)}
    names = {f.name for f in fields(cls)}
    kwargs = {k: (_NON_FINITE[v] if k in floats and v in _NON_FINITE else v) for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def iter_events(path: Path | str) -> Iterator[Event]:
    """Events of ``events.jsonl`` (or of the run folder holding it), in file order."""
    p = Path(path)
    if p.is_dir():
        p = p / EVENTS_FILE
    if not p.is_file():
        return
    with p.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
            if isinstance(data, dict):
                ev = event_from_dict(data)
                if ev is not None:
                    yield ev


def read_events(path: Path | str) -> list[Event]:
    """All events of a run: ``path`` is ``events.jsonl`` or the run folder. Missing file → []."""
    return list(iter_events(path))


class EventLog:
    """Appends events to ``events.jsonl``: one ``write`` per line on an O_APPEND descriptor,
    flushed at once, so a reader tailing the file never sees half a line (except after a
    crash of this process, which :func:`read_events` tolerates).

    A failed write never raises: the bytes not written are kept and written first next time
    (a full disk that gets space again loses nothing), and :attr:`problem` says what failed
    until a write succeeds. Before each write the file is checked to still be the one opened:
    when it was deleted or replaced, it is created again with every event this log has seen
    (:attr:`recreated` counts it), instead of writing on into a deleted file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[Event] = []
        self.problem: str | None = None
        self.recreated = 0
        self._pending = b""
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._closed = False
        self._open(rewrite=False)

    def _open(self, *, rewrite: bool) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self.problem = f"cannot open {self.path}: {exc.strerror or exc}"
            return
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)
        if rewrite:
            self.recreated += 1
            self._pending = b"".join((e.to_json() + "\n").encode("utf-8") for e in self.events)

    def _gone(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def append(self, event: Event) -> Event:
        self.events.append(event)
        if not self._closed:
            self._pending += (event.to_json() + "\n").encode("utf-8")
            self.flush()
        return event

    def flush(self) -> bool:
        """Write what is pending; False (and :attr:`problem` set) when that failed."""
        if self._fd is None or self._gone():
            self._open(rewrite=self._fd is not None)
            if self._fd is None:
                return False
        try:
            while self._pending:
                n = os.write(self._fd, self._pending)
                self._pending = self._pending[n:]
        except OSError as exc:
            self.problem = f"cannot write {self.path}: {exc.strerror or exc}"
            return False
        self.problem = None
        return True

    def close(self) -> None:
        if self._pending and not self._closed:
            self.flush()
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
