# Over ~400 lines because: the prepare pipeline (scan, plan, stage, swap); its steps share the staging state.
"""``lorakit dataset prepare``: a folder of raw images → a new, clean kohya dataset folder.

The source folder is only read. The output is built in a staging folder next to OUT and renamed
into place at the end (the earlier OUT, if any, is swapped out and removed), so OUT is always
either the previous complete result or the new complete result, never a mix or half an image.
A re-run reuses earlier outputs whose source file and image settings are unchanged (hard links
into the new tree), so it skips their decode and gives the same bytes.

Order per concept: process every image (pool) → drop broken → drop under --min-size → drop
exact then near duplicates (keep the largest) → captions → repeats (balanced) → layout, TOML,
manifest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from lorakit.dataset import layout
from lorakit.dataset._fs import is_within
from lorakit.dataset.balance import Schedule, choose_schedule
from lorakit.dataset.captions import (
    Caption,
    TagStats,
    caption_has_text,
    decode_caption,
    normalise,
    read_caption_text,
    tag_stats,
    trigger_caption,
)
from lorakit.dataset.dedupe import DEFAULT_NEAR_DISTANCE, find_duplicates, keep_rank
from lorakit.dataset.images import FORMATS, ImageJob, ImageResult, ImageSettings
from lorakit.dataset.manifest import (
    MANIFEST_NAME,
    CachedImage,
    ImageRecord,
    facts_dict,
    load_cache,
    read_manifest,
    write_manifest,
)
from lorakit.dataset.pool import run_jobs
from lorakit.dataset.sources import ConceptSource, Discovery, SourceImage, check_source_dir, check_token, discover
from lorakit.errors import DatasetError
from lorakit.fs import atomic_write, link_or_copy

CAPTION_MISSING = ("skip", "trigger")
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class PrepareOptions:
    source: Path
    trigger: str | None = None
    class_word: str | None = None
    out: Path | None = None
    repeats: int | None = None
    visits: int | None = None
    epochs: int | None = None
    batch_size: int = 1
    resolution: int = 1024
    max_size: int = 3072
    min_size: int | None = None
    fmt: str = "keep"
    background: str = "white"
    caption_ext: str = ".txt"
    caption_missing: str = "skip"
    near_dup_distance: int = DEFAULT_NEAR_DISTANCE
    jobs: int | None = None
    fast_jpeg: bool = True
    reg: Path | None = None  # regularization images (class images), prepared like the training images
    reg_repeats: int | None = None  # default: balanced so every reg image is used (plan.balanced_reg_repeats)
    reg_class: str | None = None  # class tokens of the reg subset (default: class_word)


@dataclass
class ConceptReport:
    source_folder: str
    folder: str
    trigger: str
    class_word: str | None
    images: int
    repeats: int
    visits_per_epoch: int
    visits_per_image: int


@dataclass
class RegReport:
    source_folder: str
    folder: str  # relative to OUT: reg/<repeats>_<class>
    class_word: str
    images: int
    repeats: int
    samples_per_epoch: int  # as sd-scripts balances them against the train images × repeats
    images_used: int

    def as_dict(self) -> dict[str, object]:
        return {
            "source_folder": self.source_folder,
            "folder": self.folder,
            "class": self.class_word,
            "images": self.images,
            "repeats": self.repeats,
            "samples_per_epoch": self.samples_per_epoch,
            "images_used": self.images_used,
        }


@dataclass
class PrepareReport:
    source: Path
    out: Path
    multi: bool
    concepts: list[ConceptReport]
    schedule: Schedule
    records: list[ImageRecord]
    orphan_captions: list[str]
    ignored: list[tuple[str, str]]
    tags: TagStats
    notes: list[str] = field(default_factory=list)
    reused: int = 0
    processed: int = 0
    seconds: float = 0.0
    worker_cpu_seconds: float = 0.0  # CPU time of the per-image work, all workers together
    regularization: RegReport | None = None

    def of(self, status: str) -> list[ImageRecord]:
        return [r for r in self.records if r.status == status]

    @property
    def small(self) -> list[ImageRecord]:
        return [r for r in self.records if r.status == "kept" and "small" in r.flags]

    @property
    def missing_captions(self) -> list[ImageRecord]:
        # regularization images without a caption are normal: sd-scripts trains them as the class word
        return [
            r
            for r in self.records
            if r.status == "kept" and r.caption_source is None and not r.concept.startswith(REG_FOLDER + "/")
        ]


def default_out(source: Path) -> Path:
    return source.parent / f"{source.name}-prepared"


def parse_background(value: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(value.strip())
    except ValueError:
        raise DatasetError(
            f"--background {value!r} is not a colour", fix="pass a name or hex code: white, black, '#808080'"
        ) from None
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def check_options(opts: PrepareOptions) -> tuple[Path, Path, ImageSettings]:
    """Validate everything that can be checked before reading an image. Returns (source, out, settings)."""
    source = check_source_dir(opts.source)
    out = (opts.out if opts.out is not None else default_out(source)).expanduser().absolute()
    out = out.parent.resolve() / out.name if out.parent.exists() else out
    if is_within(out, source):
        raise DatasetError(
            f"output folder {out} is inside the source folder {source}",
            fix="pass --out somewhere outside DIR (the default is a sibling folder DIR-prepared)",
        )
    if is_within(source, out):
        raise DatasetError(
            f"source folder {source} is inside the output folder {out}; prepare replaces OUT as a whole",
            fix="pass --out to a new folder outside DIR",
        )
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path {out} is a file", fix="pass --out to a folder path")
    if out.is_dir() and any(out.iterdir()) and read_manifest(out) is None:
        raise DatasetError(
            f"output folder {out} exists, is not empty and was not written by lorakit dataset prepare",
            fix="pass --out to a new or empty folder (prepare replaces OUT as a whole)",
        )
    for name, v, low in (("--max-size", opts.max_size, 64), ("--resolution", opts.resolution, 64)):
        if v < low:
            raise DatasetError(f"{name} {v} is too small", fix=f"pass {name} {low} or more")
    if opts.min_size is not None and opts.min_size < 1:
        raise DatasetError(f"--min-size {opts.min_size} must be positive", fix="pass e.g. --min-size 512")
    if opts.min_size is not None and opts.min_size > opts.max_size:
        raise DatasetError(
            f"--min-size {opts.min_size} is over --max-size {opts.max_size}", fix="lower --min-size or raise --max-size"
        )
    if opts.fmt not in FORMATS:
        raise DatasetError(f"--format {opts.fmt!r} is not one of {', '.join(FORMATS)}", fix="pass --format keep")
    if opts.caption_missing not in CAPTION_MISSING:
        raise DatasetError(
            f"--caption-missing {opts.caption_missing!r} is not one of {', '.join(CAPTION_MISSING)}",
            fix="pass --caption-missing skip or --caption-missing trigger",
        )
    if opts.batch_size < 1:
        raise DatasetError(f"--batch-size {opts.batch_size} must be 1 or more", fix="pass --batch-size 1")
    if opts.reg is not None:
        _check_reg(opts, source, out)
    settings = ImageSettings(
        max_size=opts.max_size, fmt=opts.fmt, background=parse_background(opts.background), fast_jpeg=opts.fast_jpeg
    )
    return source, out, settings


def _check_reg(opts: PrepareOptions, source: Path, out: Path) -> None:
    assert opts.reg is not None
    reg = check_source_dir(opts.reg)
    if is_within(reg, out) or is_within(out, reg):
        raise DatasetError(f"--reg {reg} and the output folder {out} overlap", fix="keep --reg outside OUT")
    if is_within(reg, source) or is_within(source, reg):
        raise DatasetError(
            f"--reg {reg} and the training folder {source} overlap",
            fix="keep the regularization images in their own folder, outside DIR",
        )
    if opts.reg_repeats is not None and opts.reg_repeats < 1:
        raise DatasetError(f"--reg-repeats {opts.reg_repeats} must be 1 or more", fix="leave it out (balanced)")
    if not (opts.reg_class or opts.class_word):
        raise DatasetError(
            "--reg needs a class word: reg images without a caption are trained as it",
            fix="pass --class WORD (e.g. --class woman) or --reg-class WORD",
        )


def reg_concept(opts: PrepareOptions) -> ConceptSource:
    """The regularization folder as one concept without trigger (its captions get the class first)."""
    assert opts.reg is not None
    reg = check_source_dir(opts.reg)
    cls = check_token(opts.reg_class or opts.class_word or "", "class", "--reg-class")
    c = discover(reg, caption_ext=opts.caption_ext, trigger="reg", class_word=cls).concepts[0]
    images = tuple(replace(i, rel=f"{REG_PREFIX}{i.rel}") for i in c.images)
    return replace(c, folder=REG_FOLDER, trigger=None, images=images)


REG_FOLDER = "reg"
REG_PREFIX = "[reg]/"  # reg images' names in the manifest (apart from the training images')


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.lorakit-"


def _clean_leftovers(out: Path) -> Path | None:
    """Remove staging folders of interrupted runs; return an old OUT left by a run cut mid-swap."""
    survivor: Path | None = None
    if not out.parent.is_dir():
        return None
    for p in sorted(out.parent.iterdir()):
        if not p.name.startswith(_staging_prefix(out)) or not p.is_dir():
            continue
        if p.name.startswith(_staging_prefix(out) + "old-") and not out.exists() and read_manifest(p):
            survivor = p
            continue
        shutil.rmtree(p, ignore_errors=True)
    return survivor


def prepare_dataset(opts: PrepareOptions, progress: ProgressFn | None = None) -> PrepareReport:
    started = time.perf_counter()
    source, out, settings = check_options(opts)
    disc = discover(source, caption_ext=opts.caption_ext, trigger=opts.trigger, class_word=opts.class_word)
    reg = reg_concept(opts) if opts.reg is not None else None
    survivor = _clean_leftovers(out)
    previous = out if read_manifest(out) is not None else survivor
    cache = load_cache(previous, settings.fingerprint()) if previous else {}

    staging = out.parent / f"{_staging_prefix(out)}staging-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    try:
        report = _build(opts, disc, out, staging, settings, cache, progress, reg)
        _swap(staging, out)
        if survivor is not None:
            shutil.rmtree(survivor, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        target = Path(exc.filename) if exc.filename is not None else None
        if target is not None and is_within(target, out.parent) and not is_within(target, source):
            raise _cannot_write(out, exc) from None  # a write of ours (disk full, permissions)
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _cannot_write(out: Path, exc: OSError) -> DatasetError:
    where = exc.filename or out.parent
    return DatasetError(
        f"cannot write the prepared dataset to {out}: {exc.strerror or exc} ({where})",
        fix="pass --out to a folder you can write to, with free space (the source folder is never changed)",
    )


def _swap(staging: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f"{_staging_prefix(out)}old-{os.getpid()}"
        os.rename(out, old)
        os.rename(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out)


@dataclass
class _Item:
    concept: int
    src: SourceImage
    result: ImageResult | None = None
    cached: CachedImage | None = None
    status: str = "kept"
    reason: str | None = None
    reused: bool = False
    in_staging: bool = False
    flags: list[str] = field(default_factory=list)


def _fresh(cached: CachedImage | None, src: SourceImage) -> CachedImage | None:
    if cached is None or cached.size != src.size or cached.mtime_ns != src.mtime_ns:
        return None
    return cached


def _build(
    opts: PrepareOptions,
    disc: Discovery,
    out: Path,
    staging: Path,
    settings: ImageSettings,
    cache: dict[str, CachedImage],
    progress: ProgressFn | None,
    reg: ConceptSource | None = None,
) -> PrepareReport:
    n_train = len(disc.concepts)  # the regularization concept, if any, comes last
    concepts = disc.concepts + ((reg,) if reg is not None else ())
    cdirs = [staging / f"c{i}" for i in range(len(concepts))]
    for d in cdirs:
        d.mkdir()
    items = [
        _Item(ci, src, cached=_fresh(cache.get(src.rel), src)) for ci, c in enumerate(concepts) for src in c.images
    ]

    # 1. every image: reuse the earlier output when the source is unchanged, else process it
    todo: list[int] = []
    for k, it in enumerate(items):
        hit = it.cached
        if hit is not None:  # its output, if it had one that still exists, is linked; else decided below
            it.result = hit.result
            if hit.output is not None:
                name = it.src.stem + hit.output.suffix
                link_or_copy(hit.output, cdirs[it.concept] / name)
                it.result = _renamed(hit.result, name)
                it.in_staging = True
            it.reused = True
        else:
            todo.append(k)
    _run(items, todo, cdirs, settings, opts.jobs, progress, "processing")

    # 2. decide per concept: broken, too small, duplicates
    for ci in range(len(concepts)):
        members = [it for it in items if it.concept == ci]
        _decide(members, opts, settings, concepts[ci])

    # 3. a reused image that was dropped before (no output kept) but is kept now: process it
    late = [k for k, it in enumerate(items) if it.status == "kept" and not it.in_staging]
    _run(items, late, cdirs, settings, opts.jobs, progress, "processing")
    for it in items:
        if it.status != "kept" and it.in_staging and it.result and it.result.output:
            with contextlib.suppress(FileNotFoundError):
                (cdirs[it.concept] / it.result.output).unlink()

    all_counts = [sum(1 for it in items if it.concept == ci and it.status == "kept") for ci in range(len(concepts))]
    kept_counts = all_counts[:n_train]
    if sum(kept_counts) == 0:
        train_items = [it for it in items if it.concept < n_train]
        raise DatasetError(_nothing_usable(train_items), fix="fix or replace the files listed, then run prepare again")
    if reg is not None and all_counts[n_train] == 0:
        raise DatasetError(
            f"--reg {opts.reg}: no usable regularization image left", fix="add class images there, or leave --reg out"
        )
    empty = [concepts[ci].label for ci, n in enumerate(kept_counts) if n == 0]
    if empty:
        raise DatasetError(
            f"concept folder(s) {', '.join(repr(e) for e in empty)} have no usable image left",
            fix="add images to them or remove the folder(s)",
        )

    # 4. repeats, folders, captions, TOML, manifest
    schedule = choose_schedule(
        kept_counts, repeats=opts.repeats, visits=opts.visits, epochs=opts.epochs, batch_size=opts.batch_size
    )
    folders: list[str] = []
    subsets: list[layout.Subset] = []
    concept_reports: list[ConceptReport] = []
    for ci, c in enumerate(concepts[:n_train]):
        assert c.trigger is not None
        reps = schedule.repeats[ci]
        folder = layout.folder_name(reps, c.trigger, c.class_word)
        folders.append(folder)
        os.rename(cdirs[ci], staging / folder)
        keep = 2 if c.class_word else 1
        subsets.append(layout.Subset(out / folder, reps, layout.class_tokens(c.trigger, c.class_word), keep))
        concept_reports.append(
            ConceptReport(
                c.folder,
                folder,
                c.trigger,
                c.class_word,
                kept_counts[ci],
                reps,
                kept_counts[ci] * reps,
                reps * schedule.epochs,
            )
        )

    reg_report: RegReport | None = None
    reg_subset: layout.RegSubset | None = None
    if reg is not None:
        reg_report, reg_subset = _place_reg(opts, reg, all_counts[n_train], schedule.images_x_repeats, staging, out)
        os.rename(cdirs[n_train], staging / reg_report.folder)
        folders.append(reg_report.folder)
        schedule = replace(schedule, reg_samples=reg_report.samples_per_epoch)

    records: list[ImageRecord] = []
    captions: list[tuple[str, Caption]] = []
    for it in items:
        c = concepts[it.concept]
        rec = _record(it, folders[it.concept])
        if it.status == "kept":
            missing = opts.caption_missing if it.concept < n_train else "skip"  # reg: sd-scripts uses the class
            cap = _caption(it.src, c, missing, rec)
            if cap is not None:
                assert it.result is not None and it.result.output is not None
                name = Path(it.result.output).stem + layout.CAPTION_EXTENSION
                atomic_write(staging / folders[it.concept] / name, cap.text + "\n", durable=False)
                rec.caption = f"{folders[it.concept]}/{name}"
                rec.caption_actions = list(cap.actions)
                if it.src.caption is not None and it.concept < n_train:
                    captions.append((it.src.rel, cap))
        records.append(rec)

    trigger_words: set[str] = set()
    for c in concepts:
        trigger_words |= {w for w in (c.trigger, c.class_word) if w}
    tags = tag_stats(captions, trigger_words)
    toml = layout.dataset_toml(subsets, resolution=opts.resolution, batch_size=opts.batch_size, reg=reg_subset)
    atomic_write(staging / "dataset.toml", toml, durable=False)

    notes = list(disc.notes)
    if reg_report is not None and reg_report.images_used < reg_report.images:
        notes.append(
            f"sd-scripts uses only {reg_report.images_used} of {reg_report.images} regularization images "
            f"(--reg-repeats {reg_report.repeats} × images exceed the train images×repeats)"
        )
    if disc.multi and opts.batch_size > 1:
        notes.append("multi-concept datasets usually train at batch size 1 (field notes)")
    orphans = [o for c in concepts for o in c.orphan_captions]
    ignored = [i for c in concepts for i in c.ignored]
    report = PrepareReport(
        disc.source, out, disc.multi, concept_reports, schedule, records, orphans, ignored, tags, notes,
        reused=sum(1 for it in items if it.reused), processed=len(todo) + len(late),
        worker_cpu_seconds=sum(it.result.cpu_seconds for it in items if it.result and not it.reused),
        regularization=reg_report,
    )  # fmt: skip
    write_manifest(staging, manifest_payload(report, opts, settings))
    return report


def _place_reg(
    opts: PrepareOptions, reg: ConceptSource, images: int, train_samples: int, staging: Path, out: Path
) -> tuple[RegReport, layout.RegSubset]:
    """Repeats and folder of the regularization images (OUT/reg/<repeats>_<class>/)."""
    from lorakit.dataset.plan import balanced_reg_repeats, reg_images_used, reg_samples_per_epoch

    assert reg.class_word is not None
    reps = opts.reg_repeats or balanced_reg_repeats(train_samples, images)
    folder = f"{REG_FOLDER}/{reps}_{reg.class_word}"
    (staging / REG_FOLDER).mkdir()
    assert opts.reg is not None
    report = RegReport(
        str(opts.reg), folder, reg.class_word, images, reps,
        reg_samples_per_epoch(train_samples, images, reps), reg_images_used(train_samples, images, reps),
    )  # fmt: skip
    return report, layout.RegSubset(out / folder, reps, reg.class_word)


def _renamed(r: ImageResult, name: str) -> ImageResult:
    return replace(r, output=name)


def _run(
    items: list[_Item],
    indexes: list[int],
    cdirs: list[Path],
    settings: ImageSettings,
    workers: int | None,
    progress: ProgressFn | None,
    phase: str,
) -> None:
    if not indexes:
        return
    jobs = [
        ImageJob(k, str(items[k].src.path), str(cdirs[items[k].concept]), items[k].src.stem, settings) for k in indexes
    ]
    cb = (lambda done, total: progress(phase, done, total)) if progress else None
    for r in run_jobs(jobs, workers=workers, progress=cb):
        it = items[r.index]
        it.result = r
        it.in_staging = r.output is not None
        it.reused = False


def _decide(members: list[_Item], opts: PrepareOptions, settings: ImageSettings, concept: ConceptSource) -> None:
    members.sort(key=lambda it: it.src.rel)
    for it in members:
        r = it.result
        assert r is not None
        if not r.ok:
            it.status, it.reason = "broken", r.error
            continue
        assert r.facts is not None
        long = r.facts.long_edge
        if long < opts.resolution:
            it.flags.append("small")
        if opts.min_size is not None and long < opts.min_size:
            it.status = "dropped"
            it.reason = f"smaller than --min-size {opts.min_size} (long edge {long} px)"
    alive = [it for it in members if it.status == "kept"]
    shas = [it.result.sha256 for it in alive if it.result]
    hashes = [it.result.phash for it in alive if it.result]
    rank = [keep_rank(_captioned(it.src, concept), it.result.facts.width * it.result.facts.height,
                      it.result.file_size, it.src.rel)
            for it in alive if it.result and it.result.facts]  # fmt: skip
    for d in find_duplicates(shas, hashes, rank, opts.near_dup_distance):
        loser, winner = alive[d.index], alive[d.kept]
        loser.status = "dropped"
        why = "kept the captioned one" if rank[d.kept][0] > rank[d.index][0] else None
        if d.kind == "exact":
            loser.reason = f"exact duplicate of {winner.src.rel} (same bytes)" + (f"; {why}" if why else "")
        else:
            loser.reason = (
                f"near-duplicate of {winner.src.rel} (perceptual distance {d.distance}, {why or 'kept the larger'})"
            )


def _captioned(src: SourceImage, concept: ConceptSource) -> bool:
    """Whether the image has a caption with text (the shared definition, captions.caption_has_text)."""
    if src.caption is None:
        return False
    read = read_caption_text(src.caption)
    return read is not None and caption_has_text(read[0], concept.trigger, concept.class_word)


def _caption(src: SourceImage, concept: ConceptSource, missing: str, rec: ImageRecord) -> Caption | None:
    if src.caption is not None:
        rec.caption_source = (PurePosixPath(src.rel).parent / src.caption.name).as_posix()
        try:
            data = src.caption.read_bytes()
        except OSError as exc:
            raise DatasetError(
                f"cannot read caption {src.caption}: {exc.strerror}", fix="check the file's permissions"
            ) from None
        text, notes = decode_caption(data)
        cap = normalise(text, concept.trigger, concept.class_word, notes)
        if caption_has_text(text, concept.trigger, concept.class_word):
            return cap
        rec.flags.append("empty caption")
        rec.caption_source = None
    if missing == "trigger":
        return trigger_caption(concept.trigger, concept.class_word)
    return None


def _record(it: _Item, folder: str) -> ImageRecord:
    r = it.result
    rec = ImageRecord(
        source=it.src.rel, concept=folder, status=it.status, reason=it.reason,
        size=it.src.size, mtime_ns=it.src.mtime_ns, flags=list(it.flags),
    )  # fmt: skip
    if r is None:
        return rec
    rec.sha256 = r.sha256
    rec.phash = f"{r.phash:016x}" if r.phash is not None else None
    rec.source_info = facts_dict(r.facts)
    if it.status == "kept" and r.output:
        rec.actions = list(r.actions)
        rec.copied = r.copied
        rec.output = f"{folder}/{r.output}"
        rec.out_width, rec.out_height = r.out_width, r.out_height
    return rec


def _nothing_usable(items: list[_Item]) -> str:
    lines = [f"no usable image: {len(items)} found, none kept"]
    for it in items[:8]:
        lines.append(f"  {it.src.rel}: {it.reason or it.status}")
    if len(items) > 8:
        lines.append(f"  … and {len(items) - 8} more")
    return "\n".join(lines)


def manifest_payload(report: PrepareReport, opts: PrepareOptions, settings: ImageSettings) -> dict[str, object]:
    s = report.schedule
    return {
        "source": str(report.source),
        "output": str(report.out),
        "settings": {
            "fingerprint": settings.fingerprint(),
            "max_size": settings.max_size,
            "format": settings.fmt,
            "background": "#{:02x}{:02x}{:02x}".format(*settings.background),
            "jpeg_quality": settings.jpeg_quality,
            "png_compress_level": settings.png_level,
            "resolution": opts.resolution,
            "min_size": opts.min_size,
            "near_dup_distance": opts.near_dup_distance,
            "caption_extension": opts.caption_ext,
            "caption_missing": opts.caption_missing,
        },
        "concepts": [
            {
                "source_folder": c.source_folder,
                "folder": c.folder,
                "trigger": c.trigger,
                "class": c.class_word,
                "images": c.images,
                "repeats": c.repeats,
                "visits_per_epoch": c.visits_per_epoch,
                "visits_per_image": c.visits_per_image,
            }
            for c in report.concepts
        ],
        "schedule": s.as_dict(),
        "regularization": report.regularization.as_dict() if report.regularization else None,
        "summary": {
            "images_found": len(report.records),
            "kept": len(report.of("kept")),
            "copied_unchanged": sum(1 for r in report.of("kept") if r.copied),
            "dropped": len(report.of("dropped")),
            "broken": len(report.of("broken")),
            "small": len(report.small),
            "missing_captions": len(report.missing_captions),
            "orphan_captions": len(report.orphan_captions),
        },
        "tags": report.tags.as_dict(),
        "images": [r.as_dict() for r in report.records],
        "orphan_captions": report.orphan_captions,
        "ignored": [{"path": p, "why": w} for p, w in report.ignored],
        "notes": report.notes,
        "dataset_toml": "dataset.toml",
        "manifest": MANIFEST_NAME,
    }
