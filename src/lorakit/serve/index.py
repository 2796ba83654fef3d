"""The runs list, kept in memory and refreshed by ``stat`` (1,000 runs stay fast).

A refresh is one ``scandir`` of the runs folder and two ``stat`` calls per run; only runs whose
``state.json`` or ``events.jsonl`` changed (mtime, size) are read again, through the same
functions ``lorakit runs list --json`` uses. Rows of running runs have their status recomputed on
every refresh (a killed lorakit turns ``lost`` without any file changing).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from lorakit.run.folder import _STAMP_RE
from lorakit.serve import _core

STATE = "state.json"
EVENTS = "events.jsonl"
Sig = tuple[int, int, int, int]


def _sig(path: str) -> Sig:
    out: list[int] = []
    for name in (STATE, EVENTS):
        try:
            st = os.stat(os.path.join(path, name))
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, -1]
    return (out[0], out[1], out[2], out[3])


class RunIndex:
    """Rows as ``runs list --json`` prints them (newest first), cached per run folder."""

    def __init__(self, runs: Path, min_interval_s: float = 0.5) -> None:
        self.runs = runs
        self.min_interval_s = min_interval_s
        self._rows: dict[str, tuple[Sig, dict[str, Any]]] = {}
        self._order: list[str] = []
        self._last = 0.0
        self._lock = threading.Lock()
        self.reads = 0  # how many run folders were (re)read: for tests and the benchmark

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.min_interval_s:
                return
            self._last = now
            seen: dict[str, tuple[Sig, dict[str, Any]]] = {}
            try:
                entries = list(os.scandir(self.runs))
            except OSError:
                entries = []
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                sig = _sig(entry.path)
                if sig[1] < 0 and sig[3] < 0 and not _core.is_run_dir(Path(entry.path)):
                    continue
                old = self._rows.get(entry.name)
                if old is not None and old[0] == sig:
                    row = old[1]
                    if row.get("state_status") == "running":
                        row["status"] = _core.run_status(row["_state"])
                    seen[entry.name] = (sig, row)
                    continue
                seen[entry.name] = (sig, self._read(Path(entry.path)))
            self._rows = seen
            self._order = sorted(seen, key=lambda n: (_stamp(n), n), reverse=True)

    def _read(self, path: Path) -> dict[str, Any]:
        self.reads += 1
        state = _core.read_state(path)
        row = {**state, **_core.live_status(path, state), "name": path.name, "path": str(path)}
        row["state_status"] = state.get("status")
        row["_state"] = state
        return row

    def rows(self, *, status: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
        self.refresh()
        out = []
        for name in self._order:
            row = self._rows[name][1]
            if status and row.get("status") != status:
                continue
            if q and q.lower() not in name.lower():
                continue
            out.append(public_row(row))
        return out

    def names(self) -> set[str]:
        self.refresh()
        return set(self._rows)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("_state", "state_status")}


def _stamp(name: str) -> str:
    """The YYYYmmdd-HHMMSS stamp of a run folder name ('' when none), as `runs list` orders."""
    m = _STAMP_RE.search(name)
    return m.group(1) if m else ""
