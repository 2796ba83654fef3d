"""The per-step scalars sd-scripts logs to TensorBoard, read back for the live view,
`lorakit runs show` and the report.

lorakit launches every run with ``--log_with=tensorboard --logging_dir=<run>/logs``. sd-scripts
(``train_util.prepare_accelerator``) then gives accelerate ``<run>/logs/<YYYYmmddHHMMSS>`` as its
project folder, and accelerate's ``TensorBoardTracker`` writes under the tracker's name
(``network_train`` for the network scripts)::

    <run>/logs/20261123203000/network_train/events.out.tfevents.<unix time>.<host>.<pid>.<n>

one folder (and so one event file) per launch: a resumed run has several. Each optimisation
step logs ``loss/current`` (that step's loss, full precision), ``loss/average`` (sd-scripts'
running mean, the ``avr_loss`` of its progress bar) and ``lr/<group>`` at ``step=global_step``;
``loss/epoch_average`` is logged at ``step=epoch`` and is not read here.

:class:`ScalarLog` reads them incrementally with TensorBoard's own reader
(``tensorboard.backend.event_processing.event_accumulator.EventAccumulator``: TFRecord framing,
CRCs, a record torn by a writer still at work is left for the next read). The event files of
all launches are merged by step, the later write winning for a step logged twice (a resumed
launch repeats the steps after its saved state). A launch whose counter is not the run's (sd-scripts
48d368fa sets ``global_step`` to ``S mod L`` after skipping whole epochs on resume,
kohya-ss/sd-scripts#1406) has its steps shifted by ``step_offset(first write time of the
file)``, which the caller derives from the run's launches. The ``tensorboard`` package is imported only
when a log is read; without it (or with unreadable files) the reader says so in ``note`` and
yields nothing, and callers fall back to the progress bar's 3-digit running average.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

LOGS_DIR = "logs"  # --logging_dir=<run>/LOGS_DIR
EVENT_FILE_PREFIX = "events.out.tfevents."
LOSS_TAG = "loss/current"
AVERAGE_TAG = "loss/average"
DEFAULT_TAGS = (LOSS_TAG, AVERAGE_TAG)

FALLBACK = "showing sd-scripts' running average from its progress bar (3 digits)"
READER_MISSING = (
    f"per-step loss needs the `tensorboard` package in lorakit's environment (pip install tensorboard); {FALLBACK}"
)
NO_LOGS = (
    "no TensorBoard logs in the run folder (a run started by an older lorakit, or `tensorboard` "
    f"missing from the trainer's environment: `lorakit doctor`); {FALLBACK}"
)


@dataclass(frozen=True)
class Point:
    step: int
    value: float
    wall_time: float


def logs_dir(run_dir: Path) -> Path:
    return Path(run_dir) / LOGS_DIR


def event_files(run_dir: Path) -> list[Path]:
    """The run's event files, oldest launch first (launch folders are named by time)."""
    root = logs_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(EVENT_FILE_PREFIX + "*") if p.is_file())


def _accumulator_module() -> ModuleType | None:
    """TensorBoard's ``event_accumulator`` module, or None when the package cannot be imported."""
    import importlib

    try:
        return importlib.import_module("tensorboard.backend.event_processing.event_accumulator")
    except Exception:  # ImportError, or a broken install (e.g. a protobuf it cannot load)
        return None


