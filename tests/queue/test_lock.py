"""GPU locks across REAL processes: a child holds GPU locks, this process is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorakit.errors import EnvironmentProblem
from lorakit.run.lock import GpuBusy, acquire_gpus, gpu_lock, held_gpus, holder, physical_gpus

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lorakit.run.lock import acquire_gpus
    gpus = [int(g) for g in sys.argv[2].split(",")]
    lock = acquire_gpus(gpus, run=sys.argv[3], home=Path(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.readline()          # hold until told to go
    if sys.argv[4] == "release":
        lock.release()
        print("released", flush=True)
        sys.stdin.readline()
    """
)


def start_holder(home: Path, gpus: str, run: str, mode: str = "exit") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home), gpus, run, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.stdin.close()
    proc.wait(timeout=20)


def test_second_run_on_a_gpu_is_refused_naming_the_holder(tmp_path: Path) -> None:
    proc = start_holder(tmp_path, "0,1", "runs/comic-20261123-101500")
    try:
        with pytest.raises(GpuBusy) as info:
            acquire_gpus([1, 2], run="runs/other", home=tmp_path)
        err = info.value
        assert isinstance(err, EnvironmentProblem) and err.exit_code == 3
        assert [h.gpu for h in err.holders] == [1]
        assert err.holders[0].pid == proc.pid
        assert f"GPU 1 is in use by lorakit pid {proc.pid} (run runs/comic-20261123-101500)" in err.message
        assert "lorakit queue add" in (err.fix or "")
        # all or nothing: GPU 2 was not kept
        assert holder(2, tmp_path) is None
        assert set(held_gpus([0, 1, 2], tmp_path)) == {0, 1}
        # a GPU the child does not hold is free
        with acquire_gpus([2], run="runs/third", home=tmp_path) as lock:
            assert lock.held
            assert holder(2, tmp_path) is not None  # seen as held by this process
    finally:
        finish(proc)
    # the kernel released the child's locks when it exited
    with acquire_gpus([0, 1], home=tmp_path):
        pass
    assert held_gpus([0, 1, 2], tmp_path) == {}


def test_crashed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    proc = start_holder(tmp_path, "3", "runs/crash")
    proc.kill()
    proc.wait(timeout=20)
    with acquire_gpus([3], home=tmp_path) as lock:
        assert lock.gpus == [3]


def test_release_frees_the_gpu_while_the_process_lives(tmp_path: Path) -> None:
    proc = start_holder(tmp_path, "0", "runs/a", mode="release")
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert holder(0, tmp_path) is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        assert holder(0, tmp_path) is None
        with acquire_gpus([0], home=tmp_path):
            pass
    finally:
        finish(proc)


def test_refused_between_two_lorakit_processes_via_env_home(tmp_path: Path) -> None:
    """gpu_lock (what the runner wraps a training in) in two processes sharing LORAKIT_HOME."""
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "2,3"}
    code = (
        "import sys\n"
        "from lorakit.run.lock import gpu_lock\n"
        "from lorakit.errors import LorakitError\n"
        "try:\n"
        "    with gpu_lock([1], run='second'):\n"
        "        print('got it')\n"
        "except LorakitError as e:\n"
        "    print(e.render()); sys.exit(e.exit_code)\n"
    )
    proc = start_holder(tmp_path, "3", "first")  # physical GPU 3 = visible GPU 1
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 3
        assert f"GPU 3 is in use by lorakit pid {proc.pid} (run first)" in r.stdout
        assert "Fix: wait for it to finish" in r.stdout
    finally:
        finish(proc)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "got it"


def test_physical_gpus() -> None:
    assert physical_gpus(None, {}) == [0]
    assert physical_gpus([0, 1], {}) == [0, 1]
    assert physical_gpus([1], {"CUDA_VISIBLE_DEVICES": "2,3"}) == [3]
    assert physical_gpus([0], {"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == [0]
    with pytest.raises(EnvironmentProblem, match="GPU 2 is not visible"):
        physical_gpus([2], {"CUDA_VISIBLE_DEVICES": "0,1"})


def test_gpu_lock_context_releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))
    with gpu_lock([0, 1], run="r", env={}) as lock:
        assert lock.gpus == [0, 1]
        assert set(held_gpus([0, 1], tmp_path)) == {0, 1}
    assert held_gpus([0, 1], tmp_path) == {}


# -- the one file-lock primitive (queue file, queue runner) ---------------------------------------
COUNTER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lorakit.run.queue import QueueStore
    store = QueueStore(Path(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        with store.transaction() as q:
            q.next_id += 1
    """
)


def test_file_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    from lorakit.run.lock import file_lock, lock_text

    path = tmp_path / "q" / "runner.lock"
    with file_lock(path, blocking=False, holder="1234") as first:
        assert first and lock_text(path) == "1234"
        with file_lock(path, blocking=False, holder="5678") as second:  # another open file: refused
            assert second is False
        assert lock_text(path) == "1234"  # the refused one wrote nothing
    assert lock_text(path) == ""  # cleared when released
    with file_lock(path, blocking=False) as again:
        assert again


def test_queue_transactions_of_concurrent_processes_never_lose_an_update(tmp_path: Path) -> None:
    from lorakit.run.queue import QueueStore

    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, str(tmp_path), "25"]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert QueueStore(tmp_path).load().next_id == 1 + 3 * 25


def test_queue_runner_forwards_sighup_to_its_jobs_and_restores_the_handlers(tmp_path: Path) -> None:
    """The queue runner holds lorakit's one Signals handler: closing the terminal (SIGHUP) reaches
    the jobs it watches (here an adopted real child), and the handlers are restored afterwards."""
    import signal

    from lorakit.run.queue import Job, QueueRunner, QueueStore

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP here")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = QueueStore(tmp_path)
        with store.transaction() as q:
            q.jobs.append(Job("1", "j", 1.0, str(tmp_path), str(tmp_path / "runs"), status="running", pid=child.pid))
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        seen: list[str] = []

        def echo(line: str) -> None:
            seen.append(line)
            if "watching it" in line:  # adopted: now the terminal closes
                assert signal.getsignal(signal.SIGHUP) is not before[signal.SIGHUP]
                os.kill(os.getpid(), signal.SIGHUP)

        runner = QueueRunner(store, facts=lambda: [], echo=echo, poll_s=0.05, lock_home=tmp_path)
        runner.run()
        assert child.wait(timeout=20) == -signal.SIGHUP  # forwarded to the job
        assert {s: signal.getsignal(s) for s in before} == before
        assert any(line.startswith("stopping:") for line in seen)
    finally:
        if child.poll() is None:
            child.kill()
