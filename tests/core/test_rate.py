"""lorakit.rate: THE steady s/step, and `runs show`, `bench` and the report printing the same
figure for the same run (issue 13's "Done when")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit import bench, rate
from lorakit.cli.runs import summarize as runs_summary
from lorakit.events import EVENTS_FILE, DatasetSummary, Event, EventLog, Finished, Progress, Started, read_events
from lorakit.report.summary import summarize as report_summary
from lorakit.run.watch import SpeedWatch


def synthetic_run(tmp_path: Path) -> Path:
    """300 steps at 1.0 s/step, 1.2 s/step from step 200, one 30 s checkpoint pause at step 150,
    tqdm's whole-second elapsed alongside (the figures of the review's measurement)."""
    run = tmp_path / "run-20261202-000000"
    run.mkdir()
    events: list[Event] = [Started(t=0.0, run_dir=str(run), argv=["x", "--num_processes=2"], total_steps=300)]
    events.append(DatasetSummary(t=1.0, batch_size=1, total_steps=300))
    t = 20.0
    for step in range(1, 301):
        t += 1.0 if step < 200 else 1.2
        if step == 150:
            t += 30.0
        events.append(Progress(t=t, step=step, total=300, s_per_step=1.0, elapsed_s=float(int(t))))
    events.append(Finished(t=t + 1, status="done", exit_code=0, duration_s=t + 1))
    with EventLog(run / EVENTS_FILE) as log:
        for ev in events:
            log.append(ev)
    return run


def test_runs_show_bench_and_the_report_give_the_same_s_per_step(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    events = read_events(run)
    progress = [e for e in events if isinstance(e, Progress)]
    figure = rate.steady_s_per_step(progress)
    assert figure == pytest.approx(1.0)  # 197 intervals at 1.0, 101 at 1.2, one pause: the median
    shown = json.loads(json.dumps(runs_summary(run)))["s_per_step"]
    benched = bench.summarize(events, preset=None, run_dir=run, batch_size=1, gpu=None, overrides=[], n_gpus=2)
    reported = report_summary(events, run_dir=run)
    assert shown == figure and reported.s_per_step == figure
    assert benched.steady_s_per_step == round(figure, 4)
    assert benched.images_per_s == reported.images_per_s == pytest.approx(2.0)  # batch 1 × 2 GPUs


def test_a_pause_does_not_move_the_figure() -> None:
    steady = [Progress(t=float(s), step=s, total=50) for s in range(1, 51)]
    paused = [Progress(t=float(s) + (30.0 if s >= 20 else 0.0), step=s, total=50) for s in range(1, 51)]
    assert rate.steady_s_per_step(steady) == rate.steady_s_per_step(paused) == 1.0


def test_warmup_window_restart_and_fallback() -> None:
    # steps 1-2 are warm-up (slow); then 0.5 s/step
    pts = [Progress(t=t, step=s, total=9) for s, t in {1: 30.0, 2: 35.0, 3: 35.5, 4: 36.0, 5: 36.5}.items()]
    assert rate.steady_s_per_step(pts) == 0.5
    # the last 2 intervals only: 2.0 s/step
    late = [*pts, Progress(t=38.5, step=6, total=9), Progress(t=40.5, step=7, total=9)]
    assert rate.steady_s_per_step(late, window=2) == 2.0
    # a resumed launch restarts the counter: only its own intervals count
    resumed = [*late, *(Progress(t=100.0 + 3 * s, step=s, total=9) for s in range(1, 6))]
    assert rate.steady_s_per_step(resumed) == 3.0
    # no interval yet: tqdm's own rate
    assert rate.steady_s_per_step([Progress(t=1.0, step=1, total=9, s_per_step=4.0)]) == 4.0
    assert rate.steady_s_per_step([]) is None


def test_the_live_view_uses_the_same_definition_over_its_window() -> None:
    pts = [Progress(t=float(s) * (1.0 if s < 60 else 2.0), step=s, total=200) for s in range(1, 200)]
    watch = SpeedWatch(window=rate.LIVE_WINDOW)
    for p in pts:
        watch.add(p)
    assert watch.steady_s_per_step == rate.steady_s_per_step(pts, window=rate.LIVE_WINDOW)


def test_a_burst_of_lines_uses_tqdms_elapsed() -> None:
    # a replayed log: every line read within a millisecond, tqdm says one second per step
    burst = [Progress(t=100.0 + s / 1e4, step=s, total=15, elapsed_s=float(4 + s)) for s in range(1, 16)]
    assert rate.steady_s_per_step(burst) == 1.0
    # read times that do resolve the steps win over whole-second elapsed
    real = [Progress(t=0.3 * s, step=s, total=30, elapsed_s=float(int(0.3 * s))) for s in range(1, 31)]
    assert rate.steady_s_per_step(real) == pytest.approx(0.3)
