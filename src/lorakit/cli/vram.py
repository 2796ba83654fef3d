"""`lorakit vram-check`: will this config fit the GPU, and what is the cheapest change that makes it fit?"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from lorakit.cli._console import console, err_console
from lorakit.cli.options import ConfigOpt, DataOpt, JsonOpt, PresetOpt, SetOpt
from lorakit.fs import atomic_write

if TYPE_CHECKING:  # imported when the command runs: `lorakit --help` stays fast
    from lorakit.config.loader import LoadedSpec
    from lorakit.gpu.comfyui import FreeResult
    from lorakit.gpu.fit import FitReport, Option

HELP = """Estimate peak GPU memory of a training config and say whether it fits.

The estimate covers every phase sd-scripts runs (caching latents, caching text-encoder
outputs — T5-XXL for SD 3.5 —, training) and names the one that sets the peak. When the
config does not fit, the cheapest changes that make it fit are listed, ranked by the speed
they cost, each with its new estimate. Verdicts: fits (with a 10 % margin), tight (within
the estimator's ±10 %), does not fit.

Examples:

  lorakit vram-check --preset comic-style --vram 24GB

  lorakit vram-check --preset sd35-large --set training.gradient_checkpointing=false --vram 24GB

  lorakit vram-check --preset comic-style --data ./my-dataset --fastest --apply fitted.yaml

  lorakit train --preset comic-style --config fitted.yaml --data ./my-dataset
"""


def register(app: typer.Typer) -> None:
    app.command("vram-check", help=HELP)(vram_check)


def vram_check(
    preset: str | None = PresetOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt,
    data: Path | None = DataOpt,
    gpu: int = typer.Option(0, "--gpu", help="GPU number (as CUDA numbers them) whose free memory is the budget."),
    vram: str | None = typer.Option(
        None, "--vram", help="Answer for a card of this size instead of a GPU here: 24GB, 16GiB, 12288MiB (GB = GiB)."
    ),
    as_json: bool = JsonOpt,
    apply: Path | None = typer.Option(
        None,
        "--apply",
        help="Write the proposed changes (the top suggestion, or --fastest's) to this YAML file.",
        dir_okay=False,
    ),
    fastest: bool = typer.Option(
        False, "--fastest", help="Propose the batch / GC / precision with the most images/s that fits."
    ),
    free_comfyui: bool = typer.Option(
        False, "--free-comfyui", help="First ask the ComfyUI at comfyui.url to unload its models (loopback only)."
    ),
) -> None:
    from lorakit.gpu.estimate import shape_from_spec
    from lorakit.gpu.fit import Budget, check_fit, parse_vram, run_facts
    from lorakit.planning import PlanRequest, model_file_problems, resolve_spec

    req = PlanRequest(preset, config, tuple(overrides), data, strict_paths=False)
    loaded, warnings = resolve_spec(req)
    spec = loaded.spec
    # model files do not matter for memory: drop the dry-run path warnings
    from lorakit.config.loader import where

    path_warnings = {p.render(where(loaded.origin, p.path)) for p in model_file_problems(spec, False)}
    warnings = [w for w in warnings if w not in path_warnings]
    dataset = _dataset(spec, data)

    freed: FreeResult | None = None
    if vram is not None:
        budget = Budget.from_vram(parse_vram(vram))
    else:
        from lorakit.gpu import nvml

        if free_comfyui:
            from lorakit.gpu import comfyui

            freed = comfyui.free(spec.comfyui.url, allow_remote=spec.comfyui.allow_remote, gpu_index=gpu)
        budget = Budget.from_gpu(nvml.gpu(gpu))
    report = check_fit(shape_from_spec(spec), budget, run_facts(spec, dataset), want_fastest=fastest)
    written = _apply(apply, report, loaded, config, overrides, fastest) if apply is not None else None

    if as_json:
        out = report.to_json() | {"warnings": warnings}
        if freed is not None:
            out["comfyui"] = freed.to_json()
        if apply is not None:
            out["applied"] = {"file": str(apply), "written": written is not None, "changes": written or {}}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", markup=True)
    if freed is not None:
        console.print(f"[bold]ComfyUI[/]  {freed.message}")
    _print_report(report, fastest)
    if apply is not None:
        _print_applied(apply, written, preset, config, data)


def _dataset(spec: Any, data: Path | None) -> Any:
    """The dataset plan when one is given (--data, dataset.folder or concepts), else None."""
    if data is None and spec.dataset.folder is None and not spec.dataset.concepts:
        return None
    from lorakit.dataset.plan import scan_dataset

    return scan_dataset(spec.dataset)


# ---------------------------------------------------------------------------------------------
# --apply


def _apply(
    path: Path,
    report: FitReport,
    loaded: LoadedSpec,
    config: Path | None,
    overrides: list[str],
    fastest: bool,
) -> dict[str, Any] | None:
    """Write the chosen changes as a YAML layer for `train`; None when there is nothing to change."""
    import os

    import yaml

    from lorakit.config.loader import merge_layers, override_layer

    option: Option | None = None
    if fastest and report.fastest is not None:
        option = report.fastest.option
    elif report.suggestions:
        option = report.suggestions[0]
    if option is None or not option.changes:
        return None
    layers = [override_layer(text) for text in overrides]
    for key, value in option.changes.items():
        layers.append(override_layer(f"{key}={json.dumps(value) if isinstance(value, list) else _scalar(value)}"))
    data, _ = merge_layers(layers)
    head: dict[str, Any] = {}
    if config is not None:
        rel = os.path.relpath(Path(config).resolve(), Path(path).resolve().parent)
        head["extends"] = rel
    why = "lorakit vram-check --fastest" if fastest and report.fastest is not None else "lorakit vram-check"
    text = f"# Written by {why}: {'; '.join(option.words)}\n"
    text += f"# Estimated peak {option.estimate_gib:.1f} GiB for {report.budget.source if report.budget else ''}\n"
    text += yaml.safe_dump(head | data, sort_keys=False, allow_unicode=True)
    atomic_write(path, text)
    return option.changes


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _print_applied(
    path: Path, written: dict[str, Any] | None, preset: str | None, config: Path | None, data: Path | None
) -> None:
    if written is None:
        console.print(f"[bold]Apply[/]    nothing to change; {escape(str(path))} not written")
        return
    cmd = ["lorakit", "train"]
    if preset:
        cmd += ["--preset", preset]
    cmd += ["--config", str(path)]
    if data:
        cmd += ["--data", str(data)]
    console.print(f"[bold]Apply[/]    {escape(f'wrote {path}; train with: {shlex.join(cmd)}')}", markup=True)
    if config is not None:
        console.print(f"         ({path} extends {config}; your --set values are in it too)", markup=False)


# ---------------------------------------------------------------------------------------------
# text output

_VERDICT_WORDS = {"fits": "[green]FITS[/]", "tight": "[yellow]TIGHT[/]", "does-not-fit": "[red]DOES NOT FIT[/]"}


def _duration(seconds: float) -> str:
    from lorakit.fmt import duration

    return duration(seconds)


def _print_report(report: FitReport, want_fastest: bool) -> None:
    e, b = report.estimate, report.budget
    assert e is not None and b is not None
    console.print(f"[bold]Config[/]   {e.shape.describe()}", markup=True)
    console.print(f"[bold]Budget[/]   {b.source}", markup=True)
    if b.gpu is not None:
        for p in b.gpu.processes:
            used = "?" if p.used_gib is None else f"{p.used_gib:.1f} GiB"
            console.print(f"         held by pid {p.pid} {p.name or ''}: {used}", markup=False)
    console.print(f"[bold]Estimate[/] {e.peak_gib:.1f} GiB peak, set by {e.peak.label}", markup=True)
    for phase in e.phases:
        mark = "  ← peak" if phase is e.peak else ""
        console.print(f"  {phase.label:<32} {phase.gib:6.1f} GiB{mark}", markup=False)
        if phase.name == "training" or phase is e.peak:
            for part in phase.parts:
                console.print(f"      {part.label:<46} {part.gib:6.2f}", markup=False)
    spare = b.gib - e.peak_gib
    if report.verdict == "fits":
        tail = f"{b.gib:.1f} GiB available, {spare:.1f} GiB to spare (margin 10 %)"
    elif report.verdict == "tight":
        tail = f"needs ~{e.peak_gib:.1f} GiB of {b.gib:.1f} GiB: within the estimator's ±10 %, it may or may not fit"
    else:
        tail = f"needs ~{e.peak_gib:.1f} GiB, {b.gib:.1f} GiB available"
    console.print(f"[bold]Verdict[/]  {_VERDICT_WORDS.get(report.verdict, report.verdict)} — {tail}", markup=True)
    if report.current_images_per_s:
        console.print(
            f"[bold]Speed[/]    ~{report.current_images_per_s:.2f} images/s ({report.speed_basis})", markup=True
        )
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]", markup=True)
    if report.suggestions:
        console.print("[bold]Cheapest changes that fit[/], ranked by throughput cost:", markup=True)
        for i, s in enumerate(report.suggestions, 1):
            cost = -s.throughput_cost
            console.print(
                f"  {i}. {'; '.join(s.words)}\n     → {s.estimate_gib:.1f} GiB ({s.verdict}), "
                f"{s.images_per_s:.2f} images/s ({cost:+.0%})",
                markup=False,
            )
            console.print(f"     {s.set_text()}", markup=False)
        console.print("  (--apply FILE writes the first as a config layer for `lorakit train`)", markup=False)
    f = report.fastest
    if f is not None:
        o = f.option
        what = "; ".join(o.words) or "the config as it is"
        console.print(f"[bold]Fastest that fits[/]: {what}", markup=True)
        console.print(
            f"  → {o.estimate_gib:.1f} GiB, {o.images_per_s:.2f} images/s vs {f.current_images_per_s:.2f} now "
            f"(×{f.speedup:.1f}{'' if f.current_fits else '; the current config does not fit'})",
            markup=False,
        )
        if f.seconds_before is not None and f.seconds_after is not None:
            if f.steps_before is not None and f.steps_after is not None:
                saved = f.seconds_before - f.seconds_after
                console.print(
                    f"  {f.visits} image visits: {f.steps_before} steps → {f.steps_after} steps, "
                    f"{_duration(f.seconds_before)} → {_duration(f.seconds_after)} "
                    f"({'saves' if saved >= 0 else 'costs'} {_duration(abs(saved))})",
                    markup=False,
                )
            else:
                console.print(
                    f"  per 1000 image visits: {_duration(f.seconds_before)} → {_duration(f.seconds_after)}",
                    markup=False,
                )
        console.print(f"  LR rule: {f.lr_rule}", markup=False)
        for note in f.notes:
            console.print(f"  note: {note}", markup=False)
        if o.changes:
            console.print(f"  {o.set_text()}", markup=False)
    elif want_fastest:
        console.print("[bold]Fastest that fits[/]: nothing fits this budget", markup=True)
