"""Repeated windows (median and spread) and `bench --compare` (interleaved configs in one call),
through the real CLI with the recorded SDXL log replayed by the fake trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.bench import compare_spec, interleaved, median_and_spread, windows
from lorakit.run.events import Progress
from tests.run.conftest import fixture_log
from tests.run.test_cli_run import trainer_env  # noqa: F401  (fixture)


def _progress(times: dict[int, float]) -> list[Progress]:
    return [Progress(t=t, step=s, total=max(times)) for s, t in times.items()]


def test_windows_after_warmup_and_their_spread() -> None:
    # warm-up steps 1-2 slow, then 0.5 s/step for 8 steps, then 1.0 s/step for 8 steps
    times = {1: 30.0, 2: 35.0}
    t = 35.0
    for s in range(3, 11):
        t += 0.5
        times[s] = t
    for s in range(11, 19):
        t += 1.0
        times[s] = t
    rates = windows(_progress(times))  # type: ignore[arg-type]
    assert rates == pytest.approx([0.5, 0.5, 1.0, 1.0])
    med, spread = median_and_spread(rates)
    assert med == pytest.approx(0.75) and spread == pytest.approx(0.5 / 0.75)
    assert median_and_spread([]) == (None, None)


def test_a_short_tail_is_not_a_window_and_a_restart_starts_over() -> None:
    times = {s: float(s) for s in range(1, 8)}  # steps 2..7: one window of 4, a tail of 1
    assert windows(_progress(times)) == pytest.approx([1.0])  # type: ignore[arg-type]
    restarted = _progress({s: float(s) for s in range(1, 12)}) + _progress({s: 100 + 2.0 * s for s in range(1, 8)})
    assert windows(restarted) == pytest.approx([2.0])  # type: ignore[arg-type]


def test_interleaving_and_specs(tmp_path: Path) -> None:
    assert interleaved(["a", "b"], 3) == ["a", "b", "b", "a", "a", "b"]
    assert compare_spec("training.batch_size=8 'training.resolution=[768, 768]'") == [
        "training.batch_size=8",
        "training.resolution=[768, 768]",
    ]
    layer = tmp_path / "b.yaml"
    layer.write_text("training:\n  batch_size: 8\n  gradient_checkpointing: true\n", encoding="utf-8")
    assert compare_spec(str(layer)) == ["training.batch_size=8", "training.gradient_checkpointing=true"]


def test_compare_runs_configs_interleaved(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    trainer_env.update(
        FAKE_REPLAY=str(fixture_log("sdxl_success.log")), FAKE_LORA="1", FAKE_CHUNK="64", FAKE_DELAY="0.004"
    )
    cwd = tmp_path / "w"
    cwd.mkdir()
    out = tmp_path / "cmp.json"
    res = lorakit(
        "bench", "-p", "comic-style", "--set", f"model.checkpoint={trainer_env['FAKE_CKPT']}",
        "--steps", "6", "--images", "2", "--rounds", "2", "--json", "--out", str(out),
        "--compare", "", "--compare", "training.batch_size=2", cwd=cwd,
    )  # fmt: skip
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert json.loads(out.read_text(encoding="utf-8")) == summary
    a, b = summary["configs"]
    assert a["label"] == "(common config)" and b["label"] == "training.batch_size=2"
    assert [len(a["runs"]), len(b["runs"])] == [2, 2]
    assert a["batch_size"] == 1 and b["batch_size"] == 2
    assert a["ratio"] == 1.0 and b["ratio"] is not None
    # run order A B B A: the run folders' start times interleave
    order = sorted(
        [(r["run_dir"], "a") for r in a["runs"]] + [(r["run_dir"], "b") for r in b["runs"]],
        key=lambda x: (Path(x[0]) / "spec.yaml").stat().st_mtime,
    )
    assert [o for _, o in order] == ["a", "b", "b", "a"]
    for r in a["runs"] + b["runs"]:
        assert r["windows_s_per_step"] and r["median_s_per_step"] is not None
