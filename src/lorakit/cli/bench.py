"""`lorakit bench` (measure a config on this GPU) and `lorakit synth-model` (random-weight
base models with the real key layout, to try a setup without downloading 7–16 GB)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lorakit import families
from lorakit.cli._console import console, err_console
from lorakit.cli.options import ConfigOpt, DataOpt, JsonOpt, PresetOpt, SdScriptsOpt, SetOpt
from lorakit.fs import atomic_write

if TYPE_CHECKING:
    from lorakit.bench import BenchResult
    from lorakit.errors import EnvironmentProblem, LorakitError

BENCH_HELP = """Measure a preset on this GPU: N steps through the normal `lorakit train` path.

Reports steady s/step (warm-up excluded) as the median and spread of repeated windows of
4 steps, images/s, time to first step and peak VRAM, and writes bench.json into the run
folder (and --out).

--compare runs several configs interleaved in one call (A B, B A, … for --rounds rounds), each
a YAML file (a config layer) or KEY=VALUE overrides in one quoted argument, on top of the
common --preset/--config/--set; absolute figures drift between runs, ratios measured this way
do much less. Each run starts the trainer anew (loading and caching: about a minute each on an
H200 for SDXL).

Examples:

  lorakit bench --preset comic-style --set model.checkpoint=/models/sdxl.safetensors

  lorakit bench --preset comic-style --set training.batch_size=8 --set training.gradient_checkpointing=true

  lorakit bench --preset comic-style --steps 12 --rounds 2 \\
      --compare "" --compare "training.batch_size=8 training.gradient_checkpointing=true"
"""

SYNTH_HELP = """Write a random-weight base model with the exact key layout sd-scripts loads.

