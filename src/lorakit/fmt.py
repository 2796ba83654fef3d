"""The one duration formatter (live view, ``runs show``, ``vram-check``, the report).

``duration(125)`` → ``2m05s`` (short form: hours and minutes, or minutes and seconds);
``duration(3725, precise=True)`` → ``1h 02m 05s`` (the report's table). ``None``, NaN and
infinity give ``missing``; a negative duration is formatted as its size with a ``-`` in front.
"""

from __future__ import annotations

import math

__all__ = ["duration"]


def duration(seconds: float | None, *, precise: bool = False, missing: str = "?") -> str:
    if seconds is None or not math.isfinite(seconds):
        return missing
    sign = "-" if seconds < 0 else ""
    h, rem = divmod(round(abs(seconds)), 3600)
    m, s = divmod(rem, 60)
    if precise:
        return sign + (f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s")
    if h:
        return f"{sign}{h}h{m:02d}m"
    if m:
        return f"{sign}{m}m{s:02d}s"
    return f"{sign}{s}s"
