#!/usr/bin/env python3
"""Turn raw sd-scripts logs from the GPU machine into committed parser fixtures.

    python scripts/gpu/sanitize_logs.py --env ENV_JSON --logs RAW_LOG_DIR --dest tests/fixtures/sdscripts \\
        NAME[=SOURCE] ...

Bytes stay as captured (``\\r`` of tqdm, rich's wrapping, ANSI if any) except:

* machine paths become placeholders: the job's own run folder -> ``<RUN>``, other run folders
  -> ``<RUNS>``, models -> ``<MODEL>``, training data -> ``<DATA>``, the sd-scripts checkout ->
  ``<SD_SCRIPTS>``, the repository -> ``<REPO>``, the carried wheels' install folder ->
  ``<SITE>``, the Python environment's site-packages -> ``<PYLIB>``, its prefix -> ``<PYENV>``,
  the standard library -> ``<STDLIB>``, the campaign base folder -> ``<BASE>``; the env's
  ``extra_paths`` ([path, placeholder] pairs, e.g. a smoke's run folder) come first. A path that
  rich wrapped over two lines is still found: the placeholder takes the path's place and the
  line break (with the indentation and right-hand ``file.py:NN`` column) is kept after it.
* logs over ``--max-bytes`` keep their head (through the ``--head-steps``-th training step)
  and their tail, joined by one line ``[lorakit fixture: N bytes trimmed]``.

Exits 1 if anything that looks like a machine path is left.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

BRK = rb"[ ]*(?:[\w.-]+\.py:\d+)?[ ]*\r?\n[ ]+"
LEFTOVER = re.compile(rb"(?<![<\w])/(?:tmp|opt|root|home|usr|work|var|mnt|srv)/[\w./-]*")
STEP_RE = re.compile(rb"steps:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")


def wrapped_pattern(path: str) -> re.Pattern[bytes]:
    """Regex for ``path`` allowing a rich line wrap between any two characters."""
    parts = [re.escape(c.encode()) for c in path]
    body = parts[0] + b"".join(rb"(?:" + BRK + rb")?" + p for p in parts[1:])
    return re.compile(body + rb"(?![\w-])")


def replace_path(data: bytes, path: str, placeholder: str) -> bytes:
    pat = wrapped_pattern(path)
    brk = re.compile(BRK)

    def sub(m: re.Match[bytes]) -> bytes:
        breaks = brk.findall(m.group(0))
        return placeholder.encode() + b"".join(breaks)

    return pat.sub(sub, data)


def mapping(env: dict, job: str) -> list[tuple[str, str]]:
    base = env.get("base", "/tmp/lk")
    repo = env.get("repo_root", "")
    prefix = env.get("sys_prefix", "")
    py = "python" + ".".join(env.get("python", "3.12").split(".")[:2])
    # a smoke's layout (LK_BASE/w/runs-*/..., LK_BASE/w/raw-prepared): its own pairs first
    pairs = [(p, ph) for p, ph in env.get("extra_paths", [])]
    pairs += [
        (f"{base}/r/{job}", "<RUN>"),
        (f"{base}/r", "<RUNS>"),
        (f"{base}/m", "<MODEL>"),
        (f"{base}/d", "<DATA>"),
        (base, "<BASE>"),
        (f"{repo}/.vendor/sd-scripts", "<SD_SCRIPTS>"),
        (repo, "<REPO>"),
        ("/tmp/site", "<SITE>"),
        (f"{prefix}/lib/{py}/site-packages", "<PYLIB>"),
        (prefix, "<PYENV>"),
        (f"/usr/lib/{py}", "<STDLIB>"),
        (f"/usr/local/lib/{py}", "<STDLIB>"),
    ]
    return [(p, ph) for p, ph in pairs if p and len(p) > 4]


def trim(data: bytes, max_bytes: int, head_steps: int) -> bytes:
    if len(data) <= max_bytes:
        return data
    head_end = None
    for m in STEP_RE.finditer(data):
        if int(m.group(1)) >= head_steps:
            nl = data.find(b"\n", m.end())
            cr = data.find(b"\r", m.end())
            ends = [x for x in (nl, cr) if x != -1]
            head_end = min(ends) if ends else m.end()
            break
    budget_head = max_bytes * 2 // 3
    if head_end is None or head_end > budget_head:
        head_end = data.rfind(b"\n", 0, budget_head) + 1 or budget_head
    tail_len = max_bytes - head_end
    tail_start = len(data) - tail_len
    nl = data.find(b"\n", tail_start)
    tail_start = nl + 1 if nl != -1 else tail_start
    if tail_start <= head_end:
        return data
    cut = tail_start - head_end
    sep = b"" if data[head_end - 1 : head_end] in (b"\n",) else b"\n"
    return data[:head_end] + sep + f"[lorakit fixture: {cut} bytes trimmed]\n".encode() + data[tail_start:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", type=Path, required=True)
    ap.add_argument("--logs", type=Path, required=True)
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--max-bytes", type=int, default=60_000)
    ap.add_argument("--head-steps", type=int, default=3)
    ap.add_argument("names", nargs="+", help="fixture name, or name=source_log_stem")
    a = ap.parse_args(argv)
    env = json.loads(a.env.read_text())
    a.dest.mkdir(parents=True, exist_ok=True)
    bad = 0
    for spec in a.names:
        name, _, src = spec.partition("=")
        src = src or name
        data = (a.logs / f"{src}.log").read_bytes()
        raw_len = len(data)
        for path, ph in mapping(env, src):
            data = replace_path(data, path, ph)
        data = trim(data, a.max_bytes, a.head_steps)
        left = sorted({m.group(0).decode(errors="replace") for m in LEFTOVER.finditer(data)})
        (a.dest / f"{name}.log").write_bytes(data)
        extra = f"; LEFTOVER PATHS: {left}" if left else ""
        print(f"{name}.log <- {src}.log: {raw_len} -> {len(data)} bytes{extra}")
        bad += bool(left)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
