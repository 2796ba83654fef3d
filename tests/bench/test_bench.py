"""`lorakit bench` through the real CLI, the recorded SDXL log replayed by the fake trainer
at a known pace: the figures it reports must be the ones that pace gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit import rate
from lorakit.bench import bench_overrides, steady_s_per_step, time_to_first_step
from lorakit.events import Progress, Started, read_events
from tests.run.conftest import fixture_log
from tests.run.test_cli_run import trainer_env  # noqa: F401  (fixture)


def test_steady_rate_excludes_warmup() -> None:
    events = [Started(t=0.0, run_dir="r", argv=[])]
    # step 1 after 30 s (load + cache), step 2 after 5 s more (warm-up), then 0.5 s per step
    times = {1: 30.0, 2: 35.0, 3: 35.5, 4: 36.0, 5: 36.5, 6: 37.0}
    events += [Progress(t=t, step=s, total=6) for s, t in times.items()]
    assert steady_s_per_step(events) == pytest.approx(0.5)
    assert time_to_first_step(events) == pytest.approx(30.0)


def test_bench_overrides_turn_off_saving_and_sampling() -> None:
    o = bench_overrides(12)
    assert "training.max_steps=12" in o and "saving.every_n_epochs=null" in o and "sampling.prompts=[]" in o


def test_bench_cli_end_to_end(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    trainer_env.update(
        FAKE_REPLAY=str(fixture_log("sdxl_success.log")), FAKE_LORA="1", FAKE_CHUNK="64", FAKE_DELAY="0.004"
    )
    cwd = tmp_path / "w"
    cwd.mkdir()
    res = lorakit(
        "bench", "-p", "comic-style", "--set", f"model.checkpoint={trainer_env['FAKE_CKPT']}",
        "--steps", "6", "--images", "2", "--json", cwd=cwd,
    )  # fmt: skip
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert result["status"] == "done" and result["batch_size"] == 1
    assert result["steps"] == 8  # the recorded run's own count (its bar ends at 8/8)
    sps = result["steady_s_per_step"]
    run = Path(result["run_dir"])
    # the one definition over the run's own events; `runs show` and the report print the same
    progress = [e for e in read_events(run) if isinstance(e, Progress)]
    assert len(progress) >= 5 and sps == round(rate.steady_s_per_step(progress) or 0.0, 4) > 0
    shown = json.loads(lorakit("runs", "show", str(run), "--json", cwd=cwd).out)["s_per_step"]
    assert round(shown, 4) == sps
    assert f"<td>{shown:.3f}</td>" in (run / "report.html").read_text(encoding="utf-8")
    assert result["images_per_s"] == pytest.approx(1 / sps, rel=0.01)
    assert result["time_to_first_step_s"] is not None and result["peak_vram_gib"] is None  # no GPU here
    argv = (run / "command.txt").read_text(encoding="utf-8")
    assert "--max_train_steps=6" in argv and "save_every_n_epochs" not in argv
    assert json.loads((run / "bench.json").read_text(encoding="utf-8")) == result
    toml = (run / "dataset.toml").read_text(encoding="utf-8")
    assert "1_lkbench thing" in toml  # the generated noise dataset
