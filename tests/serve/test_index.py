"""The runs index: the same rows as `lorakit runs list --json`, newest first, and a refresh
re-reads only the runs whose files changed (so 1,000 runs stay fast: scripts/bench_serve.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lorakit.run.folder import list_runs
from lorakit.serve._core import live_status
from lorakit.serve.index import RunIndex


def make(base: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        d = base / f"r{i % 3}-20261202-{120000 + i:06d}"
        d.mkdir(parents=True)
        (d / "events.jsonl").write_text(
            json.dumps({"t": 1.0, "type": "progress", "step": i + 1, "total": 99, "avr_loss": 0.5}) + "\n"
        )
        (d / "state.json").write_text(json.dumps({"status": "done", "step": i + 1, "total": 99}))
        out.append(d)
    (base / "not-a-run").mkdir()
    return out


def test_rows_are_the_cli_rows_newest_first_and_only_changed_runs_are_reread(tmp_path: Path) -> None:
    runs = make(tmp_path / "runs", 30)
    index = RunIndex(tmp_path / "runs", min_interval_s=0)
    rows = index.rows()
    cli_rows = [
        {**r.state, **live_status(r.path, r.state), "name": r.name, "path": str(r.path)}
        for r in list_runs(tmp_path / "runs")
    ]
    assert rows == list(reversed(cli_rows))
    assert index.reads == 30
    index.refresh()
    assert index.reads == 30  # nothing changed: nothing read
    st = runs[4] / "state.json"
    st.write_text(json.dumps({"status": "failed", "step": 5, "total": 99}))
    os.utime(st, ns=(st.stat().st_mtime_ns + 10**9, st.stat().st_mtime_ns + 10**9))
    assert next(r for r in index.rows() if r["name"] == runs[4].name)["status"] == "failed"
    assert index.reads == 31
    assert [r["name"] for r in index.rows(status="failed")] == [runs[4].name]
    assert len(index.rows(q="r1-")) == 10
    (runs[0] / "state.json").unlink()
    (runs[0] / "events.jsonl").unlink()
    runs[0].rmdir()
    assert runs[0].name not in index.names()
