"""Helpers for the import/export tests: the kohya_ss GUI presets (tests/fixtures/kohya_gui,
README there names the source) and a dry-run plan of an imported config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomllib

from lorakit.convert.flags import parse_flags
from lorakit.kohya.install import PLACEHOLDER
from lorakit.planning import PlannedRun, PlanRequest, plan_resolved, resolve_spec
from tests.conftest import make_kohya_dataset

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kohya_gui"
ALL_JSON = sorted(FIXTURES.glob("*.json"))
# the GUI's SDXL LoRA presets: every preset with "sdxl": true (the DreamBooth-tab test config is not one)
SDXL_PRESETS = [
    p for p in ALL_JSON if json.loads(p.read_text()).get("sdxl") and "LoRA_type" in json.loads(p.read_text())
]
SD15_PRESETS = [p for p in ALL_JSON if p.name.lower().startswith(("sd15", "ia3", "loha-", "lokr-"))]


def dataset(tmp: Path) -> Path:
    root = tmp / "data"
    if not root.exists():
        make_kohya_dataset(root, {"4_thing": 3})
    return root


def plan(config: Path, data: Path, run_dir: Path) -> PlannedRun:
    """What `lorakit train --config CONFIG --data DATA --dry-run` plans (the same functions)."""
    loaded, warnings = resolve_spec(PlanRequest(config=config, data=data, strict_paths=False))
    return plan_resolved(loaded, warnings, PLACEHOLDER, run_dir)


def effective(planned: PlannedRun) -> dict[str, Any]:
    """What sd-scripts receives: the argv's flags plus the dataset TOML's values, under the
    names of their command-line twins (batch_size → train_batch_size)."""
    flags, problems = parse_flags(planned.plan.script, planned.plan.trainer_argv)
    assert problems == []
    out: dict[str, Any] = {f.dest: f.value for f in flags}
    toml = tomllib.loads(planned.plan.dataset_toml)
    out |= toml["general"]
    for key, value in toml["datasets"][0].items():
        if key != "subsets":
            out["train_batch_size" if key == "batch_size" else key] = value
    return out
