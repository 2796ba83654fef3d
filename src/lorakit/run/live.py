"""Views of a running training (the runner's ``Observer``).

- :class:`LiveView` (a terminal): a rich live panel with the step/total bar, steady s/step
  (warm-up excluded), images/s, ETA, the loss (the trainer's per-step loss from its TensorBoard
  logs with a smoothed value and sparkline; else the progress bar's running mean), GPU memory and
  utilisation (NVML; omitted without a GPU), the last checkpoint and any warnings; milestone
  events (epochs, checkpoints, samples, warnings, errors) print above it.
- :class:`PlainView` (stdout is not a TTY: a log file, CI, a queue): one plain line per
  milestone event and a progress line every ``every_s`` seconds.
- ``--quiet``: no view at all (:func:`make_view` returns None); the CLI prints the outcome.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lorakit.events import (
    Checkpoint,
    EpochStarted,
    ErrorEvent,
    Event,
    Finished,
    Sample,
    StateSaved,
    WarningEvent,
)
from lorakit.fmt import duration

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from lorakit.run.runner import Observer, Snapshot

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """Unicode sparkline of ``values`` squeezed into ``width`` cells (bucket means); NaN/inf → '!'."""
    if not values:
        return ""
    n = len(values)
    buckets: list[float] = []
    for i in range(min(width, n)):
        lo, hi = i * n // min(width, n), (i + 1) * n // min(width, n)
        chunk = values[lo:hi] or [values[lo]]
        buckets.append(sum(chunk) / len(chunk))
    finite = [b for b in buckets if math.isfinite(b)]
    if not finite:
        return "!" * len(buckets)
    lo_v, hi_v = min(finite), max(finite)
    span = hi_v - lo_v
    out = []
    for b in buckets:
        if not math.isfinite(b):
            out.append("!")
        else:
            idx = 0 if span <= 0 else round((b - lo_v) / span * (len(BARS) - 1))
            out.append(BARS[idx])
    return "".join(out)


def fmt_duration(seconds: float | None) -> str:
    """Kept name: ``lorakit.fmt.duration`` (short form)."""
    return duration(seconds)


def status_lines(snap: Snapshot) -> list[str]:
    """The figures of a snapshot as plain text lines (shared by both views)."""
    p, sp = snap.progress, snap.speed
    lines = []
    figures = []
    if sp.steady_s_per_step is not None:
        figures.append(f"{sp.steady_s_per_step:.2f} s/step steady")
    if sp.images_per_s is not None:
        figures.append(f"{sp.images_per_s:.2f} images/s")
    figures.append(f"ETA {fmt_duration(sp.eta_s)}")
    figures.append(f"elapsed {fmt_duration(snap.now - snap.started_at)}")
    lines.append(" · ".join(figures))
    if snap.step_losses:  # the trainer's per-step loss (TensorBoard logs): last value, EMA, its trend
        from lorakit.kohya.tblog import smoothed

        trend = smoothed(snap.step_losses)
        lines.append(f"loss {snap.step_losses[-1]:.4g} · smoothed {trend[-1]:.4g}  {sparkline(trend)}")
    elif snap.losses:
        last = snap.losses[-1]
        lines.append(f"avg loss {last:.4g}  {sparkline(snap.losses)}")
    elif p is not None and p.avr_loss is not None:
        lines.append(f"avg loss {p.avr_loss:.4g}")
    if snap.gpu is not None:
        g = snap.gpu
        util = f" · util {g.util_percent}%" if g.util_percent is not None else ""
        lines.append(f"GPU {g.name or ''} {g.used_bytes / 2**30:.1f}/{g.total_bytes / 2**30:.1f} GiB{util}".strip())
    if snap.last_checkpoint:
        lines.append(f"last checkpoint {Path(snap.last_checkpoint).name}")
    return lines


def event_line(ev: Event) -> str | None:
    """A one-line description of a milestone event (None for progress and the like)."""
    if isinstance(ev, EpochStarted):
        return f"epoch {ev.epoch}/{ev.total}"
    if isinstance(ev, Checkpoint):
        return f"checkpoint saved: {ev.path}"
    if isinstance(ev, StateSaved):
        return f"training state saved: {ev.path}"
    if isinstance(ev, Sample):
        return f"sample image: {ev.path}"
    if isinstance(ev, WarningEvent):
        return f"warning: {ev.message}" + (f"\n  fix: {ev.fix}" if ev.fix else "")
    if isinstance(ev, ErrorEvent):
        return f"error ({ev.kind}): {ev.message}" + (f"\n  fix: {ev.fix}" if ev.fix else "")
    if isinstance(ev, Finished):
        return f"finished: {ev.status} (exit {ev.exit_code})"
    return None


class PlainView:
    """Plain text lines for a non-terminal stdout."""

    def __init__(self, out: TextIO, every_s: float = 30.0) -> None:
        self.out = out
        self.every_s = every_s
        self._last = 0.0
        self._last_step = -1

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def start(self, run_dir: Path, argv: list[str], total_steps: int | None) -> None:
        steps = f", {total_steps} steps" if total_steps else ""
        self._print(f"lorakit: training started in {run_dir}{steps}")

    def event(self, ev: Event) -> None:
        line = event_line(ev)
        if line is not None:
            self._print(line)

    def tick(self, snap: Snapshot) -> None:
        p = snap.progress
        now = time.monotonic()
        if p is None or p.step == self._last_step or now - self._last < self.every_s:
            return
        self._last, self._last_step = now, p.step
        pct = f" ({100 * p.step / p.total:.0f}%)" if p.total else ""
        self._print(f"step {p.step}/{p.total}{pct} · " + " · ".join(status_lines(snap)))

    def stop(self) -> None:
        pass


class LiveView:
    """A rich live panel on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._title = ""

    def start(self, run_dir: Path, argv: list[str], total_steps: int | None) -> None:
        from rich.live import Live

        self._title = run_dir.name
        self._live = Live(self._render(None), console=self.console, auto_refresh=False, transient=False)
        self._live.start()

    def event(self, ev: Event) -> None:
        line = event_line(ev)
        if line is None:
            return
        style = {WarningEvent: "yellow", ErrorEvent: "bold red", Finished: "bold"}.get(type(ev), "dim")
        self.console.print(line, style=style, markup=False, highlight=False)

    def _render(self, snap: Snapshot | None) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        p = snap.progress if snap else None
        total = p.total if p and p.total else None
        step = p.step if p else 0
        head = Text.assemble(("lorakit ", "bold"), (self._title, "cyan"))
        if snap is not None and snap.epoch is not None:
            head.append(f"   epoch {snap.epoch}/{snap.epochs}")
        if snap is not None and snap.stopping:
            head.append(f"   stopping ({snap.stopping})…", style="bold yellow")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=float(total or 1), completed=float(step), width=50),
            Text(f"{step}/{total or '?'}" + (f"  {100 * step / total:.0f}%" if total else "")),
        )
        rows: list[RenderableType] = [head, bar]
        if snap is not None:
            rows += [Text(line) for line in status_lines(snap)]
            for w in snap.warnings[-2:]:
                rows.append(Text(f"⚠ {w.message}", style="yellow"))
        else:
            rows.append(Text("starting the trainer (loading models, caching latents)…", style="dim"))
        return Group(*rows)

    def tick(self, snap: Snapshot) -> None:
        if self._live is not None:
            self._live.update(self._render(snap), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def make_view(*, quiet: bool, console: Console | None = None, out: TextIO | None = None) -> Observer | None:
    """The view for this terminal: None with ``quiet``, LiveView on a TTY, else PlainView."""
    import sys

    if quiet:
        return None
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(console)
    return PlainView(out or sys.stdout)
