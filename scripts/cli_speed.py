"""Wall time of `lorakit --help` (and the import of lorakit.cli.main), before vs after.

    python scripts/cli_speed.py [--ref main] [--runs 20]

"before" is the src/ tree of git REF (extracted with `git archive` into a temporary folder),
"after" is this checkout's src/. The two are run alternately, each a fresh interpreter with
only that src/ on PYTHONPATH, so machine load hits both alike; prints median and min of each.
Figures are written down in docs/cli-speed.md (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELP = "import sys; sys.argv = ['lorakit', '--help']; from lorakit.cli.main import main; main()"
IMPORT = "import lorakit.cli.main"


def extract(ref: str, dest: Path) -> Path:
    tar = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    path = dest / "before.tar"
    path.write_bytes(tar)
    with tarfile.open(path) as t:
        t.extractall(dest, filter="data")
    return dest / "src"


def once(src: Path, code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): CPU time barely moves with machine load."""
    env = dict(os.environ, PYTHONPATH=str(src), COLUMNS="100")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="main")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = extract(a.ref, Path(tmp))
        after = ROOT / "src"
        for label, code in (("lorakit --help", HELP), ("import lorakit.cli.main", IMPORT)):
            times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for _ in range(a.runs):
                times["before"].append(once(before, code))
                times["after"].append(once(after, code))
            for k, v in times.items():
                wall, cpu = [w for w, _ in v], [c for _, c in v]
                print(
                    f"{label:<24} {k:<6} wall median {statistics.median(wall):.3f} s, min {min(wall):.3f} s; "
                    f"CPU median {statistics.median(cpu):.3f} s (n={len(v)})"
                )


if __name__ == "__main__":
    main()
