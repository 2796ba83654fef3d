"""Faults around a real run (issue 20): lorakit killed with SIGKILL, signals in a burst, a full
disk, a read-only run folder, events.jsonl deleted, a silent trainer. Real processes (the
stand-in trainer as the child of the real CLI), real signals, real (small) filesystems; every
test also checks that no process of the trainer's group is left."""

# ruff: noqa: F811  (trainer_env: a fixture imported from test_cli_run)
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

from lorakit.events import Finished, read_events
from lorakit.run.reaper import group_alive, pid_alive
from tests.conftest import CliResult
from tests.run.conftest import FIXTURES
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
def test_kill_9_of_lorakit_leaves_no_trainer_and_the_run_reads_lost(lorakit, trainer_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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
    tmp_path: Path,
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
def test_signal_burst_still_writes_the_outcome(lorakit, trainer_env, tmp_path: Path, sig: int) -> None:  # type: ignore[no-untyped-def]
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


# -- a small real file system ---------------------------------------------------------------------
@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mount a tmpfs of the given size (bytes) under tmp_path; skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: int, name: str = "fs") -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {res.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def read_only_bind(path: Path) -> Callable[[], None]:
    """Make ``path`` read-only from now on (a read-only bind mount over itself); returns undo."""
    for cmd in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,bind,ro", str(path)]):
        res = subprocess.run(cmd, capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot bind-mount read-only here: {res.stderr.decode().strip()}")
    return lambda: subprocess.run(["umount", "-l", str(path)], capture_output=True) and None


def fresh_run_dir(base: Path) -> Path:
    d = base / "runs" / "lora-20261123-120000"
    d.mkdir(parents=True)
    return d


# -- 4. disk full -----------------------------------------------------------------------------------
def test_not_enough_space_before_launch_is_exit_3_and_leaves_nothing(
    lorakit, trainer_env, tmp_path: Path, small_fs
) -> None:  # type: ignore[no-untyped-def]
    fs = small_fs(4 * 2**20)
    res = lorakit(*train_args(trainer_env, "--quiet", "--set", f"output.folder={fs}"), cwd=tmp_path)
    assert res.code == 3, res.err
    assert "not enough free space for this run in" in res.err and "Fix:" in res.err
    assert "Traceback" not in res.err
    assert [p for p in fs.iterdir() if p.name != "lost+found"] == []  # no half run folder


def test_disk_filling_up_warns_then_stops_the_trainer_cleanly(tmp_path: Path, small_fs) -> None:  # type: ignore[no-untyped-def]
    from lorakit.events import WarningEvent
    from lorakit.run.disk import Need, make_reserve
    from lorakit.run.runner import Options, finish_run, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(small_fs(24 * 2**20))
    make_reserve(run_dir)
    child = fake_child(run_dir, checkpoint="1", sleep="30", fill_step=str(2**20))
    opts = Options(gpu_index=None, disk=Need(4 * 2**20, 0), disk_every_s=0.1, stop_grace_s=5)
    t0 = time.monotonic()
    result = supervise(child, run_dir, opts)
    assert time.monotonic() - t0 < 20
    assert result.stopped_for == "disk" and result.returncode != 0
    codes = [e.code for e in result.events if isinstance(e, WarningEvent)]
    assert "disk_low" in codes
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors")
    assert (out.status, out.exit_code) == ("failed", 3)
    assert out.diagnosis is not None and out.diagnosis.kind == "disk_full" and "almost full" in out.diagnosis.message
    fin = read_events(run_dir)[-1]
    assert isinstance(fin, Finished) and fin.status == "failed" and fin.lora is None
    assert state_of(run_dir)["status"] == "failed"
    assert (run_dir / "lora-000001.safetensors").is_file()  # the saved checkpoint is kept, whole
    assert not group_alive(result.events[0].pid)  # type: ignore[attr-defined]


def test_trainer_filling_the_disk_gets_a_recorded_outcome_and_no_lora_named(tmp_path: Path, small_fs) -> None:  # type: ignore[no-untyped-def]
    from lorakit.run.disk import make_reserve
    from lorakit.run.runner import Options, finish_run, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(small_fs(2 * 2**20))
    make_reserve(run_dir)
    child = fake_child(run_dir, fill=str(64 * 2**20), lora="1", replay=str(FIXTURES / "sdxl_success.log"))
    result = supervise(child, run_dir, Options(gpu_index=None))  # lorakit's own writes fail too: no exception
    assert result.returncode == 1  # the trainer died of ENOSPC writing its LoRA
    assert (run_dir / "lora.safetensors").is_file()  # half written, left where it is
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors")
    assert (out.status, out.exit_code, out.lora) == ("failed", 3, None)
    assert out.diagnosis is not None and out.diagnosis.kind == "disk_full"
    assert out.unrecorded == []  # the reserve made room for the outcome
    fin = read_events(run_dir)[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.lora) == ("failed", None)
    state = state_of(run_dir)
    assert state["status"] == "failed" and state["lora"] is None


# -- 5. run folder read-only mid-run ----------------------------------------------------------------
def test_read_only_run_folder_does_not_kill_the_training(tmp_path: Path) -> None:
    from lorakit.events import WarningEvent
    from lorakit.run.runner import Options, finish_run, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(tmp_path)
    child = fake_child(run_dir, lora="1", sleep="2.5")
    undo: list[Callable[[], None]] = []

    def lock_folder() -> None:
        wait_for(lambda: (run_dir / "train.log").is_file() and b"working" in (run_dir / "train.log").read_bytes())
        undo.append(read_only_bind(run_dir))

    import threading

    t = threading.Thread(target=lock_folder, daemon=True)
    t.start()
    try:
        result = supervise(child, run_dir, Options(gpu_index=None, state_every_s=0.2))
        t.join()
        if not undo:
            pytest.skip("cannot bind-mount read-only here")
        assert result.returncode == 0  # the trainer worked on to its end
        warned = [e for e in result.events if isinstance(e, WarningEvent) and e.code == "bookkeeping"]
        assert warned and "state.json" in warned[0].message
        out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors")
        assert (out.status, out.exit_code) == ("done", 0)
        assert out.unrecorded  # said, not swallowed: the CLI prints it
    finally:
        for u in undo:
            u()
    assert state_of(run_dir)["status"] == "running"  # nothing could be written meanwhile
    assert not group_alive(result.events[0].pid)  # type: ignore[attr-defined]


# -- 6. events.jsonl deleted mid-run ----------------------------------------------------------------
def test_deleted_events_file_is_noticed_and_written_again(tmp_path: Path) -> None:
    import threading

    from lorakit.events import Progress, WarningEvent
    from lorakit.run.runner import Options, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(tmp_path)
    log = FIXTURES / "sdxl_success.log"
    child = fake_child(run_dir, replay=str(log), chunk="2048", delay="0.02")
    events_file = run_dir / "events.jsonl"

    def delete_after_progress() -> None:
        wait_for(lambda: events_file.is_file() and b'"progress"' in events_file.read_bytes())
        events_file.unlink()

    t = threading.Thread(target=delete_after_progress, daemon=True)
    t.start()
    result = supervise(child, run_dir, Options(gpu_index=None))
    t.join()
    on_disk = read_events(run_dir)
    assert any(isinstance(e, WarningEvent) and e.code == "events_recreated" for e in on_disk)
    progress = [e for e in on_disk if isinstance(e, Progress)]
    assert progress and progress[-1].step == max(e.step for e in result.events if isinstance(e, Progress))
    assert on_disk[0].type == "started"  # written again from the start


# -- 7. a silent trainer ----------------------------------------------------------------------------
def test_stall_is_warned_and_cleared_never_killed_by_default(tmp_path: Path) -> None:
    from lorakit.events import WarningEvent
    from lorakit.run.runner import Options, finish_run, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(tmp_path)
    child = fake_child(run_dir, hang="1.5", sleep="0.3", lora="1")
    result = supervise(child, run_dir, Options(gpu_index=None, stall_floor_s=0.5, stall_factor=1))
    codes = [e.code for e in result.events if isinstance(e, WarningEvent)]
    assert codes.count("stall") == 1 and "stall_over" in codes
    assert result.returncode == 0
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors")
    assert out.status == "done" and state_of(run_dir)["stalled_since"] is None


def test_stall_timeout_stops_the_trainer(tmp_path: Path) -> None:
    from lorakit.events import WarningEvent
    from lorakit.run.runner import Options, finish_run, supervise
    from tests.run.conftest import fake_child

    run_dir = fresh_run_dir(tmp_path)
    child = fake_child(run_dir, hang="60")
    t0 = time.monotonic()
    opts = Options(gpu_index=None, stall_floor_s=0.3, stall_factor=1, stall_timeout_s=1.0, stop_grace_s=5)
    result = supervise(child, run_dir, opts)
    assert time.monotonic() - t0 < 15
    assert result.stopped_for == "stall"
    assert any(isinstance(e, WarningEvent) and e.code == "stall" for e in result.events)
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors")
    assert (out.status, out.exit_code) == ("failed", 1)
    assert out.diagnosis is not None and out.diagnosis.kind == "stall" and "--stall-timeout 1" in out.diagnosis.message
    assert not group_alive(result.events[0].pid)  # type: ignore[attr-defined]


# -- 8. a queue file of the wrong shape -------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[]", "found list"),
        ("null", "found NoneType"),
        ('{"jobs": {"a": 1}}', "'jobs' not a list"),
        ('{"next_id": 2, "jobs": [{"id": "1"}]}', "job #1 is broken"),
        ('{"jobs": [7]}', "job #1 is broken"),
    ],
)
def test_queue_file_of_the_wrong_shape_is_named_not_a_traceback(lorakit, isolated_env, content: str, said: str) -> None:  # type: ignore[no-untyped-def]
    from lorakit.run.queue import QUEUE_DIR, QUEUE_FILE

    path = Path(isolated_env["LORAKIT_HOME"]) / QUEUE_DIR / QUEUE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    for args in (("queue", "list"), ("queue", "run", "--poll", "0.1")):
        res = lorakit(*args)
        assert res.code == 3, res.err
        assert str(path) in res.err and said in res.err and "Traceback" not in res.err
    assert path.read_text(encoding="utf-8") == content  # left as it was


