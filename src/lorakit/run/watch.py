"""Speed and health of a running training: steady-state s/step (warm-up excluded), images/s,
ETA, and the slow-run watch.

Steady s/step is ``lorakit.rate``'s one definition (the median of the per-step intervals after
the first ``warmup_steps`` steps; pauses for checkpoints/samples are outliers the median
ignores), here over the last ``window`` steps: the *current* rate of the live view, state.json
and the slow/stall checks. ``runs show``, ``bench`` and the report print the whole-run figure.

The slow-run watch raises a ``warning`` event (once per kind) when

- ``slow``: steady s/step is more than ``slow_factor`` × what is expected for this GPU and
  config (``expected_s_per_step``, from the VRAM/speed estimator when it provides one), or,
  without an expectation, when a run that was steady becomes ``slow_factor`` × slower (the
  signature of the driver starting to spill VRAM into shared system memory);
- ``vram_pinned``: GPU memory sits at ≥ 97 % of the card for ``pinned_s`` seconds.

On Windows and WSL2 both usually mean the NVIDIA driver's "sysmem fallback" is moving
tensors into system RAM over PCIe: 50–100× slower, no error. The fix text says so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lorakit.events import Progress, WarningEvent
from lorakit.rate import LIVE_WINDOW, Intervals

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec

SPILL_FIX = (
    "the GPU is out of memory and the driver is spilling into shared system memory (Windows/WSL2 "
    "'sysmem fallback'): set NVIDIA Control Panel → Manage 3D settings → CUDA - Sysmem Fallback Policy → "
    "'Prefer No Sysmem Fallback' (then a too-big config fails fast with OOM instead of crawling), and make the "
    "config fit: `lorakit vram-check`, training.gradient_checkpointing=true, a smaller batch or network.dim, "
    "training.cache_text_encoder_outputs=true; close other programs using the GPU"
)


@dataclass(frozen=True)
class GpuReading:
    used_bytes: int
    total_bytes: int
    util_percent: int | None = None
    name: str | None = None

    @property
    def used_fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class Speed:
    step: int
    total: int
    steady_s_per_step: float | None
    images_per_s: float | None
    eta_s: float | None


@dataclass
class SpeedWatch:
    batch_size: int = 1
    warmup_steps: int = 2
    window: int = LIVE_WINDOW
    expected_s_per_step: float | None = None
    slow_factor: float = 5.0
    min_steps: int = 5  # steady steps needed before judging
    pinned_fraction: float = 0.97
    pinned_s: float = 60.0
    _intervals: Intervals = field(default_factory=Intervals)
    _baseline: float | None = None
    _warned: set[str] = field(default_factory=set)
    _pinned_since: float | None = None
    step: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        self._intervals = Intervals(warmup=self.warmup_steps, window=self.window)

    def add(self, ev: Progress) -> list[WarningEvent]:
        """Record a progress event (its ``t`` is the time it was seen)."""
        self._intervals.add(ev.step, ev.t)
        self.step, self.total = ev.step, ev.total
        return self._check_slow(ev.t)

    @property
    def steady_s_per_step(self) -> float | None:
        return self._intervals.median()

    def speed(self) -> Speed:
        sps = self.steady_s_per_step
        ips = self.batch_size / sps if sps else None
        eta = sps * max(0, self.total - self.step) if sps is not None and self.total else None
        return Speed(self.step, self.total, sps, ips, eta)

    def _check_slow(self, now: float) -> list[WarningEvent]:
        sps = self.steady_s_per_step
        if sps is None or len(self._intervals) < self.min_steps or "slow" in self._warned:
            return []
        if self.expected_s_per_step:
            if sps > self.slow_factor * self.expected_s_per_step:
                return [
                    self._warn(
                        "slow",
                        now,
                        f"training runs at {sps:.2f} s/step, {sps / self.expected_s_per_step:.0f}× slower than "
                        f"expected for this GPU and config (~{self.expected_s_per_step:.2f} s/step)",
                    )
                ]
            return []
        if self._baseline is None:
            if len(self._intervals) >= self.min_steps:
                self._baseline = sps
            return []
        r = self._intervals.median(last=self.min_steps) or 0.0
        if r > self.slow_factor * self._baseline:
            return [
                self._warn(
                    "slow",
                    now,
                    f"training slowed from {self._baseline:.2f} to {r:.2f} s/step "
                    f"({r / self._baseline:.0f}× slower) without an error",
                )
            ]
        return []

    def gpu(self, reading: GpuReading | None, now: float) -> list[WarningEvent]:
        """Record a GPU memory reading; warn once when memory stays pinned at the limit."""
        if reading is None or not reading.total_bytes:
            return []
        if reading.used_fraction < self.pinned_fraction:
            self._pinned_since = None
            return []
        if self._pinned_since is None:
            self._pinned_since = now
        if now - self._pinned_since >= self.pinned_s and "vram_pinned" not in self._warned:
            gib = reading.total_bytes / 2**30
            return [
                self._warn(
                    "vram_pinned",
                    now,
                    f"GPU memory has been at {reading.used_fraction:.0%} of {gib:.0f} GiB for "
                    f"{now - self._pinned_since:.0f} s; if steps are slow, memory is spilling",
                )
            ]
        return []

    def _warn(self, code: str, now: float, message: str) -> WarningEvent:
        self._warned.add(code)
        return WarningEvent(t=now, code=code, message=message, fix=SPILL_FIX)


class GpuSampler:
    """GPU memory/utilisation for the live view and the watch, read through
    ``lorakit.gpu.nvml.DeviceReader`` (the only NVML caller; one session for the whole run).
    ``read()`` is None without NVML, driver or GPU: the view then omits GPU figures."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._reader: Any = None
        self._failed = False
        self.name: str | None = None

    def read(self) -> GpuReading | None:
        if self._failed:
            return None
        try:
            if self._reader is None:
                from lorakit.gpu.nvml import DeviceReader

                self._reader = DeviceReader(self.index)
                self.name = self._reader.name
            mem = self._reader.memory()
            return GpuReading(mem.used_bytes, mem.total_bytes, self._reader.utilization(), self.name)
        except Exception:
            self._failed = True
            self.close()
            return None

    def close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
            self._reader = None


def expected_s_per_step(spec: TrainSpec, gpu_index: int = 0) -> tuple[float, str] | None:
    """(s/step, basis) the speed model expects for this spec on this machine's GPU, when that
    GPU's class has measurements of its own (a nearest-card guess would raise false alarms);
    None otherwise, or without a GPU."""
    try:
        from lorakit.gpu import nvml as lk_nvml
        from lorakit.gpu.estimate import shape_from_spec
        from lorakit.gpu.throughput import gpu_class, load_speed_table

        info = lk_nvml.gpu(gpu_index, processes=False)
        table = load_speed_table()
        family = spec.model.family
        if (gpu_class(info.name), family) not in table.models:
            return None
        model, basis = table.model_for(info.name, family, info.total_gib)
        return model.s_per_step(shape_from_spec(spec)), basis
    except Exception:  # no GPU, no data: the watch falls back to the slowdown check
        return None
