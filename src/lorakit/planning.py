"""One path from arguments to a LaunchPlan, shared by `train --dry-run`, `train`, `bench`,
`queue` and `vram-check`: load + merge the config, check the cross-field rules, scan the
dataset, locate the trainer, build the plan. Pure apart from reading files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorakit.config.loader import LoadedSpec, load_spec, where
from lorakit.config.rules import Problem, check
from lorakit.config.schema import TrainSpec
from lorakit.dataset.plan import DatasetPlan, scan_dataset
from lorakit.errors import ConfigError, EnvironmentProblem
from lorakit.kohya.install import Trainer
from lorakit.kohya.launch import LaunchPlan, build_launch_plan


@dataclass(frozen=True)
class PlanRequest:
    preset: str | None = None
    config: Path | None = None
    overrides: tuple[str, ...] = ()
    data: Path | None = None
    strict_paths: bool = True  # a real run: model files must exist


@dataclass
class PlannedRun:
    loaded: LoadedSpec
    dataset: DatasetPlan
    plan: LaunchPlan
    warnings: list[str] = field(default_factory=list)

    @property
    def spec(self) -> TrainSpec:
        return self.loaded.spec


def resolve_spec(req: PlanRequest) -> tuple[LoadedSpec, list[str]]:
    """Load, merge and check the spec; errors raise ConfigError (all at once), warnings return."""
    if req.preset is None and req.config is None:
        raise ConfigError(
            ["no configuration given"],
            fix="pass --preset NAME (lorakit presets list) and/or --config FILE.yaml",
        )
    loaded = load_spec(req.preset, req.config, req.overrides, req.data)
    notes = settle_length(loaded)
    problems = check(loaded.spec) + model_file_problems(loaded.spec, req.strict_paths)
    errors = [p.render(where(loaded.origin, p.path)) for p in problems if p.level == "error"]
    if errors:
        raise ConfigError(errors, fix="correct the settings named above, in that file or with --set key=value")
    warnings = [p.render(where(loaded.origin, p.path)) for p in problems if p.level == "warning"]
    return loaded, notes + warnings


def settle_length(loaded: LoadedSpec) -> list[str]:
    """epochs vs max_steps: when two different layers set them, the later layer wins
    (a user's ``--set training.max_steps=300`` over a preset's epochs); the same layer
    setting both stays an error for the rules to report."""
    t = loaded.spec.training
    if t.epochs is None or t.max_steps is None:
        return []
    labels = [layer.label for layer in loaded.layers]
    e_src, s_src = loaded.origin.get("training.epochs"), loaded.origin.get("training.max_steps")
    if e_src is None or s_src is None or e_src == s_src:
        if e_src is None and s_src is not None:  # epochs is only the schema default
            t.epochs = None
        return []
    if labels.index(s_src) > labels.index(e_src):
        t.epochs = None
        return [f"{s_src}: `training.max_steps` replaces `training.epochs` from {e_src}"]
    t.max_steps = None
    return [f"{e_src}: `training.epochs` replaces `training.max_steps` from {s_src}"]


def model_file_problems(spec: TrainSpec, strict: bool) -> list[Problem]:
    """Model files: missing paths are errors for a real run, warnings for a dry run."""
    level: Literal["error", "warning"] = "error" if strict else "warning"
    out: list[Problem] = []
    for f in spec.family.model_files:
        key = f.key
        value = getattr(spec.model, key)
        if value is None and f.required:
            if key == "checkpoint" or strict:
                out.append(
                    Problem(
                        level,
                        f"model.{key}",
                        "is not set" + ("" if strict else f"; the command shows <model.{key}> in its place"),
                        f"--set model.{key}=/path/to/file.safetensors",
                    )
                )
        elif value is not None and not Path(value).expanduser().is_file():
            out.append(
                Problem(
                    level,
                    f"model.{key}",
                    f"file {value} does not exist",
                    "check the path (an absolute path is safest)",
                )
            )
    weights = spec.network.weights
    if weights is not None and not Path(weights).expanduser().is_file():
        out.append(Problem(level, "network.weights", f"file {weights} does not exist", "check the path"))
    return out


def plan_run(req: PlanRequest, trainer: Trainer, run_dir: Path) -> PlannedRun:
    loaded, warnings = resolve_spec(req)
    return plan_resolved(loaded, warnings, trainer, run_dir)


def plan_resolved(loaded: LoadedSpec, warnings: list[str], trainer: Trainer, run_dir: Path) -> PlannedRun:
    """The plan of a spec already loaded and checked (``resolve_spec``): scan the dataset once
    and build the launch plan into ``run_dir``."""
    fam = loaded.spec.family
    if trainer.found and trainer.sd_scripts.is_dir() and not (trainer.sd_scripts / fam.script).is_file():
        raise EnvironmentProblem(
            f"{trainer.sd_scripts} has no {fam.script}: this sd-scripts is older than its {fam.line} support",
            fix="update sd-scripts (lorakit setup installs the tested commit 48d368fa)",
        )
    dataset = scan_dataset(loaded.spec.dataset)
    plan = build_launch_plan(loaded.spec, dataset, trainer, run_dir)
    return PlannedRun(loaded, dataset, plan, warnings + plan.warnings)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out or ({prefix[:-1]: {}} if prefix else {})
    return {prefix[:-1]: data}


def spec_dump(spec: TrainSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def spec_diff(loaded: LoadedSpec) -> list[tuple[str, Any, Any]]:
    """(dotted key, preset value, final value) for every key the user's layers changed."""
    try:
        base = TrainSpec.model_validate(loaded.base_dict())
    except Exception:  # the preset alone is always valid; be safe for config-only runs
        base = TrainSpec()
    before, after = flatten(spec_dump(base)), flatten(spec_dump(loaded.spec))
    return [
        (k, before.get(k), after[k]) for k in after if before.get(k) != after[k] and k not in ("description", "source")
    ]


