"""``lorakit dataset caption``: caption files for a prepared dataset's images.

What is captioned:
- a folder ``lorakit dataset prepare`` wrote (it has its manifest.json): the images of its concept
  folders, in place (regularization images are left alone: sd-scripts gives them the class word);
  trigger and class come from the manifest;
- with ``--out COPY``: a copy of DIR (prepared or not) is made first and captioned; DIR is only read.
  A raw folder is never captioned in place: ``never modify user source images or captions``.

Per image: an existing caption with text is kept (``--overwrite`` replaces it, ``--append`` merges
new tags after the old ones); a caption that holds only the trigger/class (prepare's
``--caption-missing trigger``) counts as none. The trigger and class go first (the same
``captions.normalise`` prepare uses). Tags on every image are reported: the LoRA should learn
what is constant, so those are candidates for ``--exclude``.

Inference runs in batches; images are decoded by a few threads ahead of the model (bounded, so
memory stays flat on large folders). ``autocaption.json`` in the target records model, provider,
options and what happened to each image.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from lorakit.caption.models import check_installed, kind, resolve_model
from lorakit.caption.wd14 import DEFAULT_CHARACTER, DEFAULT_GENERAL, TagOptions
from lorakit.dataset._fs import is_within
from lorakit.dataset.captions import Caption, TagStats, caption_has_text, normalise, read_caption_text, split_tags
from lorakit.dataset.captions import tag_stats as compute_tag_stats
from lorakit.dataset.layout import toml_string
from lorakit.dataset.manifest import read_manifest
from lorakit.dataset.plan import IMAGE_EXTENSIONS, KOHYA_DIR
from lorakit.errors import DatasetError
from lorakit.fs import atomic_write

RECORD_NAME = "autocaption.json"
DEVICES = ("auto", "cpu", "cuda")
ProgressFn = Callable[[int, int], None]


class Captioner(Protocol):
    provider: str
    fixed_batch: int | None

    def batch_size(self, wanted: int) -> int: ...
    def load(self, path: Path) -> Any: ...
    def caption(self, batch: Sequence[Any]) -> list[list[str]]: ...


@dataclass(frozen=True)
class CaptionOptions:
    directory: Path
    tagger: str = "wd14"
    model: str | None = None
    out: Path | None = None
    overwrite: bool = False
    append: bool = False
    trigger: str | None = None
    class_word: str | None = None
    general_threshold: float = DEFAULT_GENERAL
    character_threshold: float = DEFAULT_CHARACTER
    exclude: tuple[str, ...] = ()
    underscores: bool = False
    rating: bool = False
    batch_size: int = 8
    device: str = "auto"
    caption_ext: str = ".txt"
    jobs: int | None = None


@dataclass(frozen=True)
class Target:
    image: Path
    rel: str  # relative to the captioned folder
    trigger: str | None
    class_word: str | None


@dataclass
class ImageOutcome:
    rel: str
    action: str  # written | appended | kept | failed
    caption: str = ""
    reason: str | None = None


@dataclass
class CaptionReport:
    root: Path
    copied_from: Path | None
    tagger: str
    model: Path
    provider: str
    batch_size: int
    outcomes: list[ImageOutcome]
    tags: TagStats
    seconds: float = 0.0
    inference_seconds: float = 0.0  # decode + model, for the images run through it
    notes: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    @property
    def inferred(self) -> int:
        return sum(1 for o in self.outcomes if o.action in ("written", "appended", "failed"))

    @property
    def images_per_second(self) -> float | None:
        done = self.count("written") + self.count("appended")
        return done / self.inference_seconds if done and self.inference_seconds > 0 else None

    def as_dict(self) -> dict[str, object]:
        ips = self.images_per_second
        return {
            "root": str(self.root),
            "copied_from": str(self.copied_from) if self.copied_from else None,
            "tagger": self.tagger,
            "model": str(self.model),
            "provider": self.provider,
            "batch_size": self.batch_size,
            "written": self.count("written"),
            "appended": self.count("appended"),
            "kept": self.count("kept"),
            "failed": self.count("failed"),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(ips, 2) if ips else None,
            "tags": self.tags.as_dict(),
            "notes": self.notes,
            "images": [
                {"image": o.rel, "action": o.action, "caption": o.caption, **({"reason": o.reason} if o.reason else {})}
                for o in self.outcomes
            ],
        }


def check_options(opts: CaptionOptions) -> None:
    if opts.overwrite and opts.append:
        raise DatasetError("--overwrite and --append both given", fix="pass one: --overwrite replaces, --append merges")
    if opts.device not in DEVICES:
        raise DatasetError(f"--device {opts.device!r} is not one of {', '.join(DEVICES)}", fix="pass --device auto")
    if opts.batch_size < 1:
        raise DatasetError(f"--batch-size {opts.batch_size} must be 1 or more", fix="pass --batch-size 8")
    for name, v in (("--threshold", opts.general_threshold), ("--character-threshold", opts.character_threshold)):
        if not 0.0 < v <= 1.0:
            raise DatasetError(f"{name} {v} is not in (0, 1]", fix=f"pass {name} 0.35 (a probability)")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def find_targets(root: Path, opts: CaptionOptions) -> tuple[list[Target], list[str]]:
    """The images to caption under ``root`` and their trigger/class; notes for the report."""
    manifest = read_manifest(root)
    targets: list[Target] = []
    notes: list[str] = []
    if manifest is not None:
        for c in manifest.get("concepts") or []:
            if not isinstance(c, dict) or not isinstance(c.get("folder"), str):
                continue
            folder = root / c["folder"]
            if not folder.is_dir():
                continue
            trig = opts.trigger or c.get("trigger")
            cls = opts.class_word or c.get("class")
            targets += [Target(p, p.relative_to(root).as_posix(), trig, cls) for p in _images(folder)]
        if (root / "reg").is_dir():
            notes.append("regularization images (reg/) are not captioned: sd-scripts gives them the class word")
        return targets, notes
    for folder in sorted({p.parent for p in root.rglob("*") if p.is_file()} | {root}):
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        m = KOHYA_DIR.match(folder.name) if folder != root else None
        tokens = m["tokens"].split(None, 1) if m else []
        trig = opts.trigger or (tokens[0] if tokens else None)
        cls = opts.class_word or (tokens[1] if len(tokens) > 1 else None)
        targets += [Target(p, p.relative_to(root).as_posix(), trig, cls) for p in _images(folder)]
    return targets, notes


def _copy_tree(source: Path, out: Path) -> None:
    if is_within(out, source) or is_within(source, out):
        raise DatasetError(
            f"--out {out} and {source} overlap", fix="pass --out to a new folder outside DIR (DIR is only read)"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"--out {out} exists and is not empty", fix="pass --out to a new or empty folder")
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    toml = out / "dataset.toml"
    if toml.is_file() and read_manifest(out) is not None:
        # a prepared dataset's TOML names its own folders: point the copy's at the copy
        text = toml.read_text(encoding="utf-8")
        old, new = toml_string(str(source))[:-1], toml_string(str(out))[:-1]
        atomic_write(toml, text.replace(old, new))


def prepare_target(opts: CaptionOptions) -> tuple[Path, Path | None]:
    """(folder to caption, folder copied from); refuses a raw folder without --out."""
    src = opts.directory.expanduser()
    if not src.is_dir():
        raise DatasetError(f"{src} is not a folder", fix="pass the folder `lorakit dataset prepare` wrote")
    src = src.resolve()
    if opts.out is None:
        if read_manifest(src) is None:
            raise DatasetError(
                f"{src} is not a prepared dataset (no manifest.json from lorakit dataset prepare); "
                "lorakit never writes into a source folder",
                fix=f"run `lorakit dataset prepare {src}` and caption its output, or pass --out COPY to caption a copy",
            )
        return src, None
    out = opts.out.expanduser().absolute()
    _copy_tree(src, out)
    return out.resolve(), src


def _decoded(
    captioner: Captioner, paths: Sequence[Path], workers: int, ahead: int
) -> Iterator[tuple[int, Any, str | None]]:
    """(index, loaded image or None, error) in order, decoding at most ``ahead`` images ahead."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        queue: deque[tuple[int, Future[Any]]] = deque()
        nxt = 0
        while nxt < len(paths) or queue:
            while nxt < len(paths) and len(queue) < ahead:
                queue.append((nxt, pool.submit(captioner.load, paths[nxt])))
                nxt += 1
            i, fut = queue.popleft()
            try:
                yield i, fut.result(), None
            except Exception as exc:  # a broken image is one failed row, not a dead run
                yield i, None, f"{type(exc).__name__}: {exc}"


