"""The trainer's per-step loss (TensorBoard event files under <run>/logs) in the runner's view and
state.json, and end to end through `lorakit train` → `runs show` → `report`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lorakit.events import Event
from lorakit.run.folder import read_state
from lorakit.run.live import status_lines
from lorakit.run.runner import Options, Snapshot, supervise
from lorakit.run.watch import Speed
from tests.run.conftest import fake_child
from tests.tbwrite import Launch, step_logs, write_launch


class Recorder:
    """An Observer keeping every snapshot; ``on_start`` runs when the trainer has started."""

    def __init__(self, on_start: threading.Thread | None = None) -> None:
        self.snaps: list[Snapshot] = []
        self.on_start = on_start

    def start(self, run_dir: Path, argv: list[str], total_steps: int | None) -> None:
        if self.on_start is not None:
            self.on_start.start()

    def event(self, ev: Event) -> None:
        pass

    def tick(self, snap: Snapshot) -> None:
        self.snaps.append(snap)

    def stop(self) -> None:
        pass


def test_runner_shows_the_trainers_per_step_loss_of_every_launch(run_dir: Path) -> None:
    # a resumed run: the first launch logged steps 1-3; this launch logs 4-6 while it runs
    write_launch(run_dir, "20261123120000", [(1, 0.5), (2, 0.4), (3, 0.3)], wall_start=time.time() - 3600)

    def trainer_logs() -> None:
        time.sleep(0.5)
        launch = Launch(run_dir, "20261123130000")
        for step, loss in ((4, 0.2), (5, 0.1), (6, 0.05)):
            launch.log(step_logs(loss, 0.3), step)
            time.sleep(0.2)
        launch.close()

    writer = threading.Thread(target=trainer_logs)
    rec = Recorder(on_start=writer)
    result = supervise(fake_child(run_dir, lora="1", sleep="2.5"), run_dir, Options(gpu_index=None, observer=rec))
    writer.join()
    assert result.returncode == 0
    with_loss = [s.step_losses for s in rec.snaps if s.step_losses]
    assert with_loss[0][:3] == pytest.approx([0.5, 0.4, 0.3])  # the earlier launch, from the first scan on
    assert with_loss[-1] == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    line = next(x for x in status_lines(rec.snaps[-1]) if x.startswith("loss "))
    assert line.startswith("loss 0.05 · smoothed 0.")
    assert read_state(run_dir)["loss"] == pytest.approx(0.05)


def snapshot(**kw: object) -> Snapshot:
    base: dict[str, object] = {
        "run_dir": Path("r"), "started_at": 0.0, "now": 60.0, "progress": None,
        "speed": Speed(step=0, total=10, steady_s_per_step=None, images_per_s=None, eta_s=None),
        "gpu": None, "epoch": None, "epochs": None, "losses": [], "last_checkpoint": None,
        "warnings": [], "stopping": None,
    }  # fmt: skip
    return Snapshot(**(base | kw))  # type: ignore[arg-type]


def test_status_line_prefers_the_per_step_loss_and_falls_back_to_the_running_mean() -> None:
    from lorakit.kohya.tblog import smoothed
    from lorakit.run.live import sparkline

    trend = smoothed([0.3, 0.1, 0.2])
    both = status_lines(snapshot(losses=[0.2, 0.19], step_losses=[0.3, 0.1, 0.2]))
    # the last raw per-step value, then the smoothed one; the bar's running mean is not shown
    assert [x for x in both if "loss" in x] == [f"loss 0.2 · smoothed {trend[-1]:.4g}  {sparkline(trend)}"]
    assert 0.1 < trend[-1] < 0.3
    fallback = status_lines(snapshot(losses=[0.2, 0.19]))
    assert [x for x in fallback if "loss" in x] == ["avg loss 0.19  █▁"]


def test_lorakit_train_logs_per_step_loss_that_runs_show_and_report_read(tmp_path: Path) -> None:
    """End to end: the plan's --logging_dir reaches the (fake) trainer, which writes event files
    as sd-scripts + accelerate do; state.json, `runs show` and `report` read them."""
    from tests.conftest import make_kohya_dataset
    from tests.queue.queue_fakes import FakeInstall

    fake = FakeInstall(tmp_path / "inst")
    data = make_kohya_dataset(tmp_path / "data", {"5_zzc style": 2})
    per_step = [(n, 0.3 - n / 100 + (0.02 if n % 2 else -0.02)) for n in range(1, 11)]
    lines = ["epoch 1/1"] + [
        f"steps: {n * 10:3d}%|#  | {n}/10 [00:{4 + n:02d}<00:10,  1.00s/it, avr_loss={0.3 - n / 200:.3f}]"
        for n in range(1, 11)
    ]
    fake.plan({"tbrun": {"lines": lines, "tb": per_step, "sleep": 2.5}})
    env = fake.env(tmp_path / "home")
    (tmp_path / "home").mkdir()

    def lorakit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lorakit", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    r = lorakit("train", "--preset", "comic-style", "--data", str(data), "--quiet",
                "--set", f"model.checkpoint={fake.checkpoint}", "--set", "output.name=tbrun")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    run = next((tmp_path / "runs").iterdir())
    argv = fake.records()["tbrun"]["argv"]
    assert "--log_with=tensorboard" in argv and f"--logging_dir={run / 'logs'}" in argv
    assert len(list((run / "logs").glob("*/network_train/events.out.tfevents.*"))) == 1  # accelerate's layout
    assert read_state(run)["loss"] == pytest.approx(per_step[-1][1])

    r = lorakit("runs", "show", "last", "--json")
    assert r.returncode == 0, r.stderr
    loss = json.loads(r.stdout)["loss"]
    assert (loss["step"], loss["note"]) == (10, None)
    assert tmp_path / loss["logs"] == run / "logs"  # as the run folder is given: relative to the cwd here
    assert loss["value"] == pytest.approx(per_step[-1][1])
    r = lorakit("runs", "show", "last")
    assert f"loss {per_step[-1][1]:.4g} at step 10 (smoothed " in r.stdout
    assert f"TensorBoard: tensorboard --logdir {loss['logs']}" in r.stdout.replace("\n", "")

    r = lorakit("report", "last", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["loss_source"] == "tensorboard" and out["loss_note"] is None
    assert out["avg_loss"] == pytest.approx(sum(v for _, v in per_step) / 10, rel=1e-6)


def test_runs_show_of_a_run_without_logs_says_why(tmp_path: Path) -> None:
    from lorakit.events import EventLog, Progress, Started

    run = tmp_path / "runs" / "old-20261101-120000"
    run.mkdir(parents=True)
    with EventLog(run / "events.jsonl") as log:
        log.append(Started(t=1.0, run_dir=str(run), argv=["python", "x.py"], total_steps=4))
        log.append(Progress(t=2.0, step=1, total=4, avr_loss=0.123))
    r = subprocess.run([sys.executable, "-m", "lorakit", "runs", "show", str(run)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "note: no TensorBoard logs in the run folder" in r.stdout.replace("\n", " ")
    assert "tensorboard --logdir" not in r.stdout
