"""Free space for a run: checked before launch, watched while it runs, and a small reserve so
the run's outcome can always be written.

What a run writes is known from its plan: the LoRA file (network parameters × the save
precision's bytes), once per checkpoint and once at the end, and with ``saving.save_state`` a
state folder (the network in fp32 + the optimizer's state). :func:`need` estimates one of each.

- Before launch, :func:`check_before` refuses (exit 3) when the run folder's file system has
  less free than one LoRA + one state + :data:`MARGIN` — instead of a run that dies hours later
  with a half-written file.
- While it runs, :class:`DiskWatch` reads the free space every few seconds: below two saves'
  worth it warns once; below one save it asks the runner to stop the trainer while the files
  already saved are whole (the next save would be truncated).
- :func:`make_reserve` puts a small file into the run folder at launch; :func:`release_reserve`
  deletes it right before lorakit writes the ``finished`` event and the final ``state.json``,
  so those few kilobytes have room even when the trainer filled the disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit.errors import EnvironmentProblem

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec

MARGIN = 32 * 2**20  # logs, events, state.json, sample images
RESERVE_FILE = ".lorakit-reserve"
RESERVE_BYTES = 256 * 2**10
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Need:
    lora_bytes: int  # one LoRA file
    state_bytes: int  # one --save_state folder (0 without save_state)

    @property
    def one_save(self) -> int:
        """What the trainer writes at one checkpoint."""
        return self.lora_bytes + self.state_bytes


def need(spec: TrainSpec) -> Need:
    """One LoRA file and one saved state of this spec, in bytes (an estimate from the network's
    parameter count, ±10 %)."""
    from lorakit.gpu.estimate import network_params, optimizer_state_bytes, shape_from_spec

    shape = shape_from_spec(spec)
    params = network_params(shape, spec.family.arch)
    lora = int(params * (4 if spec.saving.precision == "float" else 2)) + 2**20  # + header/metadata
    state = 0
    if spec.saving.save_state:
        state = int(params * 4 + optimizer_state_bytes(shape.optimizer, params, 4, shape.dim)) + 2**20
    return Need(lora, state)


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s file system (None: unknown)."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def fmt(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_before(folder: Path, n: Need) -> None:
    """Refuse a launch without room for one save (and the margin) in ``folder``."""
    free = free_bytes(folder)
    want = n.one_save + MARGIN
    if free is not None and free < want:
        what = f"the LoRA ({fmt(n.lora_bytes)})"
        if n.state_bytes:
            what += f" and one training state ({fmt(n.state_bytes)})"
        raise EnvironmentProblem(
            f"not enough free space for this run in {folder}: {fmt(free)} free, it needs at least {fmt(want)} "
            f"for {what} plus logs",
            fix="free some space there, or put the runs elsewhere with --set output.folder=PATH",
        )


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


@dataclass
class DiskWatch:
    """Free space of the run folder while the trainer runs (see the module docstring)."""

    folder: Path
    need: Need
    warned: bool = False

    def check(self) -> tuple[str, str] | None:
        """("warn" | "stop", message) when the free space gets short, else None."""
        free = free_bytes(self.folder)
        if free is None:
            return None
        save = self.need.one_save
        if free < save + RESERVE_BYTES:
            return "stop", (
                f"the disk of {self.folder} is almost full ({fmt(free)} free, one save needs about {fmt(save)}): "
                "lorakit stopped the trainer before a save is cut short; the checkpoints saved so far are whole"
            )
        if free < 2 * save + MARGIN and not self.warned:
            self.warned = True
            return "warn", (
                f"the disk of {self.folder} is filling up: {fmt(free)} free, one save needs about {fmt(save)}; "
                "lorakit stops the trainer when less than one save fits"
            )
        return None


def make_reserve(run_dir: Path) -> None:
    """The few hundred kilobytes the outcome is written into (best effort)."""
    with contextlib.suppress(OSError):
        path = run_dir / RESERVE_FILE
        if not path.exists():
            with path.open("wb") as fh:
                fh.write(b"\0" * RESERVE_BYTES)


def release_reserve(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / RESERVE_FILE).unlink()
