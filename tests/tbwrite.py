"""Writing TensorBoard event files the way a real sd-scripts run does, for the tests.

sd-scripts passes accelerate ``<logging_dir>/<YYYYmmddHHMMSS>`` as project folder; accelerate
1.6.0's ``TensorBoardTracker`` opens ``torch.utils.tensorboard.SummaryWriter(<that>/network_train)``
and ``log()`` calls ``add_scalar(tag, value, global_step=step)`` for each value, then ``flush()``.
torch's SummaryWriter writes through TensorBoard's own ``EventFileWriter`` (file name
``events.out.tfevents.<time>.<host>.<pid>.<n>``, a ``file_version`` record first) with
old-style ``Summary.Value(tag, simple_value)`` records — what :func:`write_launch` writes, with
the same writer class (torch itself is not installed here).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

TRACKER = "network_train"  # train_network.py: train_util.init_trackers(accelerator, args, "network_train")


class Launch:
    """One launch's tracker: ``log`` = accelerate's ``TensorBoardTracker.log`` (add_scalar per
    value, then flush)."""

    def __init__(self, run_dir: Path, stamp: str, wall_start: float | None = None) -> None:
        self.folder = Path(run_dir) / "logs" / stamp / TRACKER
        self.writer = EventFileWriter(str(self.folder))
        self.wall = time.time() if wall_start is None else wall_start

    def log(self, values: Mapping[str, float], step: int) -> None:
        self.wall += 0.5
        for tag, value in values.items():
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
            self.writer.add_event(Event(wall_time=self.wall, step=step, summary=summary))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    @property
    def file(self) -> Path:
        return next(self.folder.glob("events.out.tfevents.*"))


def step_logs(loss: float, avr: float, lr: float = 1e-4) -> dict[str, float]:
    """What ``NetworkTrainer.generate_step_logs`` logs for a U-Net-only run."""
    return {"loss/current": loss, "loss/average": avr, "lr/unet": lr}


def write_launch(
    run_dir: Path,
    stamp: str,
    losses: Iterable[tuple[int, float]],
    *,
    wall_start: float | None = None,
    epoch_every: int | None = None,
) -> Path:
    """A whole launch: per step ``loss/current`` / ``loss/average`` / ``lr/unet`` at the step,
    and (every ``epoch_every`` steps) ``loss/epoch_average`` at ``step=epoch`` as sd-scripts does."""
    launch = Launch(run_dir, stamp, wall_start)
    window: list[float] = []
    for step, loss in losses:
        window.append(loss)
        launch.log(step_logs(loss, sum(window) / len(window)), step)
        if epoch_every and step % epoch_every == 0:
            launch.log({"loss/epoch_average": sum(window) / len(window)}, step // epoch_every)
    launch.close()
    return launch.file
