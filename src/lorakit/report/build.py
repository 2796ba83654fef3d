"""``report.png`` (loss curve), ``samples.png`` (grid of sample images) and ``report.html``
(summary table + both pictures) of a run folder, from its ``events.jsonl`` and the per-step
scalars sd-scripts logged to ``<run>/logs`` (TensorBoard event files, ``lorakit.kohya.tblog``).

matplotlib (Agg backend) and Pillow are imported inside the functions that draw. Every file
is written atomically (temp file + rename), so a report being regenerated is never half read.
"""

from __future__ import annotations

import html
import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.errors import LorakitError
from lorakit.events import EVENTS_FILE, read_events
from lorakit.fmt import duration
from lorakit.fs import atomic_write
from lorakit.report.summary import SOURCE_TENSORBOARD, RunSummary, StepScalars, summarize
from lorakit.run.folder import read_state

REPORT_PNG = "report.png"
REPORT_HTML = "report.html"
SAMPLES_PNG = "samples.png"
SAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
THUMB = 256
# sd-scripts: <output_name>_<step 6 digits>_<prompt 2 digits>_<time>.png, or _e<epoch 6 digits>_
_SAMPLE_NAME = re.compile(r"_(?P<when>e?\d{6})_(?P<prompt>\d{2})_(?P<stamp>\d{14})(?:_\d+)?$")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    png: Path | None  # None when there was no loss to plot
    samples: Path | None  # None when the run has no sample images
    summary: RunSummary


def read_raw_events(run_dir: Path) -> list[dict[str, Any]]:
    """The decoded lines of ``events.jsonl`` (for keys the typed events do not carry)."""
    path = run_dir / EVENTS_FILE
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def sample_images(run_dir: Path, summary: RunSummary) -> list[Path]:
    """Sample images that exist: those the events name, then any under ``<run>/sample/``."""
    found: dict[Path, None] = {}
    for p in summary.samples:
        path = Path(p) if Path(p).is_absolute() else run_dir / p
        if path.is_file():
            found[path] = None
    folder = run_dir / "sample"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in SAMPLE_EXTENSIONS:
                found[path] = None
    return list(found)


def grid_layout(paths: Sequence[Path]) -> list[tuple[str, list[Path | None]]]:
    """Rows of the grid: one per sampling point (step or epoch), one column per prompt; names
    sd-scripts did not make go in rows of up to 4, in name order."""
    rows: dict[str, dict[int, Path]] = {}
    others: list[Path] = []
    for p in paths:
        m = _SAMPLE_NAME.search(p.stem)
        if m is None:
            others.append(p)
            continue
        when = m["when"]
        label = f"epoch {int(when[1:])}" if when.startswith("e") else f"step {int(when)}"
        rows.setdefault(label, {})[int(m["prompt"])] = p
    out: list[tuple[str, list[Path | None]]] = []
    width = max((max(r) + 1 for r in rows.values()), default=0)
    for label in sorted(rows, key=lambda s: (s.split()[0], int(s.split()[1]))):
        out.append((label, [rows[label].get(i) for i in range(width)]))
    for i in range(0, len(others), 4):
        out.append(("", list(others[i : i + 4])))
    return out


