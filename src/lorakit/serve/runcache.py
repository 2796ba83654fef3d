"""Per-run caches for the run page: its events and its TensorBoard scalars, read incrementally.

`runs show`'s ``summarize`` re-reads the whole ``events.jsonl`` and the TensorBoard logs on each
call (~1 s for a 20,000-step run on a slow machine). The server keeps, for the 32 runs looked at
last, the typed events parsed so far with the byte offset they end at, and the run's
``ScalarLog`` (which polls only what was written since); a page load reads only new bytes, and
passes both to ``summarize``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.events import Event, event_from_dict
from lorakit.serve import _core

KEEP = 32


@dataclass
class RunCache:
    inode: int = -1
    offset: int = 0
    events: list[Event] = field(default_factory=list)
    points: list[list[float]] = field(default_factory=list)  # [step, loss] from progress events
    scalars: Any = None  # the run's ScalarLog
    lock: threading.Lock = field(default_factory=threading.Lock)


def loss_point(ev: dict[str, Any]) -> list[float] | None:
    """[step, per-step loss or running average] of a progress event's line."""
    if ev.get("type") != "progress":
        return None
    value = ev.get("loss") if isinstance(ev.get("loss"), int | float) else ev.get("avr_loss")
    if not isinstance(value, int | float) or not isinstance(ev.get("step"), int):
        return None
    return [ev["step"], value]


class RunCaches:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._runs: OrderedDict[Path, RunCache] = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, run_dir: Path) -> RunCache:
        with self._lock:
            entry = self._runs.pop(run_dir, None) or RunCache()
            self._runs[run_dir] = entry
            while len(self._runs) > self.keep:
                self._runs.popitem(last=False)
            return entry

    def read(self, run_dir: Path) -> tuple[list[Event], int, list[list[float]], Any]:
        """(events, offset after the last complete line, progress loss points, scalar log)."""
        entry = self._entry(run_dir)
        with entry.lock:
            path = run_dir / "events.jsonl"
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is None or st.st_ino != entry.inode or st.st_size < entry.offset:
                entry.inode, entry.offset, entry.events, entry.points = (st.st_ino if st else -1), 0, [], []
            if st is not None and st.st_size > entry.offset:
                with path.open("rb") as fh:
                    fh.seek(entry.offset)
                    data = fh.read()
                cut = data.rfind(b"\n")
                if cut >= 0:
                    for raw in data[: cut + 1].splitlines():
                        line = raw.decode("utf-8", errors="replace").strip()
                        if not line:
                            continue
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            continue
                        if not isinstance(obj, dict):
                            continue
                        ev = event_from_dict(obj)
                        if ev is not None:
                            entry.events.append(ev)
                        p = loss_point(obj)
                        if p is not None:
                            entry.points.append(p)
                    entry.offset += cut + 1
            if entry.scalars is None:
                entry.scalars = _core.open_scalars(run_dir)
            entry.scalars.poll()
            return list(entry.events), entry.offset, list(entry.points), entry.scalars
