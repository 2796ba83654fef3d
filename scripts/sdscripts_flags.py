"""Dump or check sd-scripts' command-line flags with its REAL argument parsers.

Runs inside an sd-scripts environment (torch, transformers, diffusers installed):

  python scripts/sdscripts_flags.py dump SD_SCRIPTS_DIR [--commit SHA] [--out FILE]
      writes every flag that sdxl_train_network.py / sd3_train_network.py / flux_train_network.py /
      train_network.py
      accept (name, type, choices, nargs, kind) to src/lorakit/kohya/flags/sd-scripts.json
  python scripts/sdscripts_flags.py check SD_SCRIPTS_DIR SCRIPT -- ARGS...
      parses ARGS with SCRIPT's own setup_parser(); exit 0 and "ok", or exit 2 with argparse's error

Only the parsers are used. On a CPU-only machine without a matching torchvision build,
a stand-in `torchvision.transforms` module lets the scripts import (it raises if called).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import io
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

SCRIPTS = {
    "train_network.py": "train_network",
    "sdxl_train_network.py": "sdxl_train_network",
    "sd3_train_network.py": "sd3_train_network",
    "flux_train_network.py": "flux_train_network",
}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "lorakit" / "kohya" / "flags" / "sd-scripts.json"


def _torchvision_stand_in() -> None:
    try:
        importlib.import_module("torchvision.transforms")
        return
    except Exception:
        sys.modules.pop("torchvision", None)

    class _Unusable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("torchvision stand-in: only sd-scripts' argument parsers may be used here")

    def _attr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Unusable,), {})

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    tr.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
    tr.__getattr__ = _attr  # type: ignore[method-assign]
    tv.transforms = tr  # type: ignore[attr-defined]
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr


def load_parser(sd_scripts: Path, script: str) -> argparse.ArgumentParser:
    sys.path.insert(0, str(sd_scripts))
    _torchvision_stand_in()
    with contextlib.redirect_stdout(io.StringIO()):
        module = importlib.import_module(SCRIPTS[script])
    parser: argparse.ArgumentParser = module.setup_parser()
    return parser


def _kind(action: argparse.Action) -> str:
    name = type(action).__name__
    return {
        "_StoreTrueAction": "switch",
        "_StoreFalseAction": "switch",
        "_StoreConstAction": "switch",
        "BooleanOptionalAction": "switch",
        "_AppendAction": "append",
        "_CountAction": "switch",
    }.get(name, "value")


def describe(parser: argparse.ArgumentParser) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        entry = {
            "dest": action.dest,
            "kind": _kind(action),
            "type": getattr(action.type, "__name__", None) if action.type else None,
            "choices": [str(c) for c in action.choices] if action.choices else None,
            "nargs": action.nargs if action.nargs is None or isinstance(action.nargs, int) else str(action.nargs),
            "required": action.required,
        }
        for opt in action.option_strings:
            if opt.startswith("--"):
                flags[opt[2:]] = entry
    return dict(sorted(flags.items()))


def _commit(sd_scripts: Path, given: str | None) -> str:
    if given:
        return given
    try:
        out = subprocess.run(
            ["git", "-C", str(sd_scripts), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dump(sd_scripts: Path, commit: str | None, out: Path) -> None:
    data = {
        "sd_scripts_commit": _commit(sd_scripts, commit),
        "generated_by": "scripts/sdscripts_flags.py dump",
        "scripts": {script: describe(load_parser(sd_scripts, script)) for script in SCRIPTS},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    counts = ", ".join(f"{k}: {len(v)}" for k, v in data["scripts"].items())
    print(f"wrote {out} ({counts})")


def check(sd_scripts: Path, script: str, args: list[str]) -> int:
    parser = load_parser(sd_scripts, script)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit as exc:
        print(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "argparse error")
        return int(exc.code or 2)
    print("ok")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("sd_scripts", type=Path)
    d.add_argument("--commit")
    d.add_argument("--out", type=Path, default=DEFAULT_OUT)
    c = sub.add_parser("check")
    c.add_argument("sd_scripts", type=Path)
    c.add_argument("script", choices=sorted(SCRIPTS))
    c.add_argument("args", nargs=argparse.REMAINDER)
    ns = ap.parse_args()
    if ns.cmd == "dump":
        dump(ns.sd_scripts.resolve(), ns.commit, ns.out)
        return 0
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return check(ns.sd_scripts.resolve(), ns.script, args)


if __name__ == "__main__":
    sys.exit(main())
