"""The runner against real child processes: raw output, events, signals, diagnoses, files."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from lorakit.errors import EnvironmentProblem
from lorakit.events import Checkpoint, ErrorEvent, Finished, Sample, Started, read_events
from lorakit.run import folder
from lorakit.run.finish import Expected
from lorakit.run.runner import Child, Options, finish_run, supervise
from tests.run.conftest import fake_child

EXPECTED = Expected(module="networks.lora", dim=4, alpha=1.0, unet_only=True)
posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups and signals as on POSIX")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def signal_when(path: Path, marker: bytes, signals: list[int], gap: float = 0.3) -> threading.Thread:
    """Send ``signals`` to this process once ``path`` holds ``marker`` (the child is running
    and the runner's handlers are in place)."""

    def go() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if path.is_file() and marker in path.read_bytes():
                break
            time.sleep(0.05)
        for sig in signals:
            os.kill(os.getpid(), sig)
            time.sleep(gap)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_raw_bytes_kept_and_split_utf8_decoded(run_dir: Path, tmp_path: Path) -> None:
    blob = "plain line\r\nprogress 1\rprogress 2\rdone ✓ — ünïcode\n".encode() + b"\xff bad byte\n"
    src = tmp_path / "blob.log"
    src.write_bytes(blob)
    result = supervise(fake_child(run_dir, replay=str(src), chunk="1"), run_dir, Options(gpu_index=None))
    assert result.returncode == 0
    assert (run_dir / "train.log").read_bytes() == blob  # byte for byte, \r and bad bytes included
    assert "done ✓ — ünïcode" in list(result.parser.tail)  # a multi-byte char split over 1-byte chunks
    events = read_events(run_dir)
    assert isinstance(events[0], Started) and events[0].argv[1].endswith("fake_trainer.py")
    assert events[0].pid is not None


def test_success_run_verifies_and_copies_lora(run_dir: Path, tmp_path: Path) -> None:
    loras = tmp_path / "comfy" / "models" / "loras"
    outside_before = tree(tmp_path / "runs")
    result = supervise(fake_child(run_dir, lora="1"), run_dir, Options(gpu_index=None))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED, lora_folders=[loras])
    assert (out.status, out.exit_code, out.diagnosis) == ("done", 0, None)
    assert out.copies == [str(loras / "lora.safetensors")]
    assert (loras / "lora.safetensors").read_bytes() == (run_dir / "lora.safetensors").read_bytes()
    events = read_events(run_dir)
    fin = events[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.exit_code) == ("done", 0)
    assert fin.lora == str(run_dir / "lora.safetensors")
    state = folder.read_state(run_dir)
    assert state["status"] == "done" and state["exit_code"] == 0 and state["copies"] == out.copies
    # nothing but the run folder (and the LoRA folder) was written
    assert set(tree(tmp_path / "runs")) - set(outside_before) <= {
        f"{run_dir.name}/{n}" for n in ("lora.safetensors", "train.log", "events.jsonl", "state.json")
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comfy", "runs"]


def test_copy_never_overwrites_a_different_file(run_dir: Path, tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    loras.mkdir()
    (loras / "lora.safetensors").write_bytes(b"someone else's lora")
    result = supervise(fake_child(run_dir, lora="1"), run_dir, Options(gpu_index=None))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED, lora_folders=[loras])
    assert out.status == "done"
    assert (loras / "lora.safetensors").read_bytes() == b"someone else's lora"
    assert out.copies == [str(loras / "lora-2.safetensors")]
    assert any(getattr(e, "code", "") == "copy_renamed" for e in read_events(run_dir))
    # the same LoRA again: recognised as identical, not copied a third time
    from lorakit.run.finish import copy_lora

    assert copy_lora(run_dir / "lora.safetensors", loras).action == "identical"


def test_lora_not_matching_spec_fails(run_dir: Path) -> None:
    result = supervise(fake_child(run_dir, lora="1", lora_dim="8"), run_dir, Options(gpu_index=None))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED)
    assert (out.status, out.exit_code) == ("failed", 1)
    assert any("ss_network_dim is '8'" in p for p in out.problems)
    assert folder.read_state(run_dir)["status"] == "failed"


def test_exit_zero_without_lora_is_a_failure(run_dir: Path) -> None:
    result = supervise(fake_child(run_dir), run_dir, Options(gpu_index=None))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED)
    assert (out.status, out.exit_code) == ("failed", 1)
    assert out.diagnosis is not None and "without writing the final LoRA" in out.diagnosis.message
    errors = [e for e in read_events(run_dir) if isinstance(e, ErrorEvent)]
    assert [e.kind for e in errors] == ["crash"]


def test_python_crash_is_diagnosed_from_its_traceback(run_dir: Path) -> None:
    result = supervise(fake_child(run_dir, **{"raise": "boom in the trainer"}), run_dir, Options(gpu_index=None))
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED)
    assert (out.status, out.exit_code, result.returncode) == ("failed", 1, 1)
    assert out.diagnosis is not None and out.diagnosis.kind == "crash"
    assert out.diagnosis.evidence == "RuntimeError: boom in the trainer"
    assert "lorakit runs tail" in (out.diagnosis.fix or "")