def plan_json(planned: PlannedRun) -> dict[str, Any]:
    p, d = planned.plan, planned.dataset
    return {
        "preset": planned.loaded.preset,
        "argv": p.argv,
        "command": p.command_text(),
        "cwd": str(p.cwd),
        "env": p.env,
        "run_dir": str(p.run_dir),
        "dataset_toml": p.dataset_toml,
        "sample_prompts": p.sample_prompts,
        "steps": {
            "images_x_repeats": p.steps.images_x_repeats,
            "batch_size": p.steps.batch_size,
            "batches_per_epoch": p.steps.batches_per_epoch,
            "steps_per_epoch": p.steps.steps_per_epoch,
            "n_gpus": p.steps.n_gpus,
            "effective_batch": p.steps.effective_batch,
            "epochs": p.steps.epochs,
            "total_steps": p.steps.total_steps,
            "reg_samples": p.steps.reg_samples,
            "formula": p.steps.formula(),
        },
        "dataset": {
            "root": str(d.root),
            "layout": d.layout,
            "concepts": [
                {
                    "folder": str(c.folder),
                    "images": c.images,
                    "captioned": c.captioned,
                    "repeats": c.repeats,
                    "class_tokens": c.class_tokens,
                }
                for c in d.concepts
            ],
            "regularization": _reg_json(d),
        },
        "changes": [{"key": k, "preset": a, "value": b} for k, a, b in spec_diff(planned.loaded)],
        "spec": spec_dump(planned.spec),
        "warnings": planned.warnings,
    }


def _reg_json(d: Any) -> dict[str, object] | None:
    r = d.regularization
    if r is None:
        return None
    return {
        "folder": str(r.folder),
        "images": r.images,
        "repeats": r.repeats,
        "class_tokens": r.class_tokens,
        "samples_per_epoch": d.reg_samples_per_epoch,
        "images_used": r.used_images(d.visits_per_epoch),
    }
