"""Markdown table of a GPU smoke result (scripts/gpu/results/smoke-<date>.json), for docs/gpu-e2e.md.

    python3 scripts/gpu/smoke_table.py [scripts/gpu/results/smoke-2026-12-02.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SKIP = {"step", "pass", "t_s"}


def figures(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if k in SKIP or v in (None, [], {}, ""):
            continue
        if isinstance(v, dict | list):
            v = json.dumps(v, separators=(",", ":"))
            v = v if len(v) <= 90 else v[:87] + "…"
        parts.append(f"{k}={v}")
    return "; ".join(parts).replace("|", "\\|")


def table(path: Path) -> str:
    res = json.loads(path.read_text(encoding="utf-8"))
    head = (
        f"Smoke {res['date']}: commit `{res['commit'][:10]}`, src tree `{res['src_tree'][:10]}` "
        f"(recomputed on the device: {'same' if res.get('src_tree_matches') else res.get('src_tree_on_device')}), "
        f"{res['gpu']}, torch {res.get('torch')}, sd-scripts {res['sd_scripts']}, "
        f"{'PASSED' if res['passed'] else 'FAILED'}\n\n"
    )
    lines = ["| step | result | at (s) | figures |", "|---|---|---|---|"]
    for r in res["steps"]:
        lines.append(f"| {r['step']} | {'pass' if r['pass'] else 'FAIL'} | {r.get('t_s', '')} | {figures(r)} |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    paths = [Path(a) for a in sys.argv[1:]] or sorted(Path("scripts/gpu/results").glob("smoke-*.json"))[-1:]
    for p in paths:
        print(table(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