Runs in the trainer's Python (torch, transformers, diffusers). SDXL: one 6.9 GB file; SD 3.5:
the MMDiT+VAE file plus clip_l, clip_g and t5xxl files; Flux.1 dev (flux-dev): the 23.8 GB
transformer, ae, clip_l and t5xxl files (about 34 GB); and an offline tokenizer folder for
model.tokenizer_cache_dir. Useful to check that a setup trains, how fast and in how much
memory, before downloading the real weights. The weights are noise: the LoRA learns nothing.
"""


def register(app: typer.Typer) -> None:
    app.command("bench", help=BENCH_HELP)(bench)
    app.command("synth-model", help=SYNTH_HELP)(synth_model)


def bench(
    preset: str | None = PresetOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt,
    data: Path | None = DataOpt,
    sd_scripts: Path | None = SdScriptsOpt,
    steps: int = typer.Option(20, "--steps", min=3, help="Training steps to run (the first 2 are warm-up)."),
    images: int = typer.Option(8, "--images", min=1, help="Noise images to train on when --data is not given."),
    compare: list[str] = typer.Option(
        [],
        "--compare",
        help='A config to compare (repeat it): a YAML layer, or "KEY=VALUE KEY=VALUE" ("" = the common config).',
        metavar="CONFIG",
    ),
    rounds: int = typer.Option(2, "--rounds", min=1, help="With --compare: rounds of interleaved runs (A B, B A, …)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON result here.", dir_okay=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live view."),
    as_json: bool = JsonOpt,
) -> None:
    from lorakit.bench import bench_overrides
    from lorakit.kohya.install import require_trainer
    from lorakit.planning import PlanRequest, resolve_spec

    sets = [*overrides, *bench_overrides(steps)]
    specs = {label: compare_sets(label) for label in compare}
    resolved: Any = None
    for extra in specs.values() or [[]]:  # config errors first (exit 2), then the environment (exit 3)
        resolved = resolve_spec(PlanRequest(preset, config, (*sets, *extra), data))
        spec = resolved[0].spec
    trainer = require_trainer(sd_scripts)
    from lorakit.gpu.guard import require_gpu

    require_gpu((spec.training.gpus or [0])[0])  # no GPU: exit 3 before a trainer starts
    if data is None:  # the noise dataset changes the request: it is planned with it
        size = max(spec.training.size)
        from lorakit.bench import make_noise_dataset

        data = make_noise_dataset(Path(tempfile.mkdtemp(prefix="lorakit-bench-data-")), images, size)
        resolved = None
    if specs:
        _compare(preset, config, sets, overrides, data, trainer, specs, rounds, quiet or as_json, out, as_json)
        return
    # the config loaded above is planned once and handed down (with --data)
    result, err = _one(preset, config, sets, overrides, data, trainer, quiet or as_json, as_json, resolved)
    text = result.to_json()
    if out is not None:
        atomic_write(out, text + "\n")
    if as_json:
        print(text)
    else:
        spread = f" (spread {result.spread:.0%} over {len(result.windows_s_per_step)} windows)" if result.spread else ""
        console.print(
            f"[bold]bench[/] {preset or config}: {result.steps} steps, batch {result.batch_size} — "
            f"steady {result.median_s_per_step or result.steady_s_per_step} s/step{spread}, "
            f"{result.images_per_s} images/s, first step after {result.time_to_first_step_s} s, "
            f"peak {result.peak_vram_gib} GiB on {result.gpu}"
        )
    if err is not None:
        raise err


def compare_sets(label: str) -> list[str]:
    from lorakit.bench import compare_spec

    return compare_spec(label) if label.strip() else []


def _one(
    preset: str | None,
    config: Path | None,
    sets: list[str],
    overrides: list[str],
    data: Path,
    trainer: Any,
    quiet: bool,
    to_stderr: bool,
    resolved: Any = None,
) -> tuple[BenchResult, LorakitError | None]:
    """One bench run: train, summarise, bench.json in the run folder. ``resolved``: the request's
    config already loaded (``planning.resolve_spec``), so it is not loaded again."""
    from lorakit.bench import summarize
    from lorakit.cli.runs import outcome_error
    from lorakit.planning import PlanRequest, resolve_spec
    from lorakit.run.live import make_view
    from lorakit.training import plan_new_run, start_run

    req = PlanRequest(preset, config, tuple(sets), data)
    if resolved is None:
        resolved = resolve_spec(req)
    spec = resolved[0].spec
    first = plan_new_run(req, trainer, loaded=resolved, create=False)
    view = make_view(quiet=quiet, console=err_console if to_stderr else console)
    outcome = start_run(first, trainer, observer=view)
    result = summarize(
        outcome.events,
        preset=preset,
        run_dir=outcome.run_dir,
        batch_size=_batch_size(outcome.run_dir),
        gpu=_gpu_name((spec.training.gpus or [0])[0]),
        overrides=list(overrides),
        n_gpus=len(spec.training.gpus or [0]),
    )
    atomic_write(outcome.run_dir / "bench.json", result.to_json() + "\n")
    return result, outcome_error(outcome)


def _compare(
    preset: str | None,
    config: Path | None,
    sets: list[str],
    overrides: list[str],
    data: Path,
    trainer: Any,
    specs: dict[str, list[str]],
    rounds: int,
    quiet: bool,
    out: Path | None,
    as_json: bool,
) -> None:
    from lorakit.bench import Compared, compare_summary, interleaved

    configs = {label: Compared(label or "(common config)", extra) for label, extra in specs.items()}
    errors: list[LorakitError] = []
    for label in interleaved(list(specs), rounds):
        c = configs[label]
        result, err = _one(
            preset, config, [*sets, *c.overrides], [*overrides, *c.overrides], data, trainer, quiet, as_json
        )
        c.runs.append(result)
        if err is not None:
            errors.append(err)
            break
    summary = compare_summary(list(configs.values()))
    text = json.dumps(summary, indent=2)
    if out is not None:
        atomic_write(out, text + "\n")
    if as_json:
        print(text)
    else:
        from rich.table import Table

        table = Table(
            "config", "batch", "s/step (median)", "spread", "windows", "images/s", "ratio", "peak GiB", box=None
        )
        for row in summary["configs"]:  # type: ignore[attr-defined]
            spread = row["spread"]
            table.add_row(
                str(row["label"]),
                str(row["batch_size"]),
                str(row["median_s_per_step"]),
                "" if spread is None else f"{spread:.0%}",
                str(row["windows"]),
                str(row["images_per_s"]),
                "" if row["ratio"] is None else f"×{row['ratio']:.2f}",
                str(row["peak_vram_gib"]),
            )
        console.print(table)
    if errors:
        raise errors[0]


def _batch_size(run_dir: Path) -> int:
    import yaml

    spec = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8"))
    return int(spec["training"]["batch_size"])


def _gpu_name(index: int) -> str | None:
    try:
        from lorakit.gpu.nvml import gpu

        return gpu(index, processes=False).name
    except Exception:  # no NVML / no GPU: the bench still ran, the GPU is then unnamed
        return None


def synth_failure(family: str, python: str, returncode: int, stderr: str) -> EnvironmentProblem:
    """One message for a failed ``lorakit.synth.build`` child: the missing package and how to
    install it, else the child's last exception line."""
    import re
    import shlex

    from lorakit.errors import EnvironmentProblem

    missing = re.findall(r"No module named '([\w.]+)'", stderr)
    if missing:
        module = missing[-1].split(".")[0]
        return EnvironmentProblem(
            f"building the {family} model needs the Python package `{module}`, which the trainer's Python "
            f"({python}) does not have",
            fix=f"{shlex.join([python, '-m', 'pip', 'install', module])} (or run `lorakit setup`); "
            "`lorakit doctor` checks the trainer environment",
        )
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception)\b", ln)), None)
    return EnvironmentProblem(
        f"building the {family} model failed (exit {returncode}): {last or (lines[-1] if lines else 'no output')}",
        fix="run `lorakit doctor` to check the trainer environment (torch, transformers, diffusers)",
    )