# -- 2. / 8. dataset prepare: workers die with their parent; a full disk is one message ---------------
def test_prepare_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    """The pool of `dataset prepare` (pool.executor): kill -9 of its parent leaves no worker."""
    script = (
        "import os, sys, time\n"
        "from lorakit.dataset.pool import executor\n"
        "ex = executor(2)\n"
        "fs = [ex.submit(time.sleep, 60) for _ in range(2)]\n"
        "time.sleep(0.5)\n"
        "print(' '.join(str(p) for p in ex._processes), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(pid_alive(w) for w in workers)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(pid_alive(w) for w in workers), timeout=10, what="the workers to exit")
    assert parent.stdout.read() == ""  # nobody holds the pipe any more: EOF at once


def test_prepare_onto_a_full_disk_is_one_message(lorakit, tmp_path: Path, small_fs) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import EXAMPLE, tree_bytes

    before = tree_bytes(EXAMPLE)
    out = small_fs(96 * 2**10) / "prepared"
    res = lorakit("dataset", "prepare", str(EXAMPLE), "--trigger", "zzc", "--class", "style", "--out", str(out))
    assert res.code == 3, res.err + res.out
    assert "No space left on device" in res.err and "Fix:" in res.err
    assert "Traceback" not in res.err and "RemoteTraceback" not in res.err
    assert tree_bytes(EXAMPLE) == before
