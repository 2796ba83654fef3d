"""Every lorakit function the web server calls, imported in one place.

The server holds no planning, validation or run logic of its own (DESIGN.md "Faces"): each
page and API route calls what the CLI calls; none of them lives in ``cli/`` (the room above serve
imports serve, never the other way: tests/core/test_import_graph.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorakit.config.presets import preset_info, preset_names
from lorakit.dataset.plan import scan_dataset
from lorakit.errors import save_crash  # the CLI edge's crash file
from lorakit.gpu.fit import Budget, check_fit, parse_vram, run_facts
from lorakit.gpu.guard import precheck
from lorakit.kohya.install import PLACEHOLDER, find_trainer, require_trainer
from lorakit.planning import PlanRequest, plan_json, plan_resolved, resolve_spec  # plan_json: `train --dry-run --json`
from lorakit.report.runview import live_status, log_lines, summarize  # `runs list` / `runs tail` / `runs show --json`
from lorakit.run.control import stop_run
from lorakit.run.folder import (
    find_run,
    is_run_dir,
    read_state,
    refuse_if_running,
    run_dir_path,
    run_status,
)
from lorakit.run.losslog import open_scalars, read_run_scalars
from lorakit.run.queue import Job, QueueStore, add_job, find_run_dir, move_job, remove_jobs
from lorakit.run.queue_jobs import _log_error
from lorakit.run.resume import last_state, require_run_gpu  # resume's GPU preflight

if TYPE_CHECKING:
    from pathlib import Path

    from lorakit.report.build import ReportFiles


def build_report(run_dir: Path) -> ReportFiles:
    """`lorakit report RUN` (matplotlib is imported when a report is asked for, not at start)."""
    from lorakit.report.build import build_report as build

    return build(run_dir)


__all__ = [
    "PLACEHOLDER",
    "Budget",
    "Job",
    "PlanRequest",
    "QueueStore",
    "_log_error",
    "add_job",
    "build_report",
    "check_fit",
    "find_run",
    "find_run_dir",
    "find_trainer",
    "is_run_dir",
    "last_state",
    "live_status",
    "log_lines",
    "move_job",
    "open_scalars",
    "parse_vram",
    "plan_json",
    "plan_resolved",
    "precheck",
    "preset_info",
    "preset_names",
    "read_run_scalars",
    "read_state",
    "refuse_if_running",
    "remove_jobs",
    "require_run_gpu",
    "require_trainer",
    "resolve_spec",
    "run_dir_path",
    "run_facts",
    "run_status",
    "save_crash",
    "scan_dataset",
    "stop_run",
    "summarize",
]