def write_samples_grid(paths: Sequence[Path], dest: Path) -> Path | None:
    """Compose the sample images into one picture (Pillow); None when none could be read."""
    from PIL import Image, ImageDraw

    layout = grid_layout(paths)
    if not layout:
        return None
    label_w = 110 if any(label for label, _ in layout) else 0
    cols = max(len(cells) for _, cells in layout)
    canvas = Image.new("RGB", (label_w + cols * THUMB, len(layout) * THUMB), "white")
    draw = ImageDraw.Draw(canvas)
    placed = 0
    for r, (label, cells) in enumerate(layout):
        if label:
            draw.text((8, r * THUMB + THUMB // 2 - 6), label, fill="black")
        for c, path in enumerate(cells):
            if path is None:
                continue
            try:
                with Image.open(path) as im:
                    thumb = im.convert("RGB")
                    thumb.thumbnail((THUMB, THUMB))
            except (OSError, ValueError):
                continue
            x = label_w + c * THUMB + (THUMB - thumb.width) // 2
            y = r * THUMB + (THUMB - thumb.height) // 2
            canvas.paste(thumb, (x, y))
            placed += 1
    if not placed:
        return None
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write(dest, buf.getvalue())
    return dest


def read_step_scalars(run_dir: Path) -> StepScalars:
    """The run's per-step loss and running mean from its TensorBoard logs (empty + a note
    when there are none or the reader is missing)."""
    from lorakit.kohya.tblog import AVERAGE_TAG, LOSS_TAG
    from lorakit.run.losslog import read_run_scalars

    log = read_run_scalars(run_dir)
    return StepScalars(
        loss={p.step: p.value for p in log.series(LOSS_TAG)},
        average={p.step: p.value for p in log.series(AVERAGE_TAG)},
        note=log.note,
    )


def write_loss_plot(summary: RunSummary, dest: Path) -> Path | None:
    """Loss curve, checkpoints marked; None when there is no loss to plot. With the trainer's
    per-step loss: each step (light) and an exponential moving average (dark). Without it:
    sd-scripts' running mean as its progress bar printed it (3 digits), said on the plot."""
    if not summary.losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from lorakit.kohya.tblog import smoothed, smoothing_span

    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    steps = [lp.step for lp in summary.losses if lp.loss is not None]
    raw = [lp.loss for lp in summary.losses if lp.loss is not None]
    if raw:
        ax.plot(steps, raw, color="#9ecae1", linewidth=0.8, label="loss (per step)")
        span = smoothing_span(len(raw))
        ax.plot(steps, smoothed(raw, span), color="#08519c", linewidth=1.8, label=f"smoothed (EMA, {span} steps)")
    else:
        avr_steps = [lp.step for lp in summary.losses if lp.avr_loss is not None]
        avr = [lp.avr_loss for lp in summary.losses if lp.avr_loss is not None]
        ax.plot(avr_steps, avr, color="#08519c", linewidth=1.6, label="avr_loss (running mean, progress bar)")
    marked = False
    for c in summary.checkpoints:
        if c.kind == "lora" and c.step is not None:
            ax.axvline(c.step, color="#fd8d3c", linewidth=0.8, linestyle="--", label=None if marked else "checkpoint")
            marked = True
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    title = f"{summary.name} — {summary.status}"
    if summary.total_steps:
        title += f", step {summary.step}/{summary.total_steps}"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    if summary.loss_source != SOURCE_TENSORBOARD:
        ax.text(
            0.01, 0.02, "no per-step loss in logs/ (see report.html): the progress bar's rounded running mean",
            transform=ax.transAxes, fontsize=8, color="#a60",
        )  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(dest, buf.getvalue())
    return dest


def _duration(s: float | None) -> str:
    return duration(s, precise=True, missing="–")


def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def summary_rows(s: RunSummary) -> list[tuple[str, str]]:
    steps = f"{s.step}" + (f" / {s.total_steps}" if s.total_steps else "")
    rows = [
        ("run", s.name),
        ("preset", s.preset or "–"),
        ("status", s.status + (f" (exit code {s.exit_code})" if s.exit_code not in (None, 0) else "")),
        ("steps", steps + (f", {s.epochs} epochs" if s.epochs else "")),
        ("time", _duration(s.duration_s)),
        ("s/step (steady)", _f(s.s_per_step, ".3f")),
        ("images/s", _f(s.images_per_s, ".2f")),
        ("batch", "–" if s.batch_size is None else f"{s.batch_size} × {s.n_gpus} GPU(s)"),
        ("final loss (avr_loss)", _f(s.final_loss, ".4f")),
        ("final loss (smoothed per step)", _f(s.final_smoothed_loss, ".4f")),
        ("average loss", _f(s.avg_loss, ".4f")),
        ("loss from", s.loss_source + (" (per step)" if s.loss_source == SOURCE_TENSORBOARD else " (3 digits)")),
        ("checkpoints", str(sum(1 for c in s.checkpoints if c.kind == "lora"))),
    ]
    if s.peak_vram_gib:
        rows.append(("peak VRAM", ", ".join(f"GPU {g}: {v:.1f} GiB" for g, v in s.peak_vram_gib.items())))
    if s.lora:
        rows.append(("LoRA", s.lora))
    return rows


def render_html(s: RunSummary, png: str | None, samples: str | None, generated: str) -> str:
    e = html.escape
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary_rows(s))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(s.name)} — lorakit report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}th,td{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}"
        "th{color:#555;font-weight:600}img{max-width:100%;border:1px solid #eee}"
        ".err{color:#b00}.warn{color:#a60}</style></head><body>",
        f"<h1>{e(s.name)}</h1>",
        f'<table class="summary">\n{table}\n</table>',
    ]
    if s.errors:
        parts.append("<h2>Errors</h2><ul>" + "".join(f'<li class="err">{e(x)}</li>' for x in s.errors) + "</ul>")
    if s.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f'<li class="warn">{e(x)}</li>' for x in s.warnings) + "</ul>")
    if png:
        parts.append(f'<h2>Loss</h2><img src="{e(png)}" alt="loss curve">')
    if s.loss_note:
        parts.append(f'<p class="warn">{e(s.loss_note)}</p>')
    if s.loss_source == SOURCE_TENSORBOARD:
        parts.append(
            "<p>Every value the trainer logged (loss, running mean, learning rates) is in <code>logs/</code>: "
            "<code>tensorboard --logdir logs</code> in the run folder.</p>"
        )
    lora_cps = [c for c in s.checkpoints if c.kind == "lora"]
    if lora_cps:
        rows = "".join(
            f"<tr><td>{e(Path(c.path).name)}</td><td>{'' if c.step is None else c.step}</td>"
            f"<td>{'' if c.epoch is None else c.epoch}</td></tr>"
            for c in lora_cps
        )
        parts.append(f"<h2>Checkpoints</h2><table><tr><th>file</th><th>step</th><th>epoch</th></tr>{rows}</table>")
    if samples:
        parts.append(f'<h2>Samples</h2><img src="{e(samples)}" alt="sample images">')
    parts.append(f'<p style="color:#888">generated by lorakit report from events.jsonl and logs/, {e(generated)}</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_report(run_dir: Path, *, now: float | None = None) -> ReportFiles:
    """(Re)write ``report.png``, ``samples.png`` (when there are samples) and ``report.html``."""
    run_dir = Path(run_dir)
    if not (run_dir / EVENTS_FILE).is_file():
        raise LorakitError(
            f"{run_dir} has no {EVENTS_FILE}, so there is nothing to report",
            fix="pass a run folder made by `lorakit train` (lorakit runs list)",
        )
    state: Mapping[str, Any] = read_state(run_dir)
    scalars = read_step_scalars(run_dir)
    summary = summarize(read_events(run_dir), read_raw_events(run_dir), state, run_dir, scalars)
    png = write_loss_plot(summary, run_dir / REPORT_PNG)
    if png is None:
        (run_dir / REPORT_PNG).unlink(missing_ok=True)
    grid = write_samples_grid(sample_images(run_dir, summary), run_dir / SAMPLES_PNG)
    if grid is None:
        (run_dir / SAMPLES_PNG).unlink(missing_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    text = render_html(summary, REPORT_PNG if png else None, SAMPLES_PNG if grid else None, stamp)
    atomic_write(run_dir / REPORT_HTML, text)
    return ReportFiles(run_dir / REPORT_HTML, png, grid, summary)


def write_report_or_warn(run_dir: Path) -> None:
    """report.png / report.html (+ samples.png) from the run's events; a report that cannot be
    drawn (matplotlib missing, say) is a ``report_failed`` warning event, never a failed training."""
    import shlex

    from lorakit.events import EventLog, WarningEvent

    try:
        build_report(run_dir)
    except Exception as exc:  # the LoRA is done; the report is a convenience
        with EventLog(run_dir / EVENTS_FILE) as log:
            log.append(WarningEvent(code="report_failed", message=f"report not written: {exc}",
                                    fix=shlex.join(["lorakit", "report", str(run_dir)])))  # fmt: skip
