"""Pure parts of run/: events file, run folder, speed watch, LoRA header check, diagnoses,
the resume check and the plain view."""

from __future__ import annotations

import io
import json
import math
import struct
from datetime import datetime
from pathlib import Path

import pytest

from lorakit.errors import ConfigError
from lorakit.events import (
    EVENT_TYPES,
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    ErrorEvent,
    EventLog,
    Finished,
    Progress,
    Sample,
    Started,
    StateSaved,
    WarningEvent,
    read_events,
)
from lorakit.kohya.logparse import LogParser
from lorakit.run import folder
from lorakit.run.diagnose import Context, diagnose, exit_code_for, fix_for, pip_name
from lorakit.run.finish import Expected, read_header, verify_lora
from lorakit.run.live import PlainView, fmt_duration, sparkline
from lorakit.run.resume import ResumeCheck, SavedState, absolute_spec, saved_states
from lorakit.run.watch import GpuReading, SpeedWatch
from tests.run.children.fake_trainer import write_lora


# -- events -------------------------------------------------------------------------------------
def test_every_type_round_trips(tmp_path: Path) -> None:
    evs = [
        Started(t=1.0, run_dir="r", argv=["a", "b"], pid=3, total_steps=10),
        DatasetSummary(t=2.0, images_x_repeats=40, batches_per_epoch=40, epochs=2, batch_size=1, total_steps=80),
        EpochStarted(t=3.0, epoch=1, total=2),
        Progress(t=4.0, step=1, total=80, avr_loss=0.1, s_per_step=1.5),
        Checkpoint(t=5.0, path="x.safetensors", step=40, epoch=1),
        StateSaved(t=5.5, path="x-000001-state", step=40, epoch=1),
        Sample(t=6.0, path="sample/a.png"),
        WarningEvent(t=7.0, code="slow", message="m", fix="f"),
        ErrorEvent(t=8.0, kind="oom", message="m", fix="f", evidence="e"),
        Finished(t=9.0, status="done", exit_code=0, duration_s=8.0, lora="x.safetensors"),
    ]
    assert (
        {type(e).type for e in evs}
        == set(EVENT_TYPES)
        == {
            "started",
            "dataset",
            "epoch",
            "progress",
            "checkpoint",
            "state",
            "sample",
            "warning",
            "error",
            "finished",
        }
    )
    with EventLog(tmp_path / "events.jsonl") as log:
        for e in evs:
            log.append(e)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert all(list(json.loads(line))[:2] == ["t", "type"] for line in lines)
    assert read_events(tmp_path) == evs
    assert read_events(tmp_path / "events.jsonl") == evs


