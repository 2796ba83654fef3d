"""`lorakit dataset inspect|prepare`. Logic lives in lorakit.dataset; this module parses options
and renders reports. Everything heavy (Pillow, numpy, the dataset package) is imported inside the
commands so `lorakit --help` stays instant."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lorakit.cli._console import console, err_console

if TYPE_CHECKING:
    from lorakit.dataset.captions import TagStats
    from lorakit.dataset.inspect import InspectReport
    from lorakit.dataset.prepare import PrepareReport

app = typer.Typer(help="Inspect and prepare image datasets.", no_args_is_help=True)

LIST_LIMIT = 20

DirArg = typer.Argument(
    ..., metavar="DIR", help="Folder of raw images (one sub-folder per concept for several concepts)."
)
CaptionExtOpt = typer.Option(".txt", "--caption-ext", help="Extension of the caption files next to the images.")
MaxSizeOpt = typer.Option(3072, "--max-size", help="Longest edge allowed; larger images are downscaled.")
ResolutionOpt = typer.Option(1024, "--resolution", help="Training resolution (images under it are flagged).")
NearOpt = typer.Option(6, "--near-dup-distance", help="Max pHash distance (of 64 bits) for near-duplicates; -1: off.")
RepeatsOpt = typer.Option(None, "--repeats", help="Repeats of the largest concept (others balanced).")
VisitsOpt = typer.Option(None, "--visits", help="Wanted visits per image (repeats × epochs); default 100.")
EpochsOpt = typer.Option(None, "--epochs", help="Epochs to plan for (default 10, or visits ÷ repeats).")
BatchOpt = typer.Option(1, "--batch-size", help="Batch size for the steps math (and the dataset TOML).")
JobsOpt = typer.Option(None, "--jobs", "-j", help="Worker processes (default: every core).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    if not enabled or not err_console.is_terminal:
        yield lambda phase, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # no refresh thread: the worker pool forks, and a fork must not copy a thread mid-lock
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, auto_refresh=False,
    ) as bar:  # fmt: skip
        tasks: dict[str, object] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]
            bar.refresh()

        yield update


def _listing(title: str, rows: Sequence[tuple[str, str]], style: str = "yellow") -> None:
    if not rows:
        return
    from rich.markup import escape

    console.print(f"\n[bold {style}]{escape(title)} ({len(rows)})[/]")
    for left, right in rows[:LIST_LIMIT]:
        console.print(f"  {escape(left)}" + (f"  [dim]{escape(right)}[/]" if right else ""))
    if len(rows) > LIST_LIMIT:
        console.print(f"  [dim]… and {len(rows) - LIST_LIMIT} more (all in the report/manifest)[/]")


@app.command("inspect")
def inspect_cmd(
    directory: Path = DirArg,
    caption_ext: str = CaptionExtOpt,
    max_size: int = MaxSizeOpt,
    resolution: int = ResolutionOpt,
    near_dup_distance: int = NearOpt,
    repeats: int | None = RepeatsOpt,
    visits: int | None = VisitsOpt,
    epochs: int | None = EpochsOpt,
    batch_size: int = BatchOpt,
    jobs: int | None = JobsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check every file of a dataset folder and give a verdict. Reads only.

    Example: [bold]lorakit dataset inspect ~/raw/alice[/]

    Example: [bold]lorakit dataset inspect ~/raw/alice --json > report.json[/]
    """
    from lorakit.dataset.inspect import inspect_dataset

    with _progress(not as_json) as update:
        report = inspect_dataset(
            directory, caption_ext=caption_ext, max_size=max_size, resolution=resolution,
            near_dup_distance=near_dup_distance, repeats=repeats, visits=visits, epochs=epochs,
            batch_size=batch_size, jobs=jobs, progress=lambda d, t: update("reading", d, t),
        )  # fmt: skip
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    _render_inspect(report)


