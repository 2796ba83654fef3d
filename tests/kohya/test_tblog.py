"""The TensorBoard scalar reader, on event files written by TensorBoard's own writer in the
layout sd-scripts + accelerate produce (tests/tbwrite.py)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

from lorakit.kohya import tblog
from lorakit.kohya.tblog import AVERAGE_TAG, LOSS_TAG, ScalarLog, read_scalars, smoothed
from tests.tbwrite import Launch, step_logs, write_launch

LOSSES = [(s, 0.2 + 0.01 * ((s * 7) % 5)) for s in range(1, 21)]


def values(log: ScalarLog, tag: str = LOSS_TAG) -> list[tuple[int, float]]:
    return [(p.step, round(p.value, 6)) for p in log.series(tag)]


def test_one_launch_gives_every_step_at_full_precision(tmp_path: Path) -> None:
    f = write_launch(tmp_path, "20261123120000", LOSSES, epoch_every=5)
    assert f.parent == tmp_path / "logs" / "20261123120000" / "network_train"
    log = read_scalars(tmp_path)
    # float32 in the file: exact to 1e-7, not sd-scripts' 3-digit progress bar
    assert values(log) == [(s, round(v, 6)) for s, v in LOSSES]
    assert log.series(LOSS_TAG)[2].value == pytest.approx(LOSSES[2][1], rel=1e-6)
    # loss/epoch_average (logged at step=epoch) is not mixed into the per-step series
    assert [p.step for p in log.series(AVERAGE_TAG)] == list(range(1, 21))
    latest = log.latest()
    assert latest is not None and latest.step == 20
    assert log.note is None


def test_resumed_launch_merges_by_step_later_file_winning(tmp_path: Path) -> None:
    write_launch(tmp_path, "20261123120000", [(s, 1.0) for s in range(1, 11)], wall_start=1000.0)
    # the resume loads the state of step 6: steps 7..10 are trained (and logged) again
    write_launch(tmp_path, "20261123130000", [(s, 2.0) for s in range(7, 16)], wall_start=5000.0)
    log = read_scalars(tmp_path)
    assert values(log) == [(s, 1.0) for s in range(1, 7)] + [(s, 2.0) for s in range(7, 16)]


def test_later_write_wins_by_time_not_by_folder_name(tmp_path: Path) -> None:
    # a log prefix or a clock oddity can break name order; the write time decides
    write_launch(tmp_path, "b-launch", [(s, 1.0) for s in range(1, 5)], wall_start=1000.0)
    write_launch(tmp_path, "a-launch", [(s, 2.0) for s in range(3, 7)], wall_start=5000.0)
    assert values(read_scalars(tmp_path)) == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0), (6, 2.0)]


def test_poll_reads_only_what_is_new_and_finds_a_new_launch(tmp_path: Path) -> None:
    log = ScalarLog(tmp_path)
    assert log.poll() is False and log.note == tblog.NO_LOGS
    first = Launch(tmp_path, "20261123120000")
    for s in range(1, 4):
        first.log(step_logs(0.1 * s, 0.1), s)
    assert log.poll() is True
    assert [p.step for p in log.series()] == [1, 2, 3]
    assert log.poll() is False  # nothing new
    first.log(step_logs(0.4, 0.1), 4)
    assert log.poll() is True
    assert [p.step for p in log.series()] == [1, 2, 3, 4]
    first.close()
    second = Launch(tmp_path, "20261123130000")
    second.log(step_logs(0.5, 0.1), 5)
    second.close()
    assert log.poll() is True
    assert [p.step for p in log.series()] == [1, 2, 3, 4, 5]
    assert round(log.latest().value, 6) == 0.5  # type: ignore[union-attr]


def test_a_record_torn_by_the_writer_is_read_once_complete(tmp_path: Path) -> None:
    launch = Launch(tmp_path, "20261123120000")
    for s in range(1, 4):
        launch.log(step_logs(0.1 * s, 0.1), s)
    launch.close()
    full = launch.file.read_bytes()
    launch.file.write_bytes(full[:-7])  # the last record (step 3's lr/unet) cut short
    log = ScalarLog(tmp_path)
    log.poll()
    assert [p.step for p in log.series()] == [1, 2, 3]
    assert [p.step for p in log.series(AVERAGE_TAG)] == [1, 2, 3]
    launch.file.write_bytes(full)
    log.poll()
    assert log.note is None


def test_a_corrupt_file_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    good = write_launch(tmp_path, "20261123120000", LOSSES[:5])
    bad = good.parent.parent.parent / "20261123130000" / "network_train" / "events.out.tfevents.1.host.1.0"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff" * 64)
    log = read_scalars(tmp_path)
    assert [p.step for p in log.series()] == [1, 2, 3, 4, 5]
    assert log.note is None


def test_only_a_corrupt_file_means_no_per_step_loss(tmp_path: Path) -> None:
    bad = tmp_path / "logs" / "20261123130000" / "network_train" / "events.out.tfevents.1.host.1.0"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00" * 8 + b"\xff" * 64)
    log = read_scalars(tmp_path)
    assert log.series() == [] and log.latest() is None
    assert log.note is not None and "hold no per-step loss" in log.note and "progress bar" in log.note


def test_a_reader_error_marks_the_file_and_is_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_launch(tmp_path, "20261123120000", LOSSES[:3])
    f = write_launch(tmp_path, "20261123130000", [(4, 0.5)])
    module = tblog._accumulator_module()
    real = module.EventAccumulator

    class Failing(real):  # type: ignore[misc, valid-type]
        def Reload(self):  # type: ignore[no-untyped-def]
            if self.path == str(f):
                raise OSError("Input/output error")
            return super().Reload()

    monkeypatch.setattr(module, "EventAccumulator", Failing)
    log = read_scalars(tmp_path)
    assert [p.step for p in log.series()] == [1, 2, 3]
    assert log.note == f"some TensorBoard event files could not be read ({f.name}: OSError: Input/output error)"
    assert log.poll() is False  # the broken file is not retried


def test_without_the_tensorboard_package_nothing_is_read_and_the_note_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_launch(tmp_path, "20261123120000", LOSSES)
    # as if `tensorboard` were not installed: importing it raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    log = read_scalars(tmp_path)
    assert not log.available and log.series() == []
    assert log.note == tblog.READER_MISSING


def test_smoothed_is_debiased_and_survives_nan() -> None:
    assert smoothed([0.5] * 10) == pytest.approx([0.5] * 10)  # no pull towards 0 at the start
    assert smoothed([1.0, 3.0], span=3) == pytest.approx([1.0, (0.5 * 1 + 1 * 3) / 1.5])
    out = smoothed([1.0, 1.0, 2.0, 2.0, 2.0], span=3)
    assert out[:2] == pytest.approx([1.0, 1.0]) and 1.0 < out[2] < out[3] < out[4] < 2.0
    with_nan = smoothed([1.0, math.nan, 1.0], span=3)
    assert math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(1.0)
    assert smoothed([]) == []


def test_smoothing_span_scales_with_the_run() -> None:
    assert tblog.smoothing_span(12) == 5
    assert tblog.smoothing_span(1000) == 40
    assert tblog.smoothing_span(100_000) == 200


def test_a_launch_with_a_shifted_counter_is_put_on_the_runs_steps(tmp_path: Path) -> None:
    """sd-scripts#1406: resumed at run step 12 with 5 steps per epoch, the trainer counts from 2."""
    write_launch(tmp_path, "20261123120000", [(s, 1.0) for s in range(1, 13)])
    time.sleep(0.01)
    resumed_at = time.time()  # the second launch starts (its file's first record is written later)
    write_launch(tmp_path, "20261123130000", [(s, 2.0) for s in range(3, 9)])
    asked: list[float] = []

    def offset(first_write: float) -> int:
        asked.append(first_write)
        return 10 if first_write >= resumed_at else 0

    log = read_scalars(tmp_path, step_offset=offset)
    assert values(log) == [(s, 1.0) for s in range(1, 13)] + [(s, 2.0) for s in range(13, 19)]
    assert len(asked) == 2 and asked[0] < resumed_at <= asked[1]  # once per file, with its first write time
    log.poll()
    assert len(asked) == 2
