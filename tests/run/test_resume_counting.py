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

from lorakit.events import Checkpoint, Finished, Progress, WarningEvent, read_events
from lorakit.kohya.logparse import LogParser
from lorakit.run.resume import ResumeCheck, SavedState, launch_name, trainer_step_offset
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


def interrupted(
    lorakit, env: dict[str, str], tmp_path: Path, *, images: int, total: int, every: int, stop: int
) -> Path:  # type: ignore[no-untyped-def]
    """A run of `images` images × 1 repeat (one step each per epoch) stopped after `stop` steps."""
    data = make_kohya_dataset(tmp_path / "data", {"1_lkstyle": images})
    env.update(FAKE_STEPS_PER_EPOCH=str(images), FAKE_STOP_AFTER=str(stop))
    assert start(lorakit, env, data, tmp_path, total=total, every=every).code != 0
    return the_run(tmp_path)


def progress(run: Path) -> list[int]:
    return [e.step for e in read_events(run) if isinstance(e, Progress)]


def test_resume_in_the_first_epoch_ends_at_the_plan_and_keeps_every_file(  # type: ignore[no-untyped-def]
    lorakit, counting_env: dict[str, str], tmp_path: Path
) -> None:
    # the smoke's shape: 40 steps in one epoch, a checkpoint + state every 10, stopped at 22
    run = interrupted(lorakit, counting_env, tmp_path, images=40, total=40, every=10, stop=22)
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
    run = interrupted(lorakit, counting_env, tmp_path, images=4, total=12, every=4, stop=6)
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
    run = interrupted(lorakit, counting_env, tmp_path, images=4, total=10, every=4, stop=6)
    before = digests(run)
    res = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    assert res.code == 2, res.out + res.err
    assert "would train past the planned total" in res.out + res.err
    assert "Traceback" not in res.out + res.err
    assert digests(run) == before


def _loaded() -> LogParser:
    parser = LogParser()
    parser.loaded_state = (2, 20)  # the trainer printed 'load train state ...' for the state
    return parser


def _check(run: Path, launch: str = "lora-resume1") -> tuple[ResumeCheck, Path]:
    state = SavedState(run / "lora-step00000020-state", epoch=2, step=20, file_step=20)
    return ResumeCheck(state, 40, 10, run_dir=run, output_name="lora", launch_name=launch), run


def test_a_name_taken_is_never_replaced(tmp_path: Path) -> None:
    check, run = _check(tmp_path)
    (run / "lora-step00000030.safetensors").write_bytes(b"finished earlier")
    (run / "lora-resume1-step00000010.safetensors").write_bytes(b"this launch")
    held = check(Checkpoint(t=1, path=str(run / "lora-resume1-step00000010.safetensors"), step=10), _loaded())
    assert [e for e in held if isinstance(e, Checkpoint)] == []  # held until the save is complete
    out = check(Progress(t=2, step=11, total=40), _loaded())
    warn = [e for e in out if isinstance(e, WarningEvent)]
    assert [w.code for w in warn] == ["kept_aside"] and "nothing was overwritten" in warn[0].message
    assert (run / "lora-step00000030.safetensors").read_bytes() == b"finished earlier"
    assert (run / "lora-resume1-step00000010.safetensors").read_bytes() == b"this launch"
    (ckpt,) = [e for e in out if isinstance(e, Checkpoint)]
    assert ckpt.path.endswith("lora-resume1-step00000010.safetensors") and ckpt.step == 30


def test_a_file_held_when_the_trainer_failed_keeps_its_launch_name(tmp_path: Path) -> None:
    check, run = _check(tmp_path)
    (run / "lora-resume1-step00000010.safetensors").write_bytes(b"whole")
    (run / "lora-resume1-step00000020.safetensors").write_bytes(b"half")
    check(Checkpoint(t=1, path=str(run / "lora-resume1-step00000010.safetensors"), step=10), _loaded())
    check(Checkpoint(t=2, path=str(run / "lora-resume1-step00000020.safetensors"), step=20), _loaded())
    out = check.release(complete=False)  # the trainer exited with an error right after the second save
    assert [Path(e.path).name for e in out if isinstance(e, Checkpoint)] == ["lora-step00000030.safetensors"]
    assert [e.code for e in out if isinstance(e, WarningEvent)] == ["checkpoint_incomplete"]
    assert (run / "lora-resume1-step00000020.safetensors").read_bytes() == b"half"
    assert not (run / "lora-step00000040.safetensors").exists()


def test_launch_names_never_reuse_a_prefix_on_disk(tmp_path: Path) -> None:
    (tmp_path / "lora-resume1-step00000010.safetensors").write_bytes(b"x")  # left by a launch
    assert launch_name(tmp_path, "lora", 2) == "lora-resume2"
    assert launch_name(tmp_path, "lora", 3) == "lora-resume2"
    (tmp_path / "lora-resume2.safetensors").write_bytes(b"x")
    assert launch_name(tmp_path, "lora", 3) == "lora-resume3"


@pytest.mark.parametrize(
    ("state_step", "per_epoch", "offset"),
    [(20, 40, 0), (20, 10, 20), (25, 10, 20), (9, 10, 0), (10, 10, 10), (4, None, 0)],
)
def test_trainer_step_offset(state_step: int, per_epoch: int | None, offset: int) -> None:
    # sd-scripts 48d368fa: after skipping S // L epochs its global_step is S mod L
    assert trainer_step_offset(state_step, per_epoch) == offset
