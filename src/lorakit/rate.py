"""THE steady s/step: one definition for the live view, state.json, ``runs show``, ``bench`` and
the report.

Definition: take the run's progress events in order, one point per step (the first report of a
step; a step counter that goes back, as a resumed launch does, starts the series over). For each
pair of consecutive points whose first step is at least ``WARMUP_STEPS`` (the first steps hold
cuDNN autotuning, allocator growth and caching), the interval rate is
``(t₂ - t₁) / (step₂ - step₁)``, ``t`` being the time lorakit read the progress line. The steady
s/step is the **median** of those rates: checkpoint saves and sample images are single long
intervals, which the median ignores. ``window=N`` uses only the last N intervals (the live
view's *current* rate, ``LIVE_WINDOW``); the whole-run figure (``window=None``) is what
``runs show``, ``bench`` and the report print. With no interval at all, the whole-run figure falls
back to the median of tqdm's own ``s/it``.

Why the event time and not tqdm's ``elapsed``: tqdm prints elapsed in whole seconds, so at
under a second per step most per-step intervals would read 0 or 1 s. One exception, for the
whole-run figure only: when lorakit's read times do not resolve the steps (after the warm-up
they span less than half of what tqdm's elapsed spans: the lines arrived in a burst, as from a
replayed or buffered log), tqdm's elapsed is the clock instead. A median of 0 (a clock too
coarse for the steps) counts as no figure and falls back to tqdm's own rate as above.

Pure (imports only the neutral events module).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

from lorakit.events import Progress

WARMUP_STEPS = 2
LIVE_WINDOW = 100

__all__ = ["LIVE_WINDOW", "WARMUP_STEPS", "Intervals", "steady_s_per_step"]


class Intervals:
    """The per-step interval rates of a progress series, fed one point at a time (the live view
    keeps one and asks for its median after every step)."""

    def __init__(self, *, warmup: int = WARMUP_STEPS, window: int | None = None) -> None:
        self.warmup = warmup
        self._last: tuple[float, int] | None = None
        self._rates: deque[float] = deque(maxlen=window)

    def add(self, step: int, t: float) -> None:
        last = self._last
        if last is not None and step < last[1]:  # the counter went back (resume): start over
            self._rates.clear()
            last = None
        elif last is not None and step == last[1]:  # a second report of the same step
            return
        if last is not None and last[1] >= self.warmup and t >= last[0]:
            self._rates.append((t - last[0]) / (step - last[1]))
        self._last = (t, step)

    def __len__(self) -> int:
        return len(self._rates)

    def median(self, last: int | None = None) -> float | None:
        """The median rate (of the last ``last`` intervals); None before the first interval."""
        rates = list(self._rates)[-last:] if last else self._rates
        return statistics.median(rates) if rates else None


def steady_s_per_step(
    progress: Iterable[Progress], *, warmup: int = WARMUP_STEPS, window: int | None = None
) -> float | None:
    """The steady s/step of a run's progress events (see the module's docstring)."""
    points = list(progress)
    iv = Intervals(warmup=warmup, window=window)
    use_elapsed = _burst(points, warmup)
    for p in points:
        iv.add(p.step, float(p.elapsed_s) if use_elapsed and p.elapsed_s is not None else p.t)
    rate = iv.median()
    if rate:
        return rate
    rates = [p.s_per_step for p in points if p.s_per_step]
    return statistics.median(rates) if rates else None


def _burst(points: list[Progress], warmup: int) -> bool:
    """Whether the read times fail to resolve the steps (see the module's docstring)."""
    after = [p for p in points if p.step >= warmup]
    if len(after) < 2 or any(p.elapsed_s is None for p in after):
        return False
    t_span = max(p.t for p in after) - min(p.t for p in after)
    e_span = max(float(p.elapsed_s or 0.0) for p in after) - min(float(p.elapsed_s or 0.0) for p in after)
    return e_span > 0 and t_span < 0.5 * e_span