def test_read_events_tolerates_torn_and_unknown_lines(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_text(
        '{"t":1,"type":"epoch","epoch":1,"total":2,"future_key":5}\n'
        '{"t":2,"type":"telemetry","x":1}\n'
        '{"t":3,"type":"progress","total":3}\n'  # missing a required key
        '{"t":4,"type":"prog'
    )
    assert read_events(p) == [EpochStarted(t=1, epoch=1, total=2)]
    assert read_events(tmp_path / "nothing") == []


# -- run folder -----------------------------------------------------------------------------------
def test_run_dir_names_and_lookup(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 12, 0, 0)
    a = folder.create_run_dir(folder.run_dir_path(tmp_path, "style", now))
    folder.write_state(a, {"status": "done"})
    b = folder.create_run_dir(folder.run_dir_path(tmp_path, "style", now))
    folder.write_state(b, {"status": "failed"})
    assert (a.name, b.name) == ("style-20261123-120000", "style-20261123-120000-2")
    assert [r.name for r in folder.list_runs(tmp_path)] == [a.name, b.name]
    assert folder.find_run("last", tmp_path) == b
    assert folder.find_run(a.name, tmp_path) == a
    assert folder.find_run(str(b), tmp_path) == b
    with pytest.raises(ConfigError, match="matches 2 runs"):
        folder.find_run("style-2026", tmp_path)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        folder.find_run("nope", tmp_path)
    with pytest.raises(FileExistsError):
        folder.create_run_dir(a)


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    folder.atomic_write_json(tmp_path / "state.json", {"a": 1})
    folder.update_state(tmp_path, b=2)
    assert json.loads((tmp_path / "state.json").read_text()) == {"a": 1, "b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# -- speed watch ----------------------------------------------------------------------------------
def prog(step: int, t: float, total: int = 100) -> Progress:
    return Progress(t=t, step=step, total=total)


def test_steady_speed_excludes_warmup() -> None:
    w = SpeedWatch(batch_size=2)
    times = [0.0, 30.0, 31.0, 32.0, 33.0, 34.0]  # step 1 at 0 s; step 2 took 30 s of warm-up
    for step, t in enumerate(times, start=1):
        assert w.add(prog(step, t)) == []
    sp = w.speed()
    assert sp.steady_s_per_step == pytest.approx(1.0)
    assert sp.images_per_s == pytest.approx(2.0)
    assert sp.eta_s == pytest.approx(94.0)


def test_slow_against_expectation_warns_once() -> None:
    w = SpeedWatch(expected_s_per_step=1.0)
    warnings = []
    for step in range(1, 20):
        warnings += w.add(prog(step, step * 10.0))
    assert len(warnings) == 1 and warnings[0].code == "slow"
    assert "10× slower than expected" in warnings[0].message
    assert "Sysmem Fallback" in (warnings[0].fix or "")


def test_sudden_slowdown_warns_without_expectation() -> None:
    w = SpeedWatch()
    t, warnings = 0.0, []
    for step in range(1, 40):
        t += 1.0 if step < 20 else 60.0
        warnings += w.add(prog(step, t))
    assert [x.code for x in warnings] == ["slow"]
    assert "slowed from 1.00" in warnings[0].message


def test_vram_pinned_warning() -> None:
    w = SpeedWatch(pinned_s=30)
    full = GpuReading(used_bytes=99 * 2**30, total_bytes=100 * 2**30)
    assert w.gpu(full, 0.0) == []
    assert w.gpu(GpuReading(10, 100), 10.0) == []  # dropped: the clock restarts
    assert w.gpu(full, 20.0) == []
    (warn,) = w.gpu(full, 55.0)
    assert warn.code == "vram_pinned" and "99%" in warn.message
    assert w.gpu(full, 100.0) == []
    assert w.gpu(None, 101.0) == []


# -- live helpers --------------------------------------------------------------------------------
def test_sparkline_and_durations() -> None:
    assert sparkline([1.0, 2.0, 3.0]) == "▁▅█"
    assert sparkline([0.5] * 100, width=10) == "▁" * 10
    assert sparkline([1.0, math.nan]) == "▁!"
    assert sparkline([]) == ""
    assert (fmt_duration(5), fmt_duration(125), fmt_duration(3725), fmt_duration(None)) == ("5s", "2m05s", "1h02m", "?")


def test_plain_view_lines() -> None:
    out = io.StringIO()
    v = PlainView(out)
    v.start(Path("runs/x"), ["python"], 80)
    v.event(prog(1, 0.0))
    v.event(Checkpoint(path="runs/x/a.safetensors"))
    v.event(ErrorEvent(kind="nan", message="loss nan", fix="lower lr"))
    assert out.getvalue().splitlines() == [
        "lorakit: training started in runs/x, 80 steps",
        "checkpoint saved: runs/x/a.safetensors",
        "error (nan): loss nan",
        "  fix: lower lr",
    ]


# -- LoRA file checks ------------------------------------------------------------------------------
def test_verify_lora(tmp_path: Path) -> None:
    p = tmp_path / "l.safetensors"
    write_lora(p, 8, "4.0", "networks.lora", unet_only=True)
    tensors, meta = read_header(p)
    assert meta["ss_network_dim"] == "8" and len(tensors) == 6
    assert verify_lora(p, Expected("networks.lora", 8, 4.0, unet_only=True)).ok
    bad = verify_lora(p, Expected("networks.lora_sd3", 16, 1.0))
    assert len(bad.problems) == 4  # module, dim, alpha, ranks
    write_lora(p, 8, "4.0", "networks.lora", unet_only=False)
    assert any("text-encoder" in x for x in verify_lora(p, Expected("networks.lora", 8, 4.0, unet_only=True)).problems)
    p.write_bytes(p.read_bytes()[:-10])  # truncated
    assert "outside the file" in verify_lora(p, Expected("networks.lora", 8, 4.0)).problems[0]
    p.write_bytes(struct.pack("<Q", 5) + b"{nope")
    assert "not JSON" in verify_lora(p, Expected("networks.lora", 8, 4.0)).problems[0]
    assert "does not exist" in verify_lora(tmp_path / "none", Expected("networks.lora", 8, 4.0)).problems[0]


# -- diagnoses ------------------------------------------------------------------------------------
def test_fixes_and_exit_codes() -> None:
    ctx = Context(trainer_python="/opt/sd/venv/bin/python", precision="fp16", lr=3e-4, family="sdxl", batch_size=4)
    oom = fix_for(ErrorEvent(kind="oom", message=""), ctx)
    assert "lorakit vram-check" in oom and "training.batch_size=2" in oom
    nan = fix_for(ErrorEvent(kind="nan", message=""), ctx)
    assert "training.precision=bf16" in nan and "no_half_vae=true" in nan and "optimizer.lr=0.0001" in nan
    pkg = fix_for(
        ErrorEvent(kind="missing_package", message="", evidence="ModuleNotFoundError: No module named 'cv2'"), ctx
    )
    assert "/opt/sd/venv/bin/python -m pip install opencv-python" in pkg
    own = fix_for(ErrorEvent(kind="missing_package", message="", evidence="No module named 'library'"), ctx)
    assert "sd-scripts' own package" in own
    assert pip_name("lycoris.kohya") == "lycoris-lora"
    assert [exit_code_for(k) for k in ("oom", "nan", "crash", "dataset", "missing_package", "interrupted")] == [
        1,
        1,
        1,
        2,
        3,
        130,
    ]
    assert exit_code_for("missing_model", "model file x.safetensors") == 2
    assert exit_code_for("missing_model", "Can't load tokenizer for 'openai/clip-vit-large-patch14'") == 3


def test_diagnose_priorities() -> None:
    nan = ErrorEvent(kind="nan", message="nan")
    crash = ErrorEvent(kind="crash", message="x")
    d = diagnose(returncode=1, errors=[nan, crash])
    assert d is not None and d.kind == "nan" and d.exit_code == 1 and d.fix
    assert diagnose(returncode=0, errors=[]) is None
    killed = diagnose(returncode=-9, errors=[], tail=["steps: ..."])
    assert killed is not None and "signal 9" in killed.message and "OOM killer" in killed.message
    launcher = diagnose(
        returncode=1,
        errors=[],
        exceptions=["subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 1.", "ValueError: x"],
    )
    assert launcher is not None and launcher.evidence == "ValueError: x"
    intr = diagnose(returncode=-2, errors=[nan], interrupted=True)
    assert intr is not None and (intr.kind, intr.exit_code, intr.status) == ("interrupted", 130, "interrupted")


# -- resume ---------------------------------------------------------------------------------------
class _Seen(LogParser):
    def __init__(self, loaded: tuple[int, int] | None) -> None:
        super().__init__()
        self.loaded_state = loaded


def test_resume_check_continues() -> None:
    check = ResumeCheck(SavedState(Path("s"), epoch=2, step=80), planned_total=200, steps_per_epoch=40)
    parser = _Seen((2, 80))
    assert check(EpochStarted(t=1, epoch=3, total=5), parser) == [EpochStarted(t=1, epoch=3, total=5)]
    (p,) = check(Progress(t=2, step=1, total=200), parser)
    assert isinstance(p, Progress) and (p.step, p.total) == (81, 200)
    (p,) = check(Progress(t=3, step=2, total=120), parser)  # --skip_until_initial_step style total
    assert isinstance(p, Progress) and (p.step, p.total) == (82, 200)
    assert check.ok is True and check.problems == []


def test_resume_check_warns_loudly_on_restart() -> None:
    check = ResumeCheck(SavedState(Path("s"), epoch=2, step=80), planned_total=200, steps_per_epoch=40)
    out = check(EpochStarted(t=1, epoch=1, total=5), _Seen(None))
    warns = [e for e in out if isinstance(e, WarningEvent)]
    assert [w.code for w in warns] == ["resume_restarted", "resume_restarted"]
    assert warns[0].message.startswith("RESUME DID NOT CONTINUE")
    assert "restarted at epoch 1/5, not at epoch 3" in warns[1].message
    assert check.ok is False
    (p,) = check(Progress(t=2, step=1, total=200), _Seen(None))
    assert isinstance(p, Progress) and p.step == 1  # not shifted: it really restarted


def test_saved_states_and_absolute_spec(tmp_path: Path) -> None:
    for epoch, step in ((1, 40), (2, 80)):
        d = tmp_path / f"lora-{epoch:06d}-state"
        d.mkdir()
        (d / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
    states = saved_states(tmp_path)
    assert [(s.path.name, s.epoch, s.step) for s in states] == [
        ("lora-000001-state", 1, 40),
        ("lora-000002-state", 2, 80),
    ]
    spec = {
        "model": {"checkpoint": "models/a.safetensors", "vae": None},
        "dataset": {"folder": "/abs/data", "concepts": [{"folder": "c1"}]},
        "output": {"folder": "runs", "lora_folders": ["~/loras"]},
    }
    out = absolute_spec(spec, Path("/home/u"))
    assert out["model"] == {"checkpoint": "/home/u/models/a.safetensors", "vae": None}
    assert out["dataset"] == {"folder": "/abs/data", "concepts": [{"folder": "/home/u/c1"}]}
    assert out["output"] == {"folder": "/home/u/runs", "lora_folders": ["~/loras"]}


def test_gpu_sampler_reads_through_device_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    from lorakit.gpu import nvml
    from lorakit.run.watch import GpuSampler

    class FakeReader:
        opened: list[int] = []  # noqa: RUF012

        def __init__(self, index: int) -> None:
            self.name = "NVIDIA H200"
            FakeReader.opened.append(index)

        def memory(self) -> nvml.MemoryReading:
            return nvml.MemoryReading(total_bytes=100, used_bytes=40, free_bytes=60)

        def utilization(self) -> int | None:
            return 97

        def close(self) -> None:
            pass

    monkeypatch.setattr(nvml, "DeviceReader", FakeReader)
    s = GpuSampler(1)
    assert s.read() == GpuReading(40, 100, 97, "NVIDIA H200")
    assert s.read() is not None and FakeReader.opened == [1]  # one session for the run
    s.close()


def test_gpu_sampler_without_gpu_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml
    from lorakit.run.watch import GpuSampler

    def boom(index: int) -> None:
        raise EnvironmentProblem("no driver")

    monkeypatch.setattr(nvml, "DeviceReader", boom)
    s = GpuSampler()
    assert s.read() is None and s.read() is None


def test_resume_refuses_a_run_that_reached_its_end(tmp_path: Path) -> None:
    from lorakit.run.resume import last_state

    for name, (epoch, step) in (("e2e-000003-state", (3, 12)), ("e2e-state", (4, 16))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
    folder.write_state(tmp_path, {"status": "interrupted", "save_state": True})
    with pytest.raises(ConfigError, match="reached the end of training"):
        last_state(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "e2e-state")
    assert last_state(tmp_path).path.name == "e2e-000003-state"