def synth_model(
    family: str = typer.Argument(..., help=f"{families.names_text()}."),
    out: Path = typer.Argument(..., help="Folder to write into.", file_okay=False),
    sd_scripts: Path | None = SdScriptsOpt,
    seed: int = typer.Option(0, "--seed", help="Random seed of the weights."),
    device: str | None = typer.Option(None, "--device", help="cuda or cpu (default: cuda if available)."),
    bpe: Path | None = typer.Option(None, "--bpe", help="CLIP bpe_simple_vocab_16e6.txt.gz (default: search)."),
    blocks: str | None = typer.Option(
        None,
        "--blocks",
        help="DOUBLE,SINGLE: a smaller test model of that depth (families that take it).",
        metavar="D,S",
    ),
    fp8: bool = typer.Option(False, "--fp8", help="Write the transformer in float8_e4m3fn (families that take it)."),
) -> None:
    import subprocess

    import lorakit
    from lorakit.errors import ConfigError
    from lorakit.kohya.install import require_trainer
    from lorakit.proc import child_env

    if family not in families.NAMES:
        raise ConfigError([f"synth-model: unknown family `{family}`; one of {', '.join(families.NAMES)}"])
    takes = families.get(family).synth.options
    extra: list[str] = []
    if blocks is not None:
        parts = blocks.replace(" ", "").split(",")
        if "blocks" not in takes or len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            why = f"{family} has no reduced-depth build" if "blocks" not in takes else "give two counts, e.g. 2,4"
            raise ConfigError([f"synth-model --blocks {blocks}: {why}"])
        extra += ["--blocks", *parts]
    if fp8:
        if "fp8" not in takes:
            raise ConfigError([f"synth-model --fp8: {family} has no fp8 build"])
        extra.append("--fp8")
    trainer = require_trainer(sd_scripts)
    argv = [trainer.python, "-m", "lorakit.synth.build", family, str(out), "--sd-scripts", str(trainer.sd_scripts)]
    argv += ["--seed", str(seed)] + (["--device", device] if device else []) + (["--bpe", str(bpe)] if bpe else [])
    argv += extra
    src = str(Path(lorakit.__file__).resolve().parent.parent)  # lorakit need not be installed there
    env = child_env(python=False, python_path=(src, str(trainer.sd_scripts)))
    created = not out.exists()
    # the child's stderr is kept: a failure becomes one message (its last exception line), not
    # a Python traceback on the user's terminal; on success it is passed on as it was
    proc = subprocess.run(argv, env=env, check=False, stderr=subprocess.PIPE, text=True, errors="replace")
    if proc.returncode != 0:
        if created:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-built is left behind
        raise synth_failure(family, trainer.python, proc.returncode, proc.stderr)
    sys.stderr.write(proc.stderr)
    info = out / "synth.json"
    if info.is_file():
        console.print(json.dumps(json.loads(info.read_text(encoding="utf-8")), indent=2), markup=False)
