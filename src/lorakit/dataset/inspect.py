"""``lorakit dataset inspect``: every file with its problems, and an overall verdict.

Reads only. Decodes each image just enough to prove it is whole and to hash it (JPEGs at 1/8
scale), with the same worker and the same decisions as prepare, so "what prepare would do" is
what prepare does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.dataset.balance import Schedule, choose_schedule
from lorakit.dataset.captions import Caption, TagStats, caption_has_text, normalise, read_caption_text, tag_stats
from lorakit.dataset.dedupe import DEFAULT_NEAR_DISTANCE, Drop, find_duplicates, keep_rank
from lorakit.dataset.images import ImageJob, ImageResult, ImageSettings
from lorakit.dataset.pool import run_jobs
from lorakit.dataset.sources import discover

SIZE_BUCKETS = ((0, 512, "< 512"), (512, 1024, "512–1023"), (1024, 2048, "1024–2047"), (2048, 3073, "2048–3072"))

READY = "ready"
NEEDS_PREPARE = "needs prepare"
UNUSABLE = "unusable"


@dataclass
class FileRow:
    path: str
    concept: str
    format: str | None
    width: int
    height: int
    size: int
    caption: bool
    problems: list[str] = field(default_factory=list)
    fate: str = "copy"  # copy | convert | drop | skip


@dataclass
class InspectReport:
    source: Path
    multi: bool
    concepts: list[str]
    rows: list[FileRow]
    formats: dict[str, int]
    size_buckets: dict[str, int]
    captioned: int
    orphan_captions: list[str]
    ignored: list[tuple[str, str]]
    schedule: Schedule | None
    tags: TagStats
    verdict: str
    reasons: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        s = self.schedule
        return {
            "source": str(self.source),
            "verdict": self.verdict,
            "reasons": self.reasons,
            "multi_concept": self.multi,
            "concepts": self.concepts,
            "files": [
                {
                    "path": r.path,
                    "concept": r.concept,
                    "format": r.format,
                    "width": r.width,
                    "height": r.height,
                    "bytes": r.size,
                    "caption": r.caption,
                    "problems": r.problems,
                    "fate": r.fate,
                }
                for r in self.rows
            ],
            "formats": self.formats,
            "size_buckets": self.size_buckets,
            "captions": {
                "images": len(self.rows),
                "captioned": self.captioned,
                "orphan_captions": self.orphan_captions,
            },
            "ignored": [{"path": p, "why": w} for p, w in self.ignored],
            "schedule": None
            if s is None
            else {**s.as_dict(), "repeats": list(s.repeats), "images": list(s.images), "formula": s.formula()},
            "tags": self.tags.as_dict(),
            "notes": self.notes,
        }


def size_bucket(long_edge: int, max_size: int) -> str:
    for lo, hi, label in SIZE_BUCKETS:
        if lo <= long_edge < hi and long_edge <= max_size:
            return label
    return f"> {max_size}"


def inspect_dataset(
    source: Path,
    *,
    caption_ext: str = ".txt",
    max_size: int = 3072,
    resolution: int = 1024,
    near_dup_distance: int = DEFAULT_NEAR_DISTANCE,
    repeats: int | None = None,
    visits: int | None = None,
    epochs: int | None = None,
    batch_size: int = 1,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    disc = discover(source, caption_ext=caption_ext, require_trigger=False)
    settings = ImageSettings(max_size=max_size)
    flat = [(ci, src) for ci, c in enumerate(disc.concepts) for src in c.images]
    job_list = [ImageJob(k, str(src.path), None, src.stem, settings) for k, (_, src) in enumerate(flat)]
    results = run_jobs(job_list, workers=jobs, progress=progress)

    # what each caption file says (None: no file or unreadable); empty = caption_has_text false,
    # the same definition prepare uses
    texts: list[tuple[str, list[str]] | None] = [
        read_caption_text(src.caption) if src.caption is not None else None for _, src in flat
    ]
    has_text = [
        t is not None and caption_has_text(t[0], disc.concepts[ci].trigger, disc.concepts[ci].class_word)
        for (ci, _), t in zip(flat, texts, strict=True)
    ]
    rows: list[FileRow] = []
    for (ci, src), r, captioned in zip(flat, results, has_text, strict=True):
        f = r.facts
        row = FileRow(
            src.rel, disc.concepts[ci].label, f.format if f else None, f.width if f else 0, f.height if f else 0,
            src.size, captioned,
        )  # fmt: skip
        if not r.ok:
            row.problems.append(f"broken: {r.error}")
            row.fate = "skip"
        else:
            row.problems.extend(r.actions)
            if f and f.long_edge < resolution:
                row.problems.append(f"smaller than the training resolution {resolution} px")
            if r.actions:
                row.fate = "convert"
        if not captioned and r.ok:
            row.problems.append("no caption" if src.caption is None else "empty caption")
        rows.append(row)

    kept_per_concept: list[int] = []
    dup_count = 0
    for ci in range(len(disc.concepts)):
        idx = [k for k, (c, _) in enumerate(flat) if c == ci and results[k].ok]
        drops = _duplicates([results[k] for k in idx], [has_text[k] for k in idx],
                            [flat[k][1].rel for k in idx], near_dup_distance)  # fmt: skip
        for d in drops:
            loser, winner = idx[d.index], idx[d.kept]
            what = "exact duplicate" if d.kind == "exact" else f"near-duplicate (distance {d.distance})"
            rows[loser].problems.append(f"{what} of {rows[winner].path}")
            rows[loser].fate = "drop"
        dup_count += len(drops)
        kept_per_concept.append(len(idx) - len(drops))

    captions: list[tuple[str, Caption]] = []
    trigger_words: set[str] = set()
    for c in disc.concepts:
        trigger_words |= {w for w in (c.trigger, c.class_word) if w}
    for (_, src), t, captioned in zip(flat, texts, has_text, strict=True):
        if t is not None and captioned:
            captions.append((src.rel, normalise(t[0], None, None, t[1])))
    tags = tag_stats(captions, trigger_words)

    ok_rows = [r for r, res in zip(rows, results, strict=True) if res.ok]
    formats = dict(sorted(Counter(r.format or "?" for r in ok_rows).items()))
    buckets = Counter(size_bucket(max(r.width, r.height), max_size) for r in ok_rows)
    order = [b[2] for b in SIZE_BUCKETS] + [f"> {max_size}"]
    size_buckets = {b: buckets[b] for b in order if buckets[b]}
    orphans = [o for c in disc.concepts for o in c.orphan_captions]
    ignored = [i for c in disc.concepts for i in c.ignored]

    usable = sum(kept_per_concept)
    schedule = None
    if usable:
        schedule = choose_schedule(
            kept_per_concept, repeats=repeats, visits=visits, epochs=epochs, batch_size=batch_size
        )
        if repeats is None and visits is None and all(c.kohya_repeats for c in disc.concepts):
            # a kohya folder already says its repeats: show the steps those give
            reps = tuple(int(c.kohya_repeats or 1) for c in disc.concepts)
            schedule = Schedule(schedule.images, reps, schedule.epochs, batch_size, "repeats from the folder names")

    verdict, reasons = _verdict(rows, dup_count, orphans, usable, resolution, max_size)
    notes = list(disc.notes)
    if usable and not disc.multi and not 15 <= usable <= 200:
        notes.append(f"{usable} usable images: the guides suggest 15–50 for a character, 50–200 for a style")
    return InspectReport(
        disc.source, disc.multi, [c.label for c in disc.concepts], rows, formats, size_buckets,
        sum(1 for r in rows if r.caption), orphans, ignored, schedule, tags, verdict, reasons, notes,
    )  # fmt: skip


def _duplicates(results: list[ImageResult], captioned: list[bool], names: list[str], distance: int) -> list[Drop]:
    shas = [r.sha256 for r in results]
    hashes = [r.phash for r in results]
    rank = [
        keep_rank(cap, (r.facts.width * r.facts.height) if r.facts else 0, r.file_size, name)
        for r, cap, name in zip(results, captioned, names, strict=True)
    ]
    return find_duplicates(shas, hashes, rank, distance)


def _verdict(
    rows: list[FileRow], dups: int, orphans: list[str], usable: int, resolution: int, max_size: int
) -> tuple[str, list[str]]:
    broken = sum(1 for r in rows if r.fate == "skip")
    convert = sum(1 for r in rows if r.fate == "convert")
    small = sum(1 for r in rows if any(p.startswith("smaller than") for p in r.problems))
    no_caption = sum(1 for r in rows if "no caption" in r.problems)
    reasons: list[str] = []
    if broken:
        reasons.append(f"{broken} broken file(s) will be skipped")
    if convert:
        reasons.append(f"{convert} image(s) need converting (format, colour, transparency, rotation or size)")
    if dups:
        reasons.append(f"{dups} duplicate(s) will be dropped")
    if small:
        reasons.append(f"{small} image(s) smaller than {resolution} px (consider upscaling or --min-size)")
    if no_caption:
        reasons.append(f"{no_caption} image(s) without a caption")
    if orphans:
        reasons.append(f"{len(orphans)} caption(s) without an image")
    if not usable:
        return UNUSABLE, reasons or ["no usable image"]
    if broken or convert or dups:
        return NEEDS_PREPARE, reasons
    return READY, reasons
