"""`lorakit train` for real, `lorakit runs ...` and `lorakit resume` through the CLI, with the
fake trainer standing in for the trainer's Python (argv exactly as lorakit builds it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorakit.events import Finished, Progress, Started, WarningEvent, read_events
from tests.conftest import EXAMPLE, tree_bytes
from tests.run.conftest import FAKE_TRAINER, fixture_log, stand_in_trainer_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fake trainer Python is a shebang script")


@pytest.fixture
def trainer_env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An sd-scripts-shaped folder and a 'python' that is the fake trainer."""
    return stand_in_trainer_env(isolated_env, tmp_path, FAKE_TRAINER)


def train_args(env: dict[str, str], *extra: str) -> list[str]:
    return ["train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={env['FAKE_CKPT']}", *extra]


def only_run(cwd: Path) -> Path:
    runs = [p for p in (cwd / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_train_success_end_to_end(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "work"
    cwd.mkdir()
    loras = tmp_path / "ComfyUI" / "models" / "loras"
    trainer_env["FAKE_LORA"] = "1"
    dataset_before = tree_bytes(EXAMPLE)
    res = lorakit(*train_args(trainer_env, "--set", f"output.lora_folders=[{loras}]"), cwd=cwd)
    assert res.code == 0, res.err + res.out
    run = only_run(cwd)
    assert run.name.startswith("comic-style-")
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(
        [
            "command.txt",
            "comic-style.safetensors",
            "dataset.toml",
            "events.jsonl",
            "report.html",  # no loss was printed by this stand-in run, so no report.png
            "spec.yaml",
            "state.json",
            "train.log",
        ]
    )
    assert "lorakit: training started in" in res.out and "finished: done (exit 0)" in res.out
    assert (loras / "comic-style.safetensors").read_bytes() == (run / "comic-style.safetensors").read_bytes()
    events = read_events(run)
    started = events[0]
    assert isinstance(started, Started) and started.total_steps == 1800
    assert f"--output_dir={run}" in started.argv and "--network_dim=128" in started.argv
    fin = events[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.exit_code) == ("done", 0)
    assert tree_bytes(EXAMPLE) == dataset_before
    assert sorted(p.name for p in cwd.iterdir()) == ["runs"]  # nothing else where we stand

    listed = lorakit("runs", "list", "--json", cwd=cwd)
    assert listed.code == 0
    (row,) = json.loads(listed.out)
    assert row["name"] == run.name and row["status"] == "done" and row["exit_code"] == 0
    shown = lorakit("runs", "show", "last", "--json", cwd=cwd)
    info = json.loads(shown.out)
    assert info["finished"]["status"] == "done" and info["state"]["copies"] == [str(loras / "comic-style.safetensors")]
    text = lorakit("runs", "show", run.name[:16], cwd=cwd)
    assert text.code == 0 and "finished: done (exit 0)" in text.out
    followed = lorakit("runs", "tail", "last", "-f", "--events", "-n", "1", cwd=cwd)  # ends: the run is over
    assert followed.code == 0 and json.loads(followed.out)["type"] == "finished"


def test_train_crash_exit_1_with_message(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer_env["FAKE_RAISE"] = "CUDA kernel went sideways"
    res = lorakit(*train_args(trainer_env), cwd=tmp_path)
    assert res.code == 1, res.err
    assert "the trainer crashed: RuntimeError: CUDA kernel went sideways" in res.err
    assert "Fix:" in res.err and "lorakit runs tail" in res.err
    run = only_run(tmp_path)
    assert json.loads((run / "state.json").read_text())["status"] == "failed"
    tail = lorakit("runs", "tail", "last", "-n", "1", cwd=tmp_path)
    assert tail.out.strip() == "RuntimeError: CUDA kernel went sideways"


def test_bad_config_creates_no_run_folder(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit(*train_args(trainer_env, "--set", "training.batch_size=0"), cwd=tmp_path)
    assert res.code == 2
    assert not (tmp_path / "runs").exists()


def test_no_trainer_is_exit_3(lorakit, isolated_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "base.safetensors"
    ckpt.write_bytes(b"x")
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={ckpt}", cwd=tmp_path)
    assert res.code == 3 and "sd-scripts" in res.err


@pytest.mark.parametrize(
    ("log", "code", "kind"),
    [
        ("sdxl_oom.log", 1, "oom"),
        ("sdxl_nan.log", 1, "nan"),
        ("missing_module.log", 3, "missing_package"),
        ("missing_model.log", 2, "missing_model"),
    ],
)
def test_recorded_failures_exit_codes(  # type: ignore[no-untyped-def]
    lorakit, trainer_env: dict[str, str], tmp_path: Path, log: str, code: int, kind: str
) -> None:
    path = fixture_log(log)
    trainer_env.update(FAKE_REPLAY=str(path), FAKE_EXIT="1")
    res = lorakit(*train_args(trainer_env, "--quiet"), cwd=tmp_path)
    assert res.code == code, res.err
    state = json.loads((only_run(tmp_path) / "state.json").read_text())
    assert state["diagnosis"]["kind"] == kind
    assert "Fix:" in res.err


def test_resume_relaunches_with_last_state(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    argv_log = tmp_path / "argv.jsonl"
    trainer_env.update(FAKE_STATE="1:180", FAKE_EXIT="1", FAKE_RAISE="stopped", FAKE_ARGV=str(argv_log))
    first = lorakit(*train_args(trainer_env, "--set", "saving.save_state=true", "--quiet"), cwd=tmp_path)
    assert first.code == 1
    run = only_run(tmp_path)
    assert (run / "comic-style-000001-state" / "train_state.json").is_file()
    for k in ("FAKE_STATE", "FAKE_EXIT", "FAKE_RAISE"):
        trainer_env.pop(k)
    trainer_env["FAKE_LORA"] = "1"
    res = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    # the fake trainer prints nothing sd-scripts-like, so lorakit cannot confirm the resume
    assert res.code == 0, res.err
    second_argv = json.loads(argv_log.read_text().splitlines()[1])
    first_argv = json.loads(argv_log.read_text().splitlines()[0])
    assert second_argv == [
        *first_argv,
        f"--resume={run / 'comic-style-000001-state'}",
        "--skip_until_initial_step",
        "--initial_step=180",
        "--output_name=comic-style-resume1",
    ]
    starts = [e for e in read_events(run) if isinstance(e, Started)]
    assert [s.resumed_from for s in starts] == [None, str(run / "comic-style-000001-state")]
    assert json.loads((run / "state.json").read_text())["launches"] == 2
    assert not (run / ".resume-spec.yaml").exists()
    assert not [e for e in read_events(run) if isinstance(e, Progress)]
    assert not [e for e in read_events(run) if isinstance(e, WarningEvent) and e.code == "resume_restarted"]


def test_resume_without_state_is_refused(lorakit, trainer_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer_env["FAKE_EXIT"] = "1"
    lorakit(*train_args(trainer_env, "--quiet"), cwd=tmp_path)
    res = lorakit("resume", "last", cwd=tmp_path)
    assert res.code == 2
    assert "save_state" in res.err