def compose(
    new: list[str], existing: str | None, append: bool, sentence: bool, trigger: str | None, class_word: str | None
) -> Caption:
    """The caption to write: trigger and class first, then (when appending) the old tags, then new."""
    if sentence:  # a sentence is one "tag": never split or merged
        lead = tuple(w for w in (trigger, class_word) if w)
        old: tuple[str, ...] = ()
        if append and existing:
            old = normalise(existing, trigger, class_word).tags[len(lead) :]
        return Caption(lead + old + tuple(s for s in new if s))
    tags = split_tags(existing) if append and existing else []
    seen = {t.casefold() for t in tags}
    tags += [t for t in new if t.casefold() not in seen]
    return normalise(", ".join(tags), trigger, class_word)


def _load_captioner(opts: CaptionOptions, model: Path) -> Captioner:
    if opts.tagger == "blip":
        from lorakit.caption.sentence import BlipCaptioner

        return BlipCaptioner(model, opts.device)
    from lorakit.caption.wd14 import Wd14Tagger

    tag_opts = TagOptions(
        general_threshold=opts.general_threshold,
        character_threshold=opts.character_threshold,
        exclude=frozenset(opts.exclude),
        underscores=opts.underscores,
        rating=opts.rating,
    )
    return Wd14Tagger(model, tag_opts, opts.device, threads=opts.jobs)


