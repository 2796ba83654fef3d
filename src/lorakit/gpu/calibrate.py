"""Fit the estimator's few coefficients to the measured runs, and report the grid.

    python -m lorakit.gpu.calibrate            # print the grid (estimate vs measured, error %)
    python -m lorakit.gpu.calibrate --write    # refit, write gpu/data/vram_coefficients.json
    python -m lorakit.gpu.calibrate --markdown # the grid as the Markdown table of docs/vram.md
    python -m lorakit.gpu.calibrate --docs docs/vram.md  # put that table into the doc

What is fitted (7 numbers): the overhead in every phase (CUDA context + allocator), the
activations of one image per megapixel without gradient checkpointing for SDXL, SD 3.5 medium and
SD 3.5 large, the share of them kept with checkpointing for U-Nets and for MMDiTs, and the share
of the network's gradients already alive at a step's activation peak. Everything else (weights,
network parameters, gradients, optimizer states, text encoders while caching) is counted from
parameters and is not fitted.

How: minimise Σ wᵢ·(estimateᵢ / measuredᵢ − 1)² over the measured whole-run peaks — relative
errors, because the target is ±10 % on every row — plus the same, at half weight, for the
training-phase and set-up peaks where the benchmark driver recorded them (they pin SD 3.5 medium
with GC, whose whole-run peak is the T5 caching phase), plus a weak pull (1e-3 · Σ log²(θ/θ₀))
towards the hand-read priors so that a coefficient no row pins stays physical. Nelder–Mead on
log-coefficients, deterministic start, pure Python. Rows of the calibration grid weigh 1;
field-notes rows 0.25 when a grid exists (else 1): other set-ups, less precisely recorded. Rows
using a feature the fit does not cover (LyCORIS, fp8_base, attention none, uncached latents or
text encoders, text-encoder training) are validation points only.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lorakit import families
from lorakit.gpu.estimate import COEFFICIENTS_FILE, PRIOR, Coefficients, TrainShape, estimate
from lorakit.gpu.measurements import CALIBRATION_FILE, Measurement, load_all, with_peak

REGULARISATION = 1e-3
FIELD_NOTES_WEIGHT = 0.25  # once a calibration grid exists: other setups, less precisely recorded
PHASE_WEIGHT = 0.5  # the training / set-up peaks of a row, where the driver recorded them


def fitted_feature(shape: TrainShape) -> bool:
    """Whether a row exercises only what the coefficients describe."""
    return (
        shape.network_kind == "lora"
        and not shape.fp8_base
        and shape.attention != "none"
        and shape.cache_latents
        and shape.cache_text_encoder_outputs
        and shape.unet_only
        and not shape.conv_dim
    )


def weight(row: Measurement, have_grid: bool) -> float:
    if not fitted_feature(row.shape):
        return 0.0
    if row.source == "field-notes" and have_grid:
        return FIELD_NOTES_WEIGHT
    return 1.0


def nelder_mead(
    f: Callable[[list[float]], float], x0: list[float], step: float = 0.1, iters: int = 3000, tol: float = 1e-12
) -> list[float]:
    n = len(x0)
    simplex = [list(x0)]
    for i in range(n):
        x = list(x0)
        x[i] += step
        simplex.append(x)
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=lambda k: values[k])
        simplex = [simplex[k] for k in order]
        values = [values[k] for k in order]
        if abs(values[-1] - values[0]) < tol:
            break
        centroid = [sum(x[i] for x in simplex[:-1]) / n for i in range(n)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = f(reflected)
        if fr < values[0]:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, xs, strict=True)] for xs in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(n + 1), key=lambda k: values[k])]


@dataclass(frozen=True)
class FitResult:
    coefficients: Coefficients
    rows: list[Measurement]
    skipped: list[str]


def fit(rows: Sequence[Measurement], prior: Coefficients = PRIOR) -> Coefficients:
    have_grid = any(r.source == "calibration" for r in rows)
    used = [(r, weight(r, have_grid)) for r in with_peak(rows)]
    used = [(r, w) for r, w in used if w > 0]
    log0 = [math.log(v) for v in prior.as_vector()]

    def loss(logs: list[float]) -> float:
        c = Coefficients.from_vector([math.exp(v) for v in logs])
        total = 0.0
        for r, w in used:
            assert r.peak_gib is not None
            e = estimate(r.shape, c)
            total += w * (e.peak_gib / r.peak_gib - 1) ** 2
            if r.peak_train_gib:
                total += PHASE_WEIGHT * w * (e.training.gib / r.peak_train_gib - 1) ** 2
            if r.peak_setup_gib:
                total += PHASE_WEIGHT * w * (e.setup_gib / r.peak_setup_gib - 1) ** 2
        return total + REGULARISATION * sum((a - b) ** 2 for a, b in zip(logs, log0, strict=True))

    best = nelder_mead(loss, log0)
    best = nelder_mead(loss, best, step=0.02)  # restart: Nelder–Mead can stall on a ridge
    sources = sorted({r.source for r, _ in used})
    meta = {
        "fitted_on": date.today().isoformat(),
        "rows_used": len(used),
        "sources": sources,
        "method": (
            "minimise sum w*(estimate/measured - 1)^2 over the whole-run peaks, + 0.5 w * the same for the "
            "training-phase and set-up peaks where recorded, + 1e-3 * sum log^2(coef/prior); Nelder-Mead on "
            "log-coefficients; calibration-grid rows weigh 1, field-notes rows 0.25 when a grid exists; "
            "see lorakit/gpu/calibrate.py"
        ),
        "units": "GiB; act_gib_per_mpix: one image per megapixel, no GC, 16-bit; gc_keep: share kept with GC",
    }
    return Coefficients.from_vector([math.exp(v) for v in best], meta)


def run_fit(data_dir: Path | None = None) -> FitResult:
    rows, skipped = load_all(data_dir)
    return FitResult(fit(rows), rows, skipped)


@dataclass(frozen=True)
class GridRow:
    row: Measurement
    estimate_gib: float
    peak_phase: str

    @property
    def error(self) -> float:
        assert self.row.peak_gib is not None
        return self.estimate_gib / self.row.peak_gib - 1


def grid(rows: Sequence[Measurement], c: Coefficients | None = None) -> list[GridRow]:
    out = []
    for r in with_peak(rows):
        e = estimate(r.shape, c)
        out.append(GridRow(r, e.peak_gib, e.peak.name))
    return out


def _config_words(s: TrainShape) -> str:
    bits = [
        families.get(s.family).display,
        f"{s.width}²" if s.width == s.height else f"{s.width}x{s.height}",
        f"bs {s.batch_size}",
        "GC" if s.gradient_checkpointing else "no GC",
        f"{s.network_kind} r{s.dim}" + (f"/c{s.conv_dim}" if s.conv_dim else ""),
        s.optimizer,
        s.precision,
    ]
    if s.fp8_base:
        bits.append("fp8 base")
    if not s.cache_text_encoder_outputs:
        bits.append("TEs on GPU")
    return ", ".join(bits)


def _phase(measured: float | None, est: float) -> str:
    if not measured:
        return "–"
    return f"{measured:.1f} / {est:.1f} ({100 * (est / measured - 1):+.0f} %)"


def markdown(rows: Sequence[GridRow]) -> str:
    lines = [
        "| source | GPU | config | measured GiB | estimate GiB | error | peak phase (est.) "
        "| training phase meas. / est. | set-up meas. / est. |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for g in rows:
        tag = g.row.source + ("" if fitted_feature(g.row.shape) else " (validation)")
        e = estimate(g.row.shape)
        lines.append(
            f"| {tag} | {g.row.gpu} | {_config_words(g.row.shape)} | {g.row.peak_gib:.1f} | "
            f"{g.estimate_gib:.1f} | {100 * g.error:+.1f} % | {g.peak_phase} | "
            f"{_phase(g.row.peak_train_gib, e.training.gib)} | {_phase(g.row.peak_setup_gib, e.setup_gib)} |"
        )
    return "\n".join(lines)


GRID_START = "<!-- calibration-grid:start (python -m lorakit.gpu.calibrate --docs docs/vram.md) -->"
GRID_END = "<!-- calibration-grid:end -->"


def update_doc(path: Path, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition(GRID_START)
    _, sep2, tail = rest.partition(GRID_END)
    if not sep or not sep2:
        raise SystemExit(f"{path}: the grid markers are missing ({GRID_START} … {GRID_END})")
    path.write_text(f"{head}{GRID_START}\n{table}\n{GRID_END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorakit.gpu.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="refit and write gpu/data/vram_coefficients.json")
    ap.add_argument("--markdown", action="store_true", help="print the grid as a Markdown table")
    ap.add_argument("--docs", type=Path, help="replace the table between the grid markers in this Markdown file")
    args = ap.parse_args(argv)
    rows, skipped = load_all()
    if args.write:
        c = fit(rows)
        COEFFICIENTS_FILE.write_text(json.dumps(c.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {COEFFICIENTS_FILE.name}: {json.dumps(c.to_json()['coefficients'])}")
    else:
        c = Coefficients.from_json(json.loads(COEFFICIENTS_FILE.read_text())) if COEFFICIENTS_FILE.is_file() else PRIOR
    g = grid(rows, c)
    if args.docs is not None:
        update_doc(args.docs, markdown(g))
        print(f"updated the grid in {args.docs}")
    elif args.markdown:
        print(markdown(g))
    else:
        for item in g:
            print(f"{item.row.id:45s} {item.row.peak_gib:7.2f} {item.estimate_gib:7.2f} {100 * item.error:+6.1f} %")
    if not CALIBRATION_FILE.is_file():
        print(f"(no {CALIBRATION_FILE.name} yet: fitted on the field-notes figures only)")
    for why in skipped:
        print(f"skipped: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
