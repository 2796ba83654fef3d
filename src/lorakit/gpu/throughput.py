"""Speed model: seconds per step of a config on a GPU class, from measured runs kept as data.

Per (GPU class, model family), from every measured row with a s/step (``throughput.json``,
``vram_calibration.json``, ``field_notes_measurements.json``)::

    s/step = c0 + batch × megapixels × (u without GC | v with GC)

c0 is the per-step cost that batching spreads (optimizer step over the network, launches, data),
u and v the cost of one image without and with gradient checkpointing. Fitted by least squares.
With too few rows for three numbers, the GC ratio v/u comes from another family on the same GPU
class (else 1.3); with all rows at one batch size, the per-step cost is taken as zero. Batches
beyond twice the largest measured one are not proposed (no further extrapolation).

Unknown GPU (the stated fallback): the measured GPU class closest in memory size (a 24 GB card is
answered with RTX 3090 figures, an 80 GB one with H100 figures), and the answer says so. Changes
no measurement covers carry stated assumptions: fp8 base +10 % s/step (upcasting each weight),
block swap +block size × 4 transfers / 25 GB/s × ½ (half hidden behind compute) per block,
fp32 ×2, 8-bit optimizer and full_bf16 ±0.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from lorakit.gpu.arch import arch
from lorakit.gpu.estimate import TrainShape
from lorakit.gpu.measurements import Measurement, load_all

FP8_SLOWDOWN = 1.10
FP32_SLOWDOWN = 2.0
PCIE_BYTES_PER_S = 25e9
SWAP_HIDDEN = 0.5
DEFAULT_GC_RATIO = 1.3

# Known classes: name pattern → (class, memory GiB). Order matters (H100 before H10).
_CLASSES: tuple[tuple[str, str, float], ...] = (
    (r"H200", "H200", 141),
    (r"H100", "H100", 80),
    (r"GH200", "GH200", 96),
    (r"B200", "B200", 180),
    (r"A100.*80", "A100 80GB", 80),
    (r"A100", "A100", 40),
    (r"L40S", "L40S", 48),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 48),
    (r"A6000", "RTX A6000", 48),
    (r"5090", "RTX 5090", 32),
    (r"4090", "RTX 4090", 24),
    (r"3090", "RTX 3090", 24),
    (r"4080", "RTX 4080", 16),
    (r"4070", "RTX 4070", 12),
    (r"3080", "RTX 3080", 10),
    (r"3060", "RTX 3060", 12),
)


def gpu_class(name: str) -> str:
    for pattern, cls, _ in _CLASSES:
        if re.search(pattern, name, re.IGNORECASE):
            return cls
    return name.strip() or "unknown"


def class_memory(cls: str) -> float | None:
    return next((mem for _, c, mem in _CLASSES if c == cls), None)


@dataclass(frozen=True)
class SpeedModel:
    gpu_class: str
    family: str
    c0: float
    u: float  # s per image-megapixel, no GC
    v: float  # s per image-megapixel, GC
    basis: str
    max_batch: int = 1  # largest batch measured: the model is not trusted beyond twice that

    @property
    def batch_limit(self) -> int:
        return 2 * self.max_batch

    def s_per_step(self, s: TrainShape) -> float:
        per = self.v if s.gradient_checkpointing else self.u
        t = self.c0 + s.batch_size * s.mpix * per
        if s.precision == "fp32":
            t *= FP32_SLOWDOWN
        if s.fp8_base:
            t *= FP8_SLOWDOWN
        if s.blocks_to_swap:
            a = arch(s.family)
            if a.depth:
                n = min(s.blocks_to_swap, a.depth - 2)
                block_bytes = a.block_params * (1 if s.fp8_base else 2)
                t += n * block_bytes * 4 / PCIE_BYTES_PER_S * SWAP_HIDDEN
        return t

    def images_per_s(self, s: TrainShape) -> float:
        return s.batch_size / self.s_per_step(s)


def _lstsq(rows: list[tuple[list[float], float]]) -> list[float] | None:
    """Least squares by the normal equations (tiny systems)."""
    n = len(rows[0][0])
    a = [[sum(x[i] * x[j] for x, _ in rows) for j in range(n)] for i in range(n)]
    b = [sum(x[i] * y for x, y in rows) for i in range(n)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) < 1e-12:
            return None
        a[col], a[piv] = a[piv], a[col]
        b[col], b[piv] = b[piv], b[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def _x(m: Measurement) -> tuple[float, bool]:
    return m.shape.batch_size * m.shape.mpix, m.shape.gradient_checkpointing


def _fit3(rows: list[Measurement]) -> tuple[float, float, float] | None:
    gcs = {m.shape.gradient_checkpointing for m in rows}
    if len(rows) < 3 or len(gcs) < 2:
        return None
    data = []
    for m in rows:
        x, gc = _x(m)
        assert m.s_per_step is not None
        data.append(([1.0, 0.0 if gc else x, x if gc else 0.0], m.s_per_step))
    sol = _lstsq(data)
    if sol is None or sol[1] <= 0 or sol[2] <= 0:
        return None
    c0, u, v = sol
    if c0 < 0:  # no per-step cost visible: fit through the origin
        sol2 = _lstsq([(x[1:], y) for x, y in data])
        if sol2 is None or min(sol2) <= 0:
            return None
        return 0.0, sol2[0], sol2[1]
    return c0, u, v


def _fit2(rows: list[Measurement], ratio: float) -> tuple[float, float, float] | None:
    data = []
    for m in rows:
        x, gc = _x(m)
        assert m.s_per_step is not None
        data.append(([1.0, x * (ratio if gc else 1.0)], m.s_per_step))
    xs = {round(d[0][1], 6) for d in data}
    if len(xs) >= 2:
        sol = _lstsq(data)
        if sol is not None and sol[1] > 0:
            c0 = max(sol[0], 0.0)
            u = sol[1] if sol[0] >= 0 else sum(y / x[1] for x, y in data) / len(data)
            return c0, u, u * ratio
    # all rows at the same x: no per-step cost can be told apart; put it all in the per-image term
    u = sum(y / x[1] for x, y in data) / len(data)
    return 0.0, u, u * ratio


@dataclass(frozen=True)
class SpeedTable:
    models: dict[tuple[str, str], SpeedModel]

    def classes(self) -> list[str]:
        return sorted({c for c, _ in self.models})

    def model_for(self, gpu_name: str | None, family: str, memory_gib: float | None = None) -> tuple[SpeedModel, str]:
        """The speed model for a GPU and family, and a sentence on where it comes from."""
        cls = gpu_class(gpu_name) if gpu_name else None
        if cls is not None and (cls, family) in self.models:
            m = self.models[(cls, family)]
            return m, f"{cls} measurements ({m.basis})"
        candidates = [c for c, f in self.models if f == family]
        if not candidates:
            raise LookupError(f"no speed data for {family}")
        mem = memory_gib if memory_gib is not None else (class_memory(cls) if cls else None)

        def distance(c: str) -> float:
            cm = class_memory(c)
            if mem is None or cm is None:
                return 0.0 if c == "H200" else 1e9
            return abs(math.log(cm / mem))

        best = min(candidates, key=distance)
        what = f"no measurements for {gpu_name}" if gpu_name else "no GPU named"
        return self.models[(best, family)], (
            f"{what}: speed from the measured card closest in memory size ({best}); absolute times are that "
            "card's, the ranking of options holds roughly"
        )


def _max_batch(rows: list[Measurement]) -> int:
    return max(m.shape.batch_size for m in rows)


def _plain(s: TrainShape) -> bool:
    """Rows the model describes directly: LoRA, 16-bit, no fp8, no block swap, SDPA."""
    return (
        s.network_kind == "lora"
        and s.precision != "fp32"
        and not s.fp8_base
        and not s.blocks_to_swap
        and s.attention != "none"
    )


def build(rows: Sequence[Measurement]) -> SpeedTable:
    groups: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    seen: set[tuple[str, TrainShape, float]] = set()
    for m in rows:
        if not m.s_per_step or not _plain(m.shape):
            continue
        run = (gpu_class(m.gpu), m.shape, round(m.s_per_step, 3))
        if run in seen:  # the same run can appear in several files
            continue
        seen.add(run)
        groups[(gpu_class(m.gpu), m.shape.family)].append(m)
    models: dict[tuple[str, str], SpeedModel] = {}
    pending: list[tuple[str, str]] = []
    for key, rs in groups.items():
        full = _fit3(rs)
        if full is not None:
            models[key] = SpeedModel(key[0], key[1], *full, f"fitted on {len(rs)} runs", _max_batch(rs))
        else:
            pending.append(key)
    for key in pending:
        rs = groups[key]
        donors = [m for (c, _), m in models.items() if c == key[0]]
        ratio = donors[0].v / donors[0].u if donors else DEFAULT_GC_RATIO
        fit = _fit2(rs, ratio)
        if fit is not None:
            src = f"GC cost borrowed from {donors[0].family}" if donors else f"GC cost assumed x{DEFAULT_GC_RATIO}"
            models[key] = SpeedModel(key[0], key[1], *fit, f"fitted on {len(rs)} runs, {src}", _max_batch(rs))
    return SpeedTable(models)


_TABLE: list[SpeedTable] = []


def load_speed_table() -> SpeedTable:
    if not _TABLE:
        rows, _ = load_all()
        _TABLE.append(build(rows))
    return _TABLE[0]
