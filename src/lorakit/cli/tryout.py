"""`lorakit try RUN`: render with the run's LoRA in the running ComfyUI, grid into the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lorakit.cli._console import console
from lorakit.cli.options import JsonOpt
from lorakit.cli.runs import RunArg, RunsDirOpt

HELP = """Render the run's sample prompts with its LoRA in your running ComfyUI, at LoRA strengths
0 / 0.5 / 1 (or --strength), one fixed seed, and put the grid (prompts × strengths) into the run
folder (comfyui-try.png, images in comfyui/) and its report.

ComfyUI must see the base model (its models/checkpoints; SD 3.5 encoders in models/text_encoders)
and the LoRA (its models/loras: set output.lora_folders to that folder and lorakit copies each
finished LoRA there). lorakit says which file to put where when one is missing.

Examples:

  lorakit try last

  lorakit try runs/comic-style-20261123-203000 --strength 0.8 --strength 1.2 --seed 7

  lorakit try last --url http://127.0.0.1:8189 --steps 12 --json
"""


def register(app: typer.Typer) -> None:
    app.command("try", help=HELP)(try_cmd)


def try_cmd(
    run: str = RunArg,
    runs_dir: Path = RunsDirOpt,
    url: str | None = typer.Option(None, "--url", help="ComfyUI's URL (default: the run's comfyui.url)."),
    strength: list[float] = typer.Option(
        [], "--strength", help="LoRA strength to render at (repeat for several; default 0, 0.5 and 1)."
    ),
    seed: int = typer.Option(42, "--seed", help="The seed of every image (the same for all cells)."),
    steps: int | None = typer.Option(None, "--steps", min=1, max=200, help="Sampling steps (default: sampling.steps)."),
    base: str | None = typer.Option(
        None, "--base", help="The base model's name in ComfyUI's checkpoint list, when it differs from the run's file."
    ),
    lora: str | None = typer.Option(None, "--lora", help="The LoRA's name in ComfyUI's LoRA list (default: found)."),
    timeout: float = typer.Option(900.0, "--timeout", min=1, help="Seconds to wait for all images."),
    as_json: bool = JsonOpt,
) -> None:
    from lorakit.run.folder import find_run
    from lorakit.tryout.render import TryRequest, try_run
    from lorakit.tryout.workflow import DEFAULT_STRENGTHS

    run_dir = find_run(run, runs_dir).absolute()
    req = TryRequest(
        run_dir, url=url, strengths=tuple(strength) or DEFAULT_STRENGTHS, seed=seed, steps=steps, base=base,
        lora=lora, timeout_s=timeout,
    )  # fmt: skip
    echo = (lambda _: None) if as_json else (lambda msg: console.print(msg, markup=False, highlight=False))
    result = try_run(req, echo)
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    console.print(f"wrote {result.grid} ({len(result.images)} images in {result.seconds:.0f} s)", markup=False)