def test_samples_and_checkpoints_become_events(run_dir: Path) -> None:
    result = supervise(fake_child(run_dir, lora="1", sample="1"), run_dir, Options(gpu_index=None))
    samples = [e for e in result.events if isinstance(e, Sample)]
    assert [Path(s.path).name for s in samples] == ["lora_000001_00_20261123.png"]


@posix_only
def test_sigint_stops_child_group_and_marks_interrupted(run_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = fake_child(run_dir, checkpoint="1", sleep="60", grandchild=str(pidfile))
    signal_when(run_dir / "train.log", b"working", [signal.SIGINT])
    t0 = time.monotonic()
    result = supervise(child, run_dir, Options(gpu_index=None))
    assert time.monotonic() - t0 < 30
    assert result.interrupted
    out = finish_run(run_dir, result, final_lora=run_dir / "lora.safetensors", expected=EXPECTED)
    assert (out.status, out.exit_code) == ("interrupted", 130)
    assert (run_dir / "lora-000001.safetensors").is_file()  # the checkpoint is kept
    fin = read_events(run_dir)[-1]
    assert isinstance(fin, Finished) and (fin.status, fin.exit_code) == ("interrupted", 130)
    assert folder.read_state(run_dir)["status"] == "interrupted"
    gpid = int(pidfile.read_text())
    _wait_gone(gpid)


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"grandchild {pid} still alive: the signal did not reach the process group")


@posix_only
def test_sigterm_first_then_second_signal_kills(run_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = fake_child(run_dir, sleep="60", ignore_int="1", grandchild=str(pidfile))
    signal_when(run_dir / "train.log", b"working", [signal.SIGTERM, signal.SIGINT], gap=1.0)
    t0 = time.monotonic()
    result = supervise(child, run_dir, Options(gpu_index=None))
    assert time.monotonic() - t0 < 30
    assert result.interrupted and result.returncode == -signal.SIGKILL
    out = finish_run(run_dir, result, final_lora=None)
    assert out.exit_code == 130
    _wait_gone(int(pidfile.read_text()))


@posix_only
def test_handlers_restored_after_run(run_dir: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    supervise(fake_child(run_dir), run_dir, Options(gpu_index=None))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_argv_list_not_shell(run_dir: Path) -> None:
    """An argument with shell syntax reaches the child as one literal argument."""
    argv_file = run_dir / "argv.jsonl"
    child = fake_child(run_dir, argv=str(argv_file))
    child.argv.append("--weird=$(touch pwned); echo hi")
    supervise(child, run_dir, Options(gpu_index=None))
    seen = json.loads(argv_file.read_text().splitlines()[0])
    assert seen[-1] == "--weird=$(touch pwned); echo hi"
    assert not (run_dir / "pwned").exists()


def test_missing_trainer_python_is_an_environment_problem(run_dir: Path) -> None:
    child = Child(argv=[str(run_dir / "no-such-python"), "x"], cwd=run_dir)
    with pytest.raises(EnvironmentProblem) as exc:
        supervise(child, run_dir, Options(gpu_index=None))
    assert exc.value.exit_code == 3 and "no-such-python" in exc.value.message
    assert folder.read_state(run_dir)["status"] == "failed"


def test_state_while_running(run_dir: Path) -> None:
    result = supervise(fake_child(run_dir), run_dir, Options(gpu_index=None))
    state = folder.read_state(run_dir)
    assert state["status"] == "running"  # finish_run writes the final status
    assert state["lorakit_pid"] == os.getpid()
    assert not [e for e in result.events if isinstance(e, Checkpoint)]


@posix_only
def test_first_signal_stops_child_even_if_lorakit_started_with_sigint_ignored(run_dir: Path, tmp_path: Path) -> None:
    """`lorakit train ... &` from a script starts lorakit with SIGINT ignored; an ignored signal
    stays ignored across exec, so the trainer would shrug off the stop request (seen on the GPU
    machine: sd-scripts trained on to the end). The handlers go in before the child starts."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pidfile = tmp_path / "grandchild.pid"
        child = fake_child(run_dir, checkpoint="1", sleep="60", grandchild=str(pidfile))
        signal_when(run_dir / "train.log", b"working", [signal.SIGINT])
        t0 = time.monotonic()
        result = supervise(child, run_dir, Options(gpu_index=None))
        assert time.monotonic() - t0 < 20
        assert result.interrupted and result.returncode != 0
        _wait_gone(int(pidfile.read_text()))
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_signal_the_trainer_ignored_until_it_finished_is_not_an_interruption(run_dir: Path) -> None:
    from lorakit.run.runner import ChildResult

    result = supervise(fake_child(run_dir, lora="1"), run_dir, Options(gpu_index=None))
    late = ChildResult(0, True, None, result.parser, result.events, result.duration_s)
    out = finish_run(run_dir, late, final_lora=run_dir / "lora.safetensors", expected=EXPECTED)
    assert (out.status, out.exit_code) == ("done", 0)
