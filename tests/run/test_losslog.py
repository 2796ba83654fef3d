"""A resumed run's TensorBoard steps on the run's own count (sd-scripts#1406 offsets)."""

from __future__ import annotations

import time
from pathlib import Path

from lorakit.events import EventLog, Started
from lorakit.report.build import build_report
from lorakit.run.folder import write_state
from lorakit.run.losslog import launch_step_offsets, output_name, read_run_scalars
from tests.tbwrite import write_launch

ARGV = ["python", "-m", "accelerate.commands.launch", "x/sdxl_train_network.py", "--output_name=comic"]


def resumed_run(run: Path) -> float:
    """Launch 1 logs steps 1-12; `lorakit resume` at run step 12 with 5 steps per epoch: the
    trainer's counter restarts at 2 (offset 10, recorded by resume in state.json)."""
    run.mkdir(parents=True)
    with EventLog(run / "events.jsonl") as log:
        log.append(Started(t=time.time(), run_dir=str(run), argv=ARGV, total_steps=20))
        write_launch(run, "20261123120000", [(s, 1.0) for s in range(1, 13)])
        time.sleep(0.01)
        resumed_at = time.time()
        log.append(
            Started(t=resumed_at, run_dir=str(run), argv=[*ARGV, "--resume=x", "--output_name=comic-resume1"],
                    total_steps=20, resumed_from=str(run / "comic-000002-state"))
        )  # fmt: skip
    write_state(run, {"status": "done", "trainer_step_offsets": {"comic-resume1": 10}})
    write_launch(run, "20261123130000", [(s, 2.0) for s in range(3, 11)])
    return resumed_at


def test_output_name_is_the_last_given() -> None:
    assert output_name([*ARGV, "--output_name=comic-resume1"]) == "comic-resume1"
    assert output_name(["x.py"]) is None


def test_offsets_come_from_the_launch_that_wrote_the_file(tmp_path: Path) -> None:
    resumed_at = resumed_run(tmp_path / "run")
    offset = launch_step_offsets(tmp_path / "run")
    assert offset(resumed_at - 0.005) == 0  # written by the first launch
    assert offset(resumed_at + 1) == 10  # by the resumed one
    assert offset(0.0) == 0  # before any launch (not lorakit's): as written


def test_report_of_a_resumed_run_is_one_curve_on_the_runs_steps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    resumed_run(run)
    log = read_run_scalars(run)
    assert [(p.step, p.value) for p in log.series()] == [(s, 1.0) for s in range(1, 13)] + [
        (s, 2.0) for s in range(13, 21)
    ]
    s = build_report(run).summary
    assert [lp.step for lp in s.losses] == list(range(1, 21))
    assert s.loss_source == "tensorboard"