class ScalarLog:
    """All launches' TensorBoard scalars of one run, merged by step; :meth:`poll` reads what
    was written since the last call (cheap enough for the live view every few seconds)."""

    def __init__(
        self,
        run_dir: Path,
        tags: Sequence[str] = DEFAULT_TAGS,
        step_offset: Callable[[float], int] | None = None,
    ) -> None:
        """``step_offset(t)``: run step − trainer step for the event file first written at unix
        time ``t`` (asked once per file; None: the trainer's steps are the run's)."""
        self.run_dir = Path(run_dir)
        self.tags = tuple(tags)
        self.step_offset = step_offset
        self._offsets: dict[Path, int] = {}  # event file → its launch's step offset
        self._module = _accumulator_module()
        self._readers: dict[Path, Any] = {}  # event file → its EventAccumulator
        self._broken: dict[Path, str] = {}  # event file → why it cannot be read
        self._taken: dict[tuple[Path, str], int] = {}  # (file, tag) → scalars already merged
        self._by_step: dict[str, dict[int, Point]] = {t: {} for t in self.tags}

    @property
    def available(self) -> bool:
        """Whether the reader (the `tensorboard` package) could be imported."""
        return self._module is not None

    @property
    def note(self) -> str | None:
        """Why there is no per-step loss (None when there is), or which files failed."""
        if self._module is None:
            return READER_MISSING
        broken = "; ".join(f"{p.name}: {why}" for p, why in self._broken.items())
        if self.has(LOSS_TAG):
            return f"some TensorBoard event files could not be read ({broken})" if broken else None
        if broken:
            return f"the run's TensorBoard logs could not be read ({broken}); {FALLBACK}"
        if self._readers:
            return f"the run's TensorBoard logs hold no per-step loss (yet); {FALLBACK}"
        return NO_LOGS

    def poll(self) -> bool:
        """Read new scalars from every event file (new launches' files included); True when
        something new was merged. Never raises for a missing, torn or corrupt file."""
        m = self._module
        if m is None:
            return False
        changed = False
        for path in event_files(self.run_dir):
            if path in self._broken:
                continue
            try:
                reader = self._readers.get(path)
                if reader is None:
                    reader = self._readers[path] = self._open(m, path)
                reader.Reload()
                if path not in self._offsets:
                    try:
                        first = float(reader.FirstEventTimestamp())
                    except ValueError:  # nothing written yet
                        continue
                    self._offsets[path] = self.step_offset(first) if self.step_offset else 0
                offset = self._offsets[path]
                present = set(reader.Tags().get(m.SCALARS, ()))
                for tag in self.tags:
                    if tag not in present:
                        continue
                    items = reader.Scalars(tag)
                    start = self._taken.get((path, tag), 0)
                    for ev in items[start:]:
                        point = Point(int(ev.step) + offset, float(ev.value), float(ev.wall_time))
                        changed |= self._merge(tag, point)
                    self._taken[(path, tag)] = len(items)
            except Exception as exc:  # the reader's errors are its own types (DataLossError, OSError, ...)
                self._broken[path] = f"{type(exc).__name__}: {exc}"
        return changed

    @staticmethod
    def _open(m: ModuleType, path: Path) -> Any:
        keep_one = (m.TENSORS, m.IMAGES, m.AUDIO, m.HISTOGRAMS, m.COMPRESSED_HISTOGRAMS)
        return m.EventAccumulator(
            str(path),
            size_guidance={m.SCALARS: 0, **dict.fromkeys(keep_one, 1)},  # 0: keep every scalar
            purge_orphaned_data=False,  # repeated steps are merged here, the later write winning
        )

    def _merge(self, tag: str, point: Point) -> bool:
        seen = self._by_step[tag].get(point.step)
        if seen is not None and seen.wall_time > point.wall_time:
            return False
        self._by_step[tag][point.step] = point
        return True

    def has(self, tag: str) -> bool:
        return bool(self._by_step.get(tag))

    def series(self, tag: str = LOSS_TAG) -> list[Point]:
        """The merged points of ``tag``, by step."""
        return [p for _, p in sorted(self._by_step.get(tag, {}).items())]

    def latest(self, tag: str = LOSS_TAG) -> Point | None:
        points = self._by_step.get(tag)
        return points[max(points)] if points else None


def read_scalars(
    run_dir: Path, tags: Sequence[str] = DEFAULT_TAGS, step_offset: Callable[[float], int] | None = None
) -> ScalarLog:
    """A :class:`ScalarLog` of ``run_dir`` read once (a finished or stopped run)."""
    log = ScalarLog(run_dir, tags, step_offset)
    log.poll()
    return log


def smoothing_span(n: int) -> int:
    """Steps an exponential average of ``n`` per-step losses spans: 1/25 of the run, 5…200."""
    return max(5, min(200, n // 25))


def smoothed(values: Iterable[float], span: int | None = None) -> list[float]:
    """Exponential moving average with TensorBoard's start-up debiasing (the first values are
    not pulled towards 0); ``span`` steps (alpha = 2/(span+1)), default :func:`smoothing_span`.
    A NaN/inf value is passed through and does not poison the average after it."""
    vals = list(values)
    alpha = 2.0 / ((span or smoothing_span(len(vals))) + 1)
    out: list[float] = []
    acc, weight = 0.0, 0.0
    for v in vals:
        if not math.isfinite(v):
            out.append(v)
            continue
        acc = (1 - alpha) * acc + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(acc / weight)
    return out
