"""The runner against a real child process replaying recorded sd-scripts output byte for byte
(tests/fixtures/sdscripts): events, diagnoses, exit codes, the NaN early stop, resume checks."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    ErrorEvent,
    Finished,
    Progress,
    Started,
    StateSaved,
    WarningEvent,
    read_events,
)
from lorakit.run import folder
from lorakit.run.finish import Expected
from lorakit.run.resume import ResumeCheck, SavedState
from lorakit.run.runner import Options, finish_run, supervise
from tests.run.conftest import fake_child, fixture_log

SDXL16 = Expected(module="networks.lora", dim=16, alpha=16.0, unet_only=True)
posix_only = pytest.mark.skipif(os.name != "posix", reason="signals to a process group as on POSIX")


def replay(run_dir: Path, log: str, opts: Options | None = None, **env: str):  # type: ignore[no-untyped-def]
    child = fake_child(run_dir, name="sdxl_success", dim=16, alpha=16, replay=str(fixture_log(log)), **env)
    result = supervise(child, run_dir, opts or Options(gpu_index=None, total_steps=8))
    out = finish_run(run_dir, result, final_lora=run_dir / "sdxl_success.safetensors", expected=SDXL16)
    return result, out


@pytest.mark.parametrize("chunk", ["65536", "7"])
def test_success_replay(run_dir: Path, chunk: str) -> None:
    result, out = replay(run_dir, "sdxl_success.log", lora="1", chunk=chunk)
    assert (out.status, out.exit_code, result.returncode) == ("done", 0, 0)
    assert (run_dir / "train.log").read_bytes() == fixture_log("sdxl_success.log").read_bytes()
    events = read_events(run_dir)
    assert [type(e).__name__ for e in events[:3]] == ["Started", "DatasetSummary", "EpochStarted"]
    assert isinstance(events[-1], Finished) and events[-1].status == "done"
    assert [p.step for p in events if isinstance(p, Progress)] == list(range(1, 9))
    assert [c.path for c in events if isinstance(c, Checkpoint)] == [
        "<RUN>/sdxl_success-000001.safetensors",
        "<RUN>/sdxl_success.safetensors",
    ]
    assert [s.step for s in events if isinstance(s, StateSaved)] == [4, 8]
    ts = [e.t for e in events]
    assert ts == sorted(ts) and all(t > 1e9 for t in ts)  # stamped by the runner, in order
    state = folder.read_state(run_dir)
    assert (state["status"], state["step"], state["total"], state["epoch"], state["avr_loss"]) == (
        "done",
        8,
        8,
        2,
        1.03,
    )
    assert state["last_checkpoint"] == "<RUN>/sdxl_success.safetensors"
    assert state["last_state"] == "<RUN>/sdxl_success-state"


@posix_only
def test_nan_stops_the_run_early(run_dir: Path) -> None:
    t0 = time.monotonic()
    # after the log the fake trainer "keeps training" for 60 s: lorakit must not wait for that
    result, out = replay(run_dir, "sdxl_nan.log", sleep="60")
    assert time.monotonic() - t0 < 30
    assert result.stopped_for == "nan" and not result.interrupted
    assert (out.status, out.exit_code) == ("failed", 1)
    assert out.diagnosis is not None and out.diagnosis.kind == "nan"
    assert out.diagnosis.fix is not None and "optimizer.lr" in out.diagnosis.fix
    errors = [e for e in read_events(run_dir) if isinstance(e, ErrorEvent)]
    assert [e.kind for e in errors] == ["nan"] and errors[0].fix  # the fix is in the event too
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    assert any('"avr_loss":"nan"' in line for line in lines)  # strict JSON
    for line in lines:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    progress = [e for e in read_events(run_dir) if isinstance(e, Progress)]
    assert progress[2].avr_loss is not None and math.isnan(progress[2].avr_loss)


def test_nan_without_stop_still_fails(run_dir: Path) -> None:
    result, out = replay(run_dir, "sdxl_nan.log", Options(gpu_index=None, stop_on_nan=False), lora="1")
    assert result.returncode == 0 and result.stopped_for is None
    assert (out.status, out.exit_code) == ("failed", 1)  # sd-scripts exited 0 with a NaN LoRA
    assert out.diagnosis is not None and out.diagnosis.kind == "nan"
    assert out.copies == []


@pytest.mark.parametrize(
    ("log", "kind", "code", "evidence"),
    [
        ("sdxl_oom.log", "oom", 1, "torch.OutOfMemoryError: CUDA out of memory."),
        ("missing_module.log", "missing_package", 3, "ModuleNotFoundError: No module named 'lycoris'"),
        ("missing_model.log", "missing_model", 2, 'ValueError: The provided pretrained_model_name_or_path "<MODEL>'),
    ],
)
def test_recorded_failures(run_dir: Path, log: str, kind: str, code: int, evidence: str) -> None:
    result, out = replay(run_dir, log, exit="1")
    assert result.returncode == 1
    assert (out.status, out.exit_code) == ("failed", code)
    assert out.diagnosis is not None and out.diagnosis.kind == kind
    assert out.diagnosis.evidence is not None and out.diagnosis.evidence.startswith(evidence)
    events = read_events(run_dir)
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == [kind]
    fin = events[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.exit_code, fin.lora) == ("failed", code, None)
    assert folder.read_state(run_dir)["diagnosis"]["kind"] == kind


def test_missing_module_fix_names_the_trainer_python(run_dir: Path) -> None:
    from lorakit.run.diagnose import Context

    ctx = Context(trainer_python="/opt/kohya/venv/bin/python")
    child = fake_child(run_dir, replay=str(fixture_log("missing_module.log")), exit="1")
    result = supervise(child, run_dir, Options(gpu_index=None, context=ctx))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", ctx=ctx)
    assert out.diagnosis is not None
    assert "/opt/kohya/venv/bin/python -m pip install lycoris-lora" in (out.diagnosis.fix or "")


def test_resume_replay_continues_the_count(run_dir: Path) -> None:
    state = SavedState(run_dir / "sdxl_success-000001-state", epoch=1, step=4, file_step=4)
    check = ResumeCheck(state, planned_total=12, steps_per_epoch=4)
    opts = Options(gpu_index=None, total_steps=12, resumed_from=str(state.path), transform=check)
    child = fake_child(run_dir, replay=str(fixture_log("sdxl_resume.log")))
    result = supervise(child, run_dir, opts)
    assert check.ok is True and check.problems == []
    events = read_events(run_dir)
    started = events[0]
    assert isinstance(started, Started) and started.resumed_from == str(state.path)
    assert [(p.step, p.total) for p in events if isinstance(p, Progress)] == [(s, 12) for s in range(5, 13)]
    assert [(c.path, c.step) for c in events if isinstance(c, Checkpoint)] == [
        ("<RUN>/sdxl_resume-000002.safetensors", 8),
        ("<RUN>/sdxl_resume.safetensors", 12),
    ]
    assert [e.epoch for e in events if isinstance(e, EpochStarted)] == [2, 3]
    assert not [e for e in events if isinstance(e, WarningEvent)]
    assert result.returncode == 0
    state = folder.read_state(run_dir)
    assert (state["step"], state["total"]) == (12, 12)  # the run's count, not the trainer's 8/12


def test_samples_of_an_earlier_launch_are_not_announced_again(run_dir: Path) -> None:
    (run_dir / "sample").mkdir()
    (run_dir / "sample" / "e2e_e000001_00_20261123213705.png").write_bytes(b"\x89PNG")
    result = supervise(fake_child(run_dir), run_dir, Options(gpu_index=None))
    assert not [e for e in result.events if type(e).__name__ == "Sample"]


def test_resume_that_restarts_is_flagged_loudly(run_dir: Path) -> None:
    # a "resumed" launch whose trainer ignored the state: it prints a fresh run's output
    state = SavedState(run_dir / "sdxl_success-000001-state", epoch=1, step=4, file_step=4)
    check = ResumeCheck(state, planned_total=8, steps_per_epoch=4)
    child = fake_child(run_dir, replay=str(fixture_log("sdxl_success.log")))
    supervise(child, run_dir, Options(gpu_index=None, transform=check))
    assert check.ok is False
    warnings = [e for e in read_events(run_dir) if isinstance(e, WarningEvent) and e.code == "resume_restarted"]
    assert len(warnings) == 2
    assert "never reported loading the saved state sdxl_success-000001-state" in warnings[0].message
    assert "restarted at epoch 1/2, not at epoch 2" in warnings[1].message
    progress = [p.step for p in read_events(run_dir) if isinstance(p, Progress)]
    assert progress == list(range(1, 9))  # not shifted: it really started over


def test_slow_run_warning(run_dir: Path) -> None:
    opts = Options(gpu_index=None, total_steps=8, expected_s_per_step=1e-6)
    child = fake_child(run_dir, replay=str(fixture_log("sdxl_success.log")), chunk="64", delay="0.005")
    supervise(child, run_dir, opts)
    slow = [e for e in read_events(run_dir) if isinstance(e, WarningEvent) and e.code == "slow"]
    assert len(slow) == 1 and "slower than expected" in slow[0].message
    assert "Sysmem Fallback" in (slow[0].fix or "")
    state = folder.read_state(run_dir)
    assert state["steady_s_per_step"] is not None and state["steady_s_per_step"] > 0


def test_dataset_summary_written_once(run_dir: Path) -> None:
    replay(run_dir, "sdxl_success_80col.log", lora="1")
    summaries = [e for e in read_events(run_dir) if isinstance(e, DatasetSummary)]
    assert len(summaries) == 1 and summaries[0].total_steps == 8


def test_real_resume_with_skip_until_initial_step(run_dir: Path, tmp_path: Path) -> None:
    """The resumed launch of the H200 smoke (2026-12-02): a 40-step run, 10 steps an epoch, resumed
    from its step-20 state with `--skip_until_initial_step --initial_step=20` and the launch's own
    output name. sd-scripts skipped two epochs and restarted its counter at 0 (its files say
    step 10 and 20 for run steps 30 and 40: sd-scripts#1406); lorakit must read it as steps 21..40,
    rename each file to the run's name once complete, and leave the earlier files alone."""
    text = fixture_log("sdxl_resume_skip.log").read_text(encoding="utf-8")
    log = tmp_path / "resume.log"
    log.write_text(text.replace("<RUN>", str(run_dir)), encoding="utf-8")
    earlier = {}
    for name in ("comic-style-step00000010", "comic-style-step00000020", "comic-style-000001", "comic-style-000002"):
        (run_dir / f"{name}.safetensors").write_bytes(name.encode())
        earlier[name] = name.encode()
    # what the trainer writes while it prints the lines (the replay only prints)
    for name in ("step00000010", "000003", "step00000020"):
        (run_dir / f"comic-style-resume1-{name}.safetensors").write_bytes(f"launch2 {name}".encode())
    (run_dir / "comic-style-resume1.safetensors").write_bytes(b"launch2 final")
    state = SavedState(run_dir / "comic-style-000002-state", epoch=2, step=20, file_step=20)
    check = ResumeCheck(state, 40, 10, run_dir=run_dir, output_name="comic-style", launch_name="comic-style-resume1")
    child = fake_child(run_dir, name="comic-style-resume1", replay=str(log))
    result = supervise(child, run_dir, Options(gpu_index=None, total_steps=40, transform=check))
    tail = check.release(complete=result.returncode == 0)
    assert result.returncode == 0 and check.ok is True and check.problems == []
    events = [*read_events(run_dir), *tail]
    assert [(p.step, p.total) for p in events if isinstance(p, Progress)][-1] == (40, 40)
    assert sorted({p.step for p in events if isinstance(p, Progress)}) == list(range(21, 41))
    assert [(Path(c.path).name, c.step) for c in events if isinstance(c, Checkpoint)] == [
        ("comic-style-step00000030.safetensors", 30),
        ("comic-style-000003.safetensors", 30),
        ("comic-style-step00000040.safetensors", 40),
        ("comic-style.safetensors", 40),
    ]
    states = [(Path(s.path).name, s.step) for s in events if isinstance(s, StateSaved)]
    assert states[0] == ("comic-style-resume1-step00000010-state", 30)  # the trainer wrote 'step 10'
    assert not [e for e in events if isinstance(e, WarningEvent) and e.code in ("resume_restarted", "past_plan")]
    for name, data in earlier.items():
        assert (run_dir / f"{name}.safetensors").read_bytes() == data
    assert (run_dir / "comic-style-step00000030.safetensors").read_bytes() == b"launch2 step00000010"
    assert (run_dir / "comic-style.safetensors").read_bytes() == b"launch2 final"
    assert not list(run_dir.glob("comic-style-resume1*.safetensors"))