def _render_inspect(report: InspectReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from lorakit.dataset.inspect import NEEDS_PREPARE, READY

    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column("file")
    if report.multi:
        table.add_column("concept")
    for col in ("format", "size", "problems / changes", "fate"):
        table.add_column(col)
    fate_style = {"copy": "green", "convert": "cyan", "drop": "yellow", "skip": "red"}
    for r in report.rows:
        cells = [escape(r.path)]
        if report.multi:
            cells.append(escape(r.concept))
        size = f"{r.width}×{r.height}" if r.width else "-"
        problems = "; ".join(r.problems) or "-"
        cells += [r.format or "-", size, escape(problems), f"[{fate_style.get(r.fate, '')}]{r.fate}[/]"]
        table.add_row(*cells)
    console.print(table)

    console.print()
    console.print("formats: " + ", ".join(f"{k} {v}" for k, v in report.formats.items()))
    console.print("long edge: " + ", ".join(f"{k} px: {v}" for k, v in report.size_buckets.items()))
    console.print(f"captions: {report.captioned} of {len(report.rows)} images")
    s = report.schedule
    if s is not None:
        reps = ", ".join(str(r) for r in s.repeats)
        console.print(f"steps: {s.formula()}  [dim](repeats {reps}; {escape(s.how)})[/]")
    _tags(report.tags)
    _listing("captions without an image", [(o, "") for o in report.orphan_captions])
    _listing("ignored", report.ignored, "dim")
    for n in report.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    style = {READY: "bold green", NEEDS_PREPARE: "bold yellow"}.get(report.verdict, "bold red")
    console.print(f"\n[{style}]verdict: {report.verdict}[/]")
    for reason in report.reasons:
        console.print(f"  - {escape(reason)}")
    if report.verdict == NEEDS_PREPARE:
        console.print("[dim]fix it with: lorakit dataset prepare DIR --trigger TOKEN[/]")


def _tags(tags: TagStats) -> None:
    from rich.markup import escape

    from lorakit.dataset.captions import MAX_TAGS_ADVISED

    if not tags.captioned:
        return
    top = ", ".join(f"{t} ({n})" for t, n in tags.top[:10])
    console.print(f"top tags: {escape(top)}")
    if tags.on_every_image:
        console.print(
            "[yellow]tags on every image[/] (the LoRA should learn what is constant; consider removing): "
            + escape(", ".join(tags.on_every_image))
        )
    _listing(f"images with more than {MAX_TAGS_ADVISED} tags", [(i, f"{n} tags") for i, n in tags.over_limit])


@app.command("prepare")
def prepare_cmd(
    directory: Path = DirArg,
    trigger: str | None = typer.Option(
        None,
        "--trigger",
        "-t",
        help="Trigger token, first tag of every caption (single concept; with concept "
        "sub-folders each folder's name is its trigger).",
    ),
    class_word: str | None = typer.Option(None, "--class", help="Class word, second tag (e.g. woman, style)."),
    repeats: int | None = RepeatsOpt,
    visits: int | None = VisitsOpt,
    epochs: int | None = EpochsOpt,
    batch_size: int = BatchOpt,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: DIR-prepared next to DIR)."),
    resolution: int = ResolutionOpt,
    max_size: int = MaxSizeOpt,
    min_size: int | None = typer.Option(None, "--min-size", help="Drop images whose long edge is under N px."),
    fmt: str = typer.Option(
        "keep", "--format", help="Encoding of changed images: keep (JPEG stays JPEG q95, rest PNG), png, jpeg."
    ),
    background: str = typer.Option("white", "--background", help="Colour transparency is flattened onto."),
    caption_ext: str = CaptionExtOpt,
    caption_missing: str = typer.Option(
        "skip",
        "--caption-missing",
        help="Images without a caption: skip (no file; sd-scripts uses the class "
        "tokens) or trigger (write the trigger and class as the caption).",
    ),
    near_dup_distance: int = NearOpt,
    reg: Path | None = typer.Option(
        None, "--reg", help="Regularization (class) images, prepared the same way into OUT/reg/ (is_reg subset)."
    ),
    reg_repeats: int | None = typer.Option(
        None, "--reg-repeats", help="Repeats of the reg images (default: balanced so every one is used)."
    ),
    reg_class: str | None = typer.Option(None, "--reg-class", help="Class word of the reg images (default: --class)."),
    jobs: int | None = JobsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write a clean kohya dataset (OUT/<repeats>_<trigger> <class>/, dataset.toml, manifest.json).

    The source folder is never written to; a re-run reuses unchanged work.

    Example: [bold]lorakit dataset prepare ~/raw/alice --trigger ohwx --class woman[/]

    Example (one sub-folder per concept): [bold]lorakit dataset prepare ~/raw/cast --visits 120[/]

    Example (with class images): [bold]lorakit dataset prepare ~/raw/alice -t ohwx --class woman --reg ~/reg[/]
    """
    from lorakit.dataset.prepare import PrepareOptions, prepare_dataset

    opts = PrepareOptions(
        source=directory, trigger=trigger, class_word=class_word, out=out, repeats=repeats, visits=visits,
        epochs=epochs, batch_size=batch_size, resolution=resolution, max_size=max_size, min_size=min_size,
        fmt=fmt.lower(), background=background, caption_ext=caption_ext, caption_missing=caption_missing,
        near_dup_distance=near_dup_distance, jobs=jobs, reg=reg, reg_repeats=reg_repeats, reg_class=reg_class,
    )  # fmt: skip
    with _progress(not as_json) as update:
        report = prepare_dataset(opts, progress=update)
    if as_json:
        from lorakit.dataset.manifest import read_manifest

        print(json.dumps(read_manifest(report.out), indent=2, ensure_ascii=False))
        return
    _render_prepare(report)


def _render_prepare(report: PrepareReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    kept = report.of("kept")
    copied = sum(1 for r in kept if r.copied)
    console.print(
        f"[bold green]prepared {len(kept)} image(s)[/] → {escape(str(report.out))}  "
        f"[dim]({copied} copied unchanged, {len(kept) - copied} converted; {report.reused} reused from the "
        f"last run; {report.seconds:.1f} s)[/]"
    )
    table = Table(box=None, show_edge=False, pad_edge=False)
    for col in ("folder", "images", "repeats", "visits/epoch", "visits/image"):
        table.add_column(col, justify="left" if col == "folder" else "right")
    for c in report.concepts:
        table.add_row(escape(c.folder), str(c.images), str(c.repeats), str(c.visits_per_epoch), str(c.visits_per_image))
    r = report.regularization
    if r is not None:
        used = "" if r.images_used == r.images else f" ({r.images_used} used)"
        table.add_row(
            escape(r.folder) + " [dim](reg)[/]", f"{r.images}{used}", str(r.repeats), str(r.samples_per_epoch), "-"
        )
    console.print(table)
    s = report.schedule
    console.print(f"steps: {s.formula()}  [dim]({escape(s.how)})[/]")

    _listing("dropped", [(r.source, r.reason or "") for r in report.of("dropped")])
    _listing("broken, skipped", [(r.source, r.reason or "") for r in report.of("broken")], "red")
    small = [
        (r.source, f"{(r.source_info or {}).get('width')}×{(r.source_info or {}).get('height')}") for r in report.small
    ]
    _listing("smaller than the training resolution (consider upscaling, or --min-size)", small)
    _listing(
        "no caption (sd-scripts uses the folder's class tokens; --caption-missing trigger writes them)",
        [(r.source, "") for r in report.missing_captions],
    )
    _listing("captions without an image", [(o, "") for o in report.orphan_captions])
    _listing("ignored", report.ignored, "dim")
    _tags(report.tags)
    for n in report.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    console.print(
        f"\n[dim]dataset config: {escape(str(report.out / 'dataset.toml'))}; every action: "
        f"{escape(str(report.out / 'manifest.json'))}[/]"
    )


@app.command("caption")
def caption_cmd(
    directory: Path = typer.Argument(
        ..., metavar="DIR", help="A folder `lorakit dataset prepare` wrote (or any folder, with --out)."
    ),
    tagger: str = typer.Option("wd14", "--tagger", help="wd14 (Danbooru tags, ONNX) or blip (one sentence; torch)."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model folder, or a Hugging Face repo id (downloaded once when online). Default: "
        "SmilingWolf/wd-vit-tagger-v3 / Salesforce/blip-image-captioning-large.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Caption a copy made here; DIR is only read."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing captions (default: keep them)."),
    append: bool = typer.Option(False, "--append", help="Add new tags after the existing ones."),
    trigger: str | None = typer.Option(None, "--trigger", "-t", help="Trigger, first tag (default: the manifest's)."),
    class_word: str | None = typer.Option(None, "--class", help="Class word, second tag (default: the manifest's)."),
    threshold: float = typer.Option(0.35, "--threshold", help="wd14: general-tag probability threshold."),
    character_threshold: float = typer.Option(0.85, "--character-threshold", help="wd14: character-tag threshold."),
    exclude: str = typer.Option("", "--exclude", help="wd14: comma-separated tags never written."),
    keep_underscores: bool = typer.Option(False, "--keep-underscores", help="wd14: keep Danbooru underscores."),
    rating: bool = typer.Option(False, "--rating", help="wd14: add the most likely rating tag (off by default)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per inference batch."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when the runtime has one), cpu or cuda."),
    caption_ext: str = CaptionExtOpt,
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Decode threads / CPU inference threads."),
    as_json: bool = JsonOpt,
) -> None:
    """Write caption files with a WD14-style tagger or BLIP (needs: pip install 'lorakit[caption]').

    Existing captions are kept unless --overwrite (or merged with --append); the trigger and class
    go first. A raw source folder is never written: caption prepare's output, or a copy (--out).

    Example: [bold]lorakit dataset caption ~/raw/alice-prepared[/]

    Example: [bold]lorakit dataset caption ~/raw/alice-prepared --model ~/models/wd14 --exclude "white background"[/]

    Example: [bold]lorakit dataset caption ~/raw/alice --out ~/alice-captioned --tagger blip[/]
    """
    from lorakit.caption.run import CaptionOptions, caption_dataset
    from lorakit.dataset.sources import normalise_caption_ext

    opts = CaptionOptions(
        directory=directory, tagger=tagger, model=model, out=out, overwrite=overwrite, append=append,
        trigger=trigger, class_word=class_word, general_threshold=threshold,
        character_threshold=character_threshold,
        exclude=tuple(t.strip() for t in exclude.split(",") if t.strip()), underscores=keep_underscores,
        rating=rating, batch_size=batch_size, device=device.lower(),
        caption_ext=normalise_caption_ext(caption_ext), jobs=jobs,
    )  # fmt: skip
    with _progress(not as_json) as update:
        report = caption_dataset(opts, progress=lambda d, t: update("captioning", d, t))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    from rich.markup import escape

    ips = report.images_per_second
    speed = f"; {ips:.1f} images/s" if ips else ""
    console.print(
        f"[bold green]captioned {report.count('written') + report.count('appended')} image(s)[/] in "
        f"{escape(str(report.root))}  [dim]({report.tagger} {escape(str(report.model))} on {escape(report.provider)}, "
        f"batch {report.batch_size}{speed})[/]"
    )
    console.print(
        f"written {report.count('written')}, appended {report.count('appended')}, kept {report.count('kept')} "
        "[dim](existing captions are kept; --overwrite replaces, --append merges)[/]"
    )
    if report.copied_from is not None:
        console.print(f"[dim]copied from {escape(str(report.copied_from))} (not written to)[/]")
    _listing("failed", [(o.rel, o.reason or "") for o in report.outcomes if o.action == "failed"], "red")
    _tags(report.tags)
    for n in report.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