def caption_dataset(opts: CaptionOptions, progress: ProgressFn | None = None) -> CaptionReport:
    started = time.perf_counter()
    k = kind(opts.tagger)
    opts = replace(opts, tagger=k.name)
    check_options(opts)
    check_installed(k)
    model = resolve_model(k, opts.model)
    root, copied_from = prepare_target(opts)
    targets, notes = find_targets(root, opts)
    if not targets:
        raise DatasetError(f"no images to caption in {root}", fix="pass the folder `lorakit dataset prepare` wrote")
    captioner = _load_captioner(opts, model)
    sentence = k.name == "blip"

    outcomes: list[ImageOutcome | None] = [None] * len(targets)
    existing: list[str | None] = [None] * len(targets)
    todo: list[int] = []
    for i, t in enumerate(targets):
        cap_path = t.image.with_suffix(opts.caption_ext)
        read = read_caption_text(cap_path) if cap_path.is_file() else None
        text = read[0] if read else None
        has_text = text is not None and caption_has_text(text, t.trigger, t.class_word)
        existing[i] = text if has_text else None
        if has_text and not opts.overwrite and not opts.append:
            outcomes[i] = ImageOutcome(t.rel, "kept", " ".join((text or "").split()))
        else:
            todo.append(i)

    batch = captioner.batch_size(opts.batch_size)
    if captioner.fixed_batch and captioner.fixed_batch != opts.batch_size:
        notes.append(f"the model has a fixed batch size {batch} (--batch-size {opts.batch_size} unused)")
    workers = max(1, opts.jobs or min(8, os.cpu_count() or 1))  # decoding is most of the work on a CPU
    t0 = time.perf_counter()
    done = 0
    pending: list[tuple[int, Any]] = []

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        results = captioner.caption([img for _, img in pending])
        for (i, _), new in zip(pending, results, strict=True):
            t = targets[i]
            cap = compose(new, existing[i], opts.append, sentence, t.trigger, t.class_word)
            atomic_write(t.image.with_suffix(opts.caption_ext), cap.text + "\n", durable=False)
            action = "appended" if opts.append and existing[i] else "written"
            outcomes[i] = ImageOutcome(t.rel, action, cap.text)
        done += len(pending)
        pending.clear()
        if progress:
            progress(done, len(todo))

    paths = [targets[i].image for i in todo]
    for j, img, err in _decoded(captioner, paths, workers, ahead=2 * batch + workers):
        i = todo[j]
        if err is not None:
            outcomes[i] = ImageOutcome(targets[i].rel, "failed", reason=err)
            done += 1
            continue
        pending.append((i, img))
        if len(pending) >= batch:
            flush()
    flush()
    inference = time.perf_counter() - t0

    final = [o for o in outcomes if o is not None]
    words = {w for t in targets for w in (t.trigger, t.class_word) if w}
    if sentence:  # tag counts mean nothing for sentences
        stats = TagStats(0, (), ())
    else:
        stats = compute_tag_stats(
            [(o.rel, Caption(tuple(split_tags(o.caption)))) for o in final if o.action != "failed"], words
        )
    report = CaptionReport(
        root, copied_from, k.name, model, captioner.provider, batch, final, stats,
        inference_seconds=inference, notes=notes,
    )  # fmt: skip
    report.seconds = time.perf_counter() - started
    record = {"tool": "lorakit dataset caption", "options": _options_dict(opts), **report.as_dict()}
    atomic_write(root / RECORD_NAME, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return report


def _options_dict(opts: CaptionOptions) -> dict[str, object]:
    return {
        "tagger": opts.tagger,
        "model": opts.model,
        "overwrite": opts.overwrite,
        "append": opts.append,
        "trigger": opts.trigger,
        "class": opts.class_word,
        "threshold": opts.general_threshold,
        "character_threshold": opts.character_threshold,
        "exclude": list(opts.exclude),
        "keep_underscores": opts.underscores,
        "rating": opts.rating,
        "batch_size": opts.batch_size,
        "device": opts.device,
        "caption_ext": opts.caption_ext,
    }
