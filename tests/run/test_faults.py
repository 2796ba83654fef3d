"""Faults around a real run (issue 20): lorakit killed with SIGKILL, signals in a burst, a full
disk, a read-only run folder, events.jsonl deleted, a silent trainer. Real processes (the
stand-in trainer as the child of the real CLI), real signals, real (small) filesystems; every
test also checks that no process of the trainer's group is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lorakit.run.events import Finished, read_events
from lorakit.run.reaper import group_alive, pid_alive
from tests.conftest import CliResult
from tests.run.test_cli_run import only_run, train_args, trainer_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups, /proc and tmpfs as on Linux")


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what or cond}")


def start_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`lorakit ARGS` as a running process (its own session, so the test's signals stay ours)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from lorakit.cli.main import main; main()", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> CliResult:
    out, err = proc.communicate(timeout=timeout)
    return CliResult(proc.returncode, out, err)


def running_run(cwd: Path) -> tuple[Path, int]:
    """The run folder once its trainer is working, and the trainer's pid (= its process group)."""
    runs = cwd / "runs"
    wait_for(lambda: runs.is_dir() and any((p / "train.log").is_file() for p in runs.iterdir()), what="a run")
    run = only_run(cwd)
    wait_for(lambda: b"working" in (run / "train.log").read_bytes(), what="the trainer's output")
    wait_for(lambda: json.loads((run / "state.json").read_text()).get("pid"), what="the trainer pid in state.json")
    return run, int(json.loads((run / "state.json").read_text())["pid"])


def state_of(run: Path) -> dict[str, object]:
    data = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# -- 1. kill -9 of `lorakit train` --------------------------------------------------------------
def test_kill_9_of_lorakit_leaves_no_trainer_and_the_run_reads_lost(lorakit, trainer_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    gpid_file = tmp_path / "grandchild.pid"
    trainer_env.update(FAKE_SLEEP="120", FAKE_GRANDCHILD=str(gpid_file))
    proc = start_cli(trainer_env, tmp_path, *train_args(trainer_env, "--quiet"))
    run, pgid = running_run(tmp_path)
    grandchild = int(gpid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    # the watchdog stops the trainer's whole process group (launcher and its children)
    wait_for(lambda: not group_alive(pgid), timeout=15, what="the trainer's group to go")
    assert not pid_alive(grandchild)
    assert state_of(run)["status"] == "running"  # nobody was left to write it ...
    listed = lorakit("runs", "list", "--json", cwd=tmp_path)
    (row,) = json.loads(listed.out)
    assert row["status"] == "lost"  # ... but every reader calls it what it is
    shown = lorakit("runs", "show", "last", cwd=tmp_path)
    assert shown.code == 0 and f"lost: lorakit (pid {proc.pid}) was killed" in shown.out
    table = lorakit("runs", "list", cwd=tmp_path)
    assert "lost" in table.out
    # the GPU is free again: a new training starts (and finishes)
    trainer_env.pop("FAKE_SLEEP")
    trainer_env.pop("FAKE_GRANDCHILD")
    trainer_env["FAKE_LORA"] = "1"
    again = lorakit(*train_args(trainer_env, "--quiet"), cwd=tmp_path)
    assert again.code == 0, again.err


def test_kill_9_trainer_that_ignores_sigint_holds_gpu_and_blocks_resume_until_gone(  # type: ignore[no-untyped-def]
    lorakit,
    trainer_env,
    tmp_path: Path,  # noqa: F811
) -> None:
    trainer_env.update(FAKE_SLEEP="120", FAKE_IGNORE_INT="1", FAKE_STATE="1:180")
    proc = start_cli(trainer_env, tmp_path, *train_args(trainer_env, "--quiet", "--set", "saving.save_state=true"))
    run, pgid = running_run(tmp_path)
    t_kill = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert group_alive(pgid)  # SIGINT ignored: it lives until the watchdog's SIGKILL (10 s)
    trainer_env.pop("FAKE_SLEEP")
    resumed = lorakit("resume", "last", "--quiet", cwd=tmp_path)
    assert resumed.code == 2, resumed.err
    assert "lost: lorakit" in resumed.err and f"its trainer (pid {pgid}) is still running" in resumed.err
    assert "Traceback" not in resumed.err
    second = lorakit(*train_args(trainer_env, "--quiet"), cwd=tmp_path)
    assert second.code == 3 and "GPU 0 is in use" in second.err, second.err  # the watchdog holds the lock
    if time.monotonic() - t_kill < 8:
        assert group_alive(pgid)
    wait_for(lambda: not group_alive(pgid), timeout=25, what="the trainer's group to go")
    # the lock goes with the last process: a training on GPU 0 starts now
    trainer_env.pop("FAKE_STATE")
    trainer_env["FAKE_LORA"] = "1"
    wait_for(lambda: lorakit(*train_args(trainer_env, "--quiet"), cwd=tmp_path).code == 0, timeout=10, what="GPU 0")
    assert state_of(run)["status"] == "running"
    assert json.loads(lorakit("runs", "show", run.name, "--json", cwd=tmp_path).out)["status"] == "lost"


# -- 3. two signals in quick succession ---------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_burst_still_writes_the_outcome(lorakit, trainer_env, tmp_path: Path, sig: int) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    trainer_env.update(FAKE_SLEEP="60", FAKE_CHECKPOINT="1")
    proc = start_cli(trainer_env, tmp_path, *train_args(trainer_env, "--quiet"))
    run, pgid = running_run(tmp_path)
    os.kill(proc.pid, sig)
    end = time.monotonic() + 1.0
    # the second, third ... signal land while the trainer stops and in finish_run, until the
    # final state is written (after it, lorakit is back to the default handlers and exits)
    while proc.poll() is None and time.monotonic() < end and state_of(run)["status"] == "running":
        time.sleep(0.005)
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            break
    res = finish(proc)
    assert res.code == 130, res.err
    assert "Traceback" not in res.err and "KeyboardInterrupt" not in res.err
    assert "error:" in res.err and "interrupted" in res.err
    fin = read_events(run)[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.exit_code) == ("interrupted", 130)
    assert state_of(run)["status"] == "interrupted"
    assert (run / "comic-style-000001.safetensors").is_file()
    assert not group_alive(pgid)
