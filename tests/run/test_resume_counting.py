"""`lorakit resume` against a trainer that counts, names and resumes as sd-scripts 48d368fa does
(tests/run/children/counting_trainer.py): the H200 run found a resumed launch training past the
plan and writing its step-30/40 weights over the step-10/20 files. A resumed run must continue at
the saved step, end at the planned total, never replace a file an earlier launch wrote, and a
chained resume must hold too."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lorakit.run.events import Checkpoint, Finished, Progress, WarningEvent, read_events
from tests.conftest import make_kohya_dataset
from tests.run.conftest import stand_in_trainer_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the stand-in trainer Python is a shebang script")

COUNTING = Path(__file__).resolve().parent / "children" / "counting_trainer.py"


@pytest.fixture
def counting_env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return stand_in_trainer_env(isolated_env, tmp_path, COUNTING)


def digests(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.glob("*.safetensors")}


def start(lorakit, env: dict[str, str], data: Path, cwd: Path, total: int, every: int):  # type: ignore[no-untyped-def]
    return lorakit(
        "train", "-p", "comic-style", "-d", str(data), "--quiet", "--force",
        "--set", f"model.checkpoint={env['FAKE_CKPT']}",
        "--set", f"training.max_steps={total}",
        "--set", f"saving.every_n_steps={every}",
        "--set", "saving.save_state=true",
        cwd=cwd,
    )  # fmt: skip


def the_run(cwd: Path) -> Path:
    (run,) = [p for p in (cwd / "runs").iterdir() if p.is_dir()]
    return run


def progress(run: Path) -> list[int]:
    return [e.step for e in read_events(run) if isinstance(e, Progress)]


def test_resume_in_the_first_epoch_ends_at_the_plan_and_keeps_every_file(  # type: ignore[no-untyped-def]
    lorakit, counting_env: dict[str, str], tmp_path: Path
) -> None:
    # the smoke's shape: 40 steps in one epoch, a checkpoint + state every 10, stopped at 22
    data = make_kohya_dataset(tmp_path / "data", {"1_lkstyle": 40})
    counting_env.update(FAKE_STEPS_PER_EPOCH="40", FAKE_STOP_AFTER="22")
    first = start(lorakit, counting_env, data, tmp_path, total=40, every=10)
    assert first.code != 0, first.out
    run = the_run(tmp_path)
    before = digests(run)
    assert sorted(before) == ["comic-style-step00000010.safetensors", "comic-style-step00000020.safetensors"]
    counting_env.pop("FAKE_STOP_AFTER")
    counting_env["FAKE_ARGV"] = str(tmp_path / "argv.jsonl")
    res = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    argv = json.loads((tmp_path / "argv.jsonl").read_text().splitlines()[-1])
    assert "--skip_until_initial_step" in argv and "--initial_step=20" in argv
    after = digests(run)
    assert sorted(after) == [
        "comic-style-step00000010.safetensors",
        "comic-style-step00000020.safetensors",
        "comic-style-step00000030.safetensors",
        "comic-style-step00000040.safetensors",
        "comic-style.safetensors",
    ]
    assert {k: after[k] for k in before} == before  # nothing finished was rewritten
    assert progress(run) == [*range(1, 23), *range(21, 41)]
    ckpts = [(Path(e.path).name, e.step) for e in read_events(run) if isinstance(e, Checkpoint)]
    assert ckpts[-3:] == [
        ("comic-style-step00000030.safetensors", 30),
        ("comic-style-step00000040.safetensors", 40),
        ("comic-style.safetensors", 40),
    ]
    fin = read_events(run)[-1]
    assert isinstance(fin, Finished) and fin.status == "done" and fin.lora == str(run / "comic-style.safetensors")
    assert not [e for e in read_events(run) if isinstance(e, WarningEvent) and e.code == "resume_restarted"]
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["step"], state["total"], state["resume_check"]) == ("done", 40, 40, "ok")


def test_chained_resume_across_epochs(lorakit, counting_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 4 steps an epoch, 12 in all, save every 4: the trainer's own counter falls behind after an
    # epoch skip (sd-scripts#1406), so without lorakit's renaming launch 2 would write its
    # step-8 weights over step 4 and launch 3 its step-12 weights over step 4 again
    data = make_kohya_dataset(tmp_path / "data", {"1_lkstyle": 4})
    counting_env.update(FAKE_STEPS_PER_EPOCH="4", FAKE_STOP_AFTER="6")
    assert start(lorakit, counting_env, data, tmp_path, total=12, every=4).code != 0
    run = the_run(tmp_path)
    first = digests(run)
    assert sorted(first) == ["comic-style-step00000004.safetensors"]

    counting_env["FAKE_STOP_AFTER"] = "5"  # launch 2: run steps 5..9, a checkpoint + state at 8
    assert lorakit("resume", "last", "--quiet", cwd=tmp_path).code != 0
    second = digests(run)
    assert sorted(second) == ["comic-style-step00000004.safetensors", "comic-style-step00000008.safetensors"]
    assert second["comic-style-step00000004.safetensors"] == first["comic-style-step00000004.safetensors"]

    counting_env.pop("FAKE_STOP_AFTER")  # launch 3: from the step-8 state to the end
    res = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    final = digests(run)
    assert sorted(final) == [
        "comic-style-step00000004.safetensors",
        "comic-style-step00000008.safetensors",
        "comic-style-step00000012.safetensors",
        "comic-style.safetensors",
    ]
    assert {k: final[k] for k in second} == second
    assert progress(run) == [*range(1, 7), *range(5, 10), *range(9, 13)]
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["step"], state["launches"]) == ("done", 12, 3)
    assert state["trainer_step_offsets"] == {"comic-style-resume1": 4, "comic-style-resume2": 8}


def test_resume_that_would_overrun_is_refused(lorakit, counting_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 10 steps at 4 an epoch: past the first epoch, sd-scripts 48d368fa would train to step 12
    data = make_kohya_dataset(tmp_path / "data", {"1_lkstyle": 4})
    counting_env.update(FAKE_STEPS_PER_EPOCH="4", FAKE_STOP_AFTER="6")
    assert start(lorakit, counting_env, data, tmp_path, total=10, every=4).code != 0
    run = the_run(tmp_path)
    before = digests(run)
    res = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    assert res.code == 2, res.out + res.err
    assert "would train past the planned total" in res.out + res.err
    assert "Traceback" not in res.out + res.err
    assert digests(run) == before
