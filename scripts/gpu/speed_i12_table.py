"""speed_i12.json (scripts/gpu/speed_i12.sh on the GPU) → the docs tables of issue 12.

    python3 scripts/gpu/speed_i12_table.py FETCHED/speed_i12.json [--write docs/speed-model.md]
        [--rows-out src/lorakit/gpu/data/speed_measurements_h200_i12.json]

Prints (or writes between the `<!-- speed_i12:begin -->` / `<!-- speed_i12:end -->` markers)
the "done when" table (the comic command vs `vram-check --fastest` under each budget: chosen
config, estimated and measured peak, images/s with the spread of its windows, ratio to the comic
command) and the ceiling table. --rows-out writes the measured runs as speed-model rows
(`lorakit.gpu.measurements` format) for the model to be refitted on.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- speed_i12:begin -->", "<!-- speed_i12:end -->"


def _ips(run: dict[str, Any] | None) -> float | None:
    b = (run or {}).get("bench") or {}
    med, batch = b.get("median_s_per_step") or b.get("steady_s_per_step"), b.get("batch_size")
    return batch / med if med and batch else None


def _fmt(x: float | None, spec: str = ".2f", none: str = "—") -> str:
    return none if x is None else format(x, spec)


def tables(data: dict[str, Any]) -> str:
    runs = {r["tag"]: r for r in data.get("runs", [])}
    comic = [x for x in (_ips(runs.get("comic_1")), _ips(runs.get("comic_2"))) if x]
    comic_ips = statistics.mean(comic) if comic else None
    env = data.get("env", {})
    out = [
        f"Measured {env.get('date', '?')} on {env.get('gpu', '?')}, torch {env.get('torch', '?')}, "
        f"sd-scripts {env.get('sd_scripts', '?')}, {env.get('lorakit', 'lorakit')}; `scripts/gpu/speed_i12.sh` "
        f"({data.get('seconds', '?')} s of measurements, up to {env.get('procs', '?')} runs loading while one trains; "
        "only one trains at a time). images/s = batch ÷ the median of 4-step windows after 2 warm-up steps; "
        "spread = (slowest − fastest window) ÷ median; peak = NVML memory of the run's own process tree.",
        "",
        "| budget | `--fastest` chose | estimated peak (GiB) | measured peak (GiB) | images/s (spread) | expected images/s | × comic | peak ≤ budget | estimate error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    c1, c2 = runs.get("comic_1"), runs.get("comic_2")
    comic_peak = max([r["peak_gib"] for r in (c1, c2) if r and r.get("peak_gib")], default=None)
    comic_est = (c1 or {}).get("estimate_gib")
    spreads = [f"{((r or {}).get('bench') or {}).get('spread') or 0:.0%}" for r in (c1, c2) if r]
    out.append(
        f"| comic command (bs 1, fp16, no GC) | — | {_fmt(comic_est, '.1f')} | {_fmt(comic_peak, '.2f')} | "
        f"{' / '.join(_fmt(x) for x in comic)} ({', '.join(spreads)}) | "
        f"{_fmt((c1 or {}).get('expected_images_per_s'))} | ×1.0 | — | "
        f"{_err(comic_est, comic_peak)} |"
    )
    for c in data.get("choices", []):
        tag = c.get("bench_tag")
        run = runs.get(tag) if tag else None
        words = "; ".join(c.get("words") or []) or ("the config as it is" if c.get("changes") == {} else "nothing fits")
        ips = _ips(run)
        peak = (run or {}).get("peak_gib")
        budget = c.get("budget_gib")
        spread = ((run or {}).get("bench") or {}).get("spread")
        within = (
            "—"
            if peak is None or budget is None
            else ("yes" if peak <= budget else f"**no** ({peak:.1f} > {budget:.1f})")
        )
        unc = c.get("uncertainty")
        out.append(
            f"| {c['budget']} ({_fmt(budget, '.1f')} GiB) | {words} | {_fmt(c.get('estimate_gib'), '.1f')} | "
            f"{_fmt(peak, '.2f')} | {_fmt(ips)} ({_fmt(spread, '.0%')}) | {_fmt(c.get('expected_images_per_s'))}"
            f"{'' if unc is None else f' ±{unc:.0%}'} | "
            f"{'—' if not (ips and comic_ips) else f'×{ips / comic_ips:.1f}'} | {within} | "
            f"{_err(c.get('estimate_gib'), peak)} |"
        )
    out += ["", "Ceiling experiments (same call; `best` = the whole-card choice):", ""]
    out += [
        "| run | settings | estimated peak (GiB) | measured peak (GiB) | s/step (median) | spread | images/s | expected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data.get("runs", []):
        if r.get("group") != "ceiling":
            continue
        b = r.get("bench") or {}
        status = "" if r.get("rc") == 0 else f" (exit {r.get('rc')})"
        out.append(
            f"| {r['tag']}{status} | {' '.join(r.get('overrides') or [])} | {_fmt(r.get('estimate_gib'), '.1f')} | "
            f"{_fmt(r.get('peak_gib'), '.2f')} | {_fmt(b.get('median_s_per_step'), '.3f')} | "
            f"{_fmt(b.get('spread'), '.0%')} | {_fmt(_ips(r))} | {_fmt(r.get('expected_images_per_s'))} |"
        )
    skipped = data.get("skipped", [])
    if skipped:
        out += ["", "Not run: " + "; ".join(f"{s['tag']} ({s['why']})" for s in skipped) + "."]
    return "\n".join(out) + "\n"


def _err(est: float | None, peak: float | None) -> str:
    if est is None or not peak:
        return "—"
    return f"{100 * (est - peak) / peak:+.1f} %"


def rows(data: dict[str, Any]) -> dict[str, Any]:
    gpu = str(data.get("env", {}).get("gpu", "")).split(",")[0].strip()
    out = []
    for r in data.get("runs", []):
        b = r.get("bench") or {}
        med = b.get("median_s_per_step")
        if r.get("rc") != 0 or not med or not r.get("shape"):
            continue
        out.append({"id": f"i12-{r['tag']}", "config": r["shape"], "s_per_step": med, "peak_gib": r.get("peak_gib")})
    return {
        "source": "scripts/gpu/speed_i12.sh (issue 12), lorakit bench medians of 4-step windows",
        "gpu": gpu,
        "sd_scripts_commit": "48d368fa",
        "date": data.get("env", {}).get("date", ""),
        "rows": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("result", type=Path)
    ap.add_argument("--write", type=Path, help="replace the marked section of this markdown file")
    ap.add_argument("--rows-out", type=Path, help="write the runs as speed-model rows")
    a = ap.parse_args()
    data = json.loads(a.result.read_text(encoding="utf-8"))
    text = tables(data)
    if a.write:
        doc = a.write.read_text(encoding="utf-8")
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{a.write}: no {BEGIN} … {END} section")
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        a.write.write_text(f"{head}{BEGIN}\n{text}{END}{tail}", encoding="utf-8")
    else:
        print(text)
    if a.rows_out:
        a.rows_out.write_text(json.dumps(rows(data), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
