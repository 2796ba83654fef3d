"""Issue 20 item 9 (the smaller faults), each through what the user reads:
`runs list` takes the step from the newest progress event, not a lagging state.json;
`runs show` marks an announced checkpoint whose file is not there; a cut-short final LoRA is
called incomplete with a fix about space / a killed save, and is not named as the run's LoRA."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lorakit.events import EVENTS_FILE, Checkpoint, EventLog, Finished, Progress, Started
from lorakit.kohya.logparse import LogParser
from lorakit.run.finish import Expected
from lorakit.run.runner import ChildResult, finish_run
from tests.run.children.fake_trainer import write_lora


def _run(runs: Path, name: str, state: dict[str, object], events: list[object]) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "state.json").write_text(json.dumps(state), encoding="utf-8")
    with EventLog(run / EVENTS_FILE) as log:
        for ev in events:
            log.append(ev)  # type: ignore[arg-type]
    return run


def test_runs_list_takes_the_step_from_the_newest_progress(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = tmp_path / "runs"
    now = time.time()
    # lorakit itself is alive (this test process), so the run is really running; its state.json
    # was last written at step 4, the events already say 6
    state = {"status": "running", "lorakit_pid": os.getpid(), "step": 4, "total": 8, "started_at": now}
    events = [Started(t=now, run_dir="x", argv=["t"], total_steps=8)]
    events += [Progress(t=now + i, step=i, total=8, avr_loss=0.5) for i in range(1, 7)]
    _run(runs, "lora-20261202-010101", state, events)
    res = lorakit("runs", "list", "--runs-dir", str(runs))
    assert res.code == 0, res.err
    row = next(line for line in res.out.splitlines() if "lora-20261202-010101" in line)
    assert "6/8" in row and "4/8" not in row


def test_runs_show_marks_an_announced_checkpoint_that_is_not_there(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = tmp_path / "runs"
    run = runs / "lora-20261202-020202"
    kept = run / "lora-000001.safetensors"
    gone = run / "lora.safetensors"
    now = time.time()
    state = {"status": "failed", "step": 8, "total": 8, "started_at": now, "lora": None}
    events = [
        Started(t=now, run_dir=str(run), argv=["t"], total_steps=8),
        Checkpoint(t=now + 1, path=str(kept), step=4, epoch=1),
        Checkpoint(t=now + 2, path=str(gone), step=8, epoch=2),
        Finished(t=now + 3, status="failed", exit_code=1, duration_s=3.0, lora=None),
    ]
    _run(runs, run.name, state, events)
    kept.write_bytes(b"x")
    res = lorakit("runs", "show", str(run))
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert any(str(kept) in line and "missing" not in line for line in lines)
    assert any(str(gone) in line and "(missing" in line for line in " ".join(lines).split("checkpoint:"))


def test_a_cut_short_lora_is_incomplete_and_not_the_runs_lora(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lora = run / "lora.safetensors"
    write_lora(lora, 4, "1", "networks.lora", True)
    data = lora.read_bytes()
    lora.write_bytes(data[: len(data) // 2])  # the save was cut short
    result = ChildResult(
        returncode=0, interrupted=False, stopped_for=None, parser=LogParser(), events=[], duration_s=1.0
    )
    out = finish_run(run, result, final_lora=lora, expected=Expected(module="networks.lora", dim=4, alpha=1.0))
    assert (out.status, out.exit_code) == ("failed", 1)
    assert out.diagnosis is not None and "incomplete" in out.diagnosis.message
    assert "cut short" in (out.diagnosis.fix or "") and "trainer version" not in (out.diagnosis.fix or "")
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "failed" and state.get("lora") is None and out.lora is None
    fin = [e for e in out.events if isinstance(e, Finished)]
    assert fin and fin[-1].lora is None
    assert lora.is_file()  # kept for the user to look at, never deleted
