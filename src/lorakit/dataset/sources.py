"""Find the raw inputs of ``lorakit dataset inspect/prepare``: concepts, images, captions.

Rules (docs/dataset.md has the user-facing version):
- single concept: every image under DIR, nested folders included (``prepare --trigger``, or
  ``inspect`` on a folder with images at its top);
- multi-concept: no images at the top of DIR, one sub-folder per concept; each folder's name
  gives the concept's trigger and optional class, ``alice`` or ``alice woman`` or the kohya form
  ``10_alice woman`` (its repeats are ignored: prepare balances them).
A caption is the file with the image's stem and the caption extension next to the image.
Hidden files (``.DS_Store``, macOS ``._x.jpg``) are ignored; so is everything that is neither an
image nor a caption. Only directory listings and ``stat`` here: no image is opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import DatasetError

# Extensions of raw inputs lorakit tries to decode (Pillow, AVIF built in; HEIF with pillow-heif).
# Wider than what sd-scripts accepts (plan.IMAGE_EXTENSIONS): prepare converts the rest.
RAW_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".avif", ".avifs", ".heic", ".heif", ".tga", ".ppm", ".pgm", ".pnm", ".qoi",
    }
)  # fmt: skip

KOHYA_FOLDER = re.compile(r"^(?P<repeats>\d+)_(?P<tokens>.+)$")
_BAD_TOKEN_CHARS = re.compile(r"[,/\\\x00-\x1f\x7f]")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 80


@dataclass(frozen=True)
class SourceImage:
    path: Path  # absolute
    rel: str  # POSIX path relative to DIR (what reports and the manifest show)
    size: int
    mtime_ns: int
    caption: Path | None
    stem: str  # safe output stem, unique (case-insensitively) within its concept


@dataclass(frozen=True)
class ConceptSource:
    folder: str  # sub-folder name, "" for a single concept
    root: Path
    trigger: str | None
    class_word: str | None
    images: tuple[SourceImage, ...]
    orphan_captions: tuple[str, ...] = ()  # rel paths of captions with no image
    ignored: tuple[tuple[str, str], ...] = ()  # (rel, why)
    kohya_repeats: int | None = None  # repeats found in a kohya folder name

    @property
    def label(self) -> str:
        return self.folder or self.trigger or "dataset"


@dataclass(frozen=True)
class Discovery:
    source: Path
    multi: bool
    concepts: tuple[ConceptSource, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def normalise_caption_ext(ext: str) -> str:
    ext = ext.strip()
    if not ext or ext in {".", "*"} or "/" in ext or "\\" in ext:
        raise DatasetError(f"caption extension {ext!r} is not usable", fix="pass e.g. --caption-ext .txt")
    return ext if ext.startswith(".") else "." + ext


def check_token(value: str, what: str, where: str) -> str:
    """Validate a trigger (one token) or class (words) for folder names and captions."""
    value = " ".join(value.split())
    if not value:
        raise DatasetError(f"{where}: the {what} is empty", fix=f"give a {what}, e.g. 'ohwx'")
    if _BAD_TOKEN_CHARS.search(value):
        raise DatasetError(
            f"{where}: the {what} {value!r} contains a comma, slash or control character",
            fix=f"use a plain word as {what} (captions are comma-separated tags; it also names a folder)",
        )
    if what == "trigger" and " " in value:
        raise DatasetError(
            f"{where}: the trigger {value!r} has a space",
            fix="use one rare token as trigger (e.g. 'ohwx') and put the class in --class (e.g. --class woman)",
        )
    return value


def safe_stem(rel_no_suffix: str) -> str:
    """A portable file stem: ASCII letters, digits, ``._-``; folders joined with ``_``."""
    text = unicodedata.normalize("NFKD", rel_no_suffix)
    text = text.encode("ascii", "ignore").decode("ascii")
    parts = [_SAFE.sub("_", p).strip("._-") for p in text.split("/")]
    stem = "_".join(p for p in parts if p)
    stem = re.sub(r"_+", "_", stem)[:MAX_STEM].strip("._-")
    return stem or "image"


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def assign_stems(rels: list[str]) -> dict[str, str]:
    """Map each relative path (within one concept) to a unique, stable output stem.

    Stems that would collide (case-insensitively, so the output also works on Windows and
    macOS) all get a short hash of their relative path appended; the result depends only on the
    set of inputs, not on the order they were listed in.
    """
    base = {r: safe_stem(r.rsplit(".", 1)[0] if "." in r.rsplit("/", 1)[-1] else r) for r in rels}
    groups: dict[str, list[str]] = {}
    for r, s in base.items():
        groups.setdefault(s.lower(), []).append(r)
    out: dict[str, str] = {}
    for members in groups.values():
        if len(members) == 1:
            out[members[0]] = base[members[0]]
        else:
            for r in members:
                out[r] = f"{base[r][: MAX_STEM - 9]}_{_short_hash(r)}"
    return out


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in {"__MACOSX", "Thumbs.db", "desktop.ini"}


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            found.append(Path(dirpath) / name)
    return found


def _scan_concept(
    source: Path, root: Path, folder: str, trigger: str | None, class_word: str | None,
    caption_ext: str, kohya_repeats: int | None = None,
) -> ConceptSource:  # fmt: skip
    cap_ext = caption_ext.lower()
    images: list[tuple[Path, str]] = []
    captions: dict[tuple[str, str], Path] = {}  # (dir, stem lower) → caption path
    ignored: list[tuple[str, str]] = []
    for path in _walk(root):
        rel = path.relative_to(source).as_posix()
        rel_parts = path.relative_to(root).parts
        if any(_is_hidden(p) for p in rel_parts):
            ignored.append((rel, "hidden file"))
            continue
        if not path.is_file():
            ignored.append((rel, "not a regular file"))
            continue
        suffix = path.suffix.lower()
        if suffix in RAW_IMAGE_EXTENSIONS:
            images.append((path, rel))
        elif suffix == cap_ext:
            captions[(str(path.parent), path.stem.lower())] = path
        else:
            ignored.append((rel, f"not an image ({path.suffix or 'no extension'})"))
    local = {rel: path.relative_to(root).as_posix() for path, rel in images}
    stems = assign_stems(list(local.values()))
    used_captions: set[Path] = set()
    out: list[SourceImage] = []
    for path, rel in images:
        stem = stems[local[rel]]
        cap = captions.get((str(path.parent), path.stem.lower()))
        if cap is not None:
            used_captions.add(cap)
        st = path.stat()
        out.append(SourceImage(path, rel, st.st_size, st.st_mtime_ns, cap, stem))
    orphans = tuple(sorted(p.relative_to(source).as_posix() for p in captions.values() if p not in used_captions))
    return ConceptSource(folder, root, trigger, class_word, tuple(out), orphans, tuple(ignored), kohya_repeats)


def _has_image(folder: Path) -> bool:
    for path in _walk(folder):
        rel = path.relative_to(folder).parts
        if not any(_is_hidden(p) for p in rel) and path.suffix.lower() in RAW_IMAGE_EXTENSIONS:
            return True
    return False


def parse_concept_folder(name: str) -> tuple[str, str | None, int | None]:
    """``alice`` / ``alice woman`` / ``10_alice woman`` → (trigger, class or None, repeats or None)."""
    m = KOHYA_FOLDER.match(name)
    repeats = int(m["repeats"]) if m else None
    tokens = (m["tokens"] if m else name).split()
    if not tokens:
        return name, None, repeats
    return tokens[0], (" ".join(tokens[1:]) or None), repeats


def check_source_dir(source: Path) -> Path:
    if not source.exists():
        raise DatasetError(f"dataset folder {source} does not exist", fix="check the path (DIR argument)")
    if not source.is_dir():
        raise DatasetError(f"{source} is a file, not a folder", fix="pass the folder that holds the images")
    return source.resolve()


def discover(
    source: Path,
    *,
    caption_ext: str = ".txt",
    trigger: str | None = None,
    class_word: str | None = None,
    require_trigger: bool = True,
) -> Discovery:
    """Find the concepts of ``source``.

    With ``trigger`` (or a kohya-named ``source`` such as ``10_ohwx woman``) the whole tree is one
    concept. Otherwise each sub-folder is a concept; with ``require_trigger=False`` (inspect) a
    folder with images at its top is one concept without a trigger.
    """
    source = check_source_dir(source)
    caption_ext = normalise_caption_ext(caption_ext)
    if class_word is not None:
        class_word = check_token(class_word, "class", "--class")
    top_images = [
        p for p in sorted(source.iterdir())
        if p.is_file() and not _is_hidden(p.name) and p.suffix.lower() in RAW_IMAGE_EXTENSIONS
    ]  # fmt: skip
    subdirs = [p for p in sorted(source.iterdir()) if p.is_dir() and not _is_hidden(p.name) and _has_image(p)]
    if not top_images and not subdirs:
        raise DatasetError(
            f"no images in {source} (looked for {', '.join(sorted(RAW_IMAGE_EXTENSIONS))})",
            fix="point DIR at the folder that holds your images",
        )

    if trigger is not None:
        trigger = check_token(trigger, "trigger", "--trigger")
        c = _scan_concept(source, source, "", trigger, class_word, caption_ext)
        return Discovery(source, False, (c,))

    own = KOHYA_FOLDER.match(source.name)
    if top_images and own:
        t, cls, reps = parse_concept_folder(source.name)
        t = check_token(t, "trigger", f"folder name {source.name!r}")
        c = _scan_concept(source, source, "", t, class_word or cls, caption_ext, reps)
        return Discovery(source, False, (c,), (f"trigger {t!r} taken from the folder name {source.name!r}",))
    if top_images:
        if require_trigger:
            raise DatasetError(
                f"{source} holds images at its top, so it is one concept, and no trigger was given",
                fix="pass --trigger TOKEN (a rare word, e.g. --trigger ohwx); for several concepts put each "
                "in its own sub-folder named after its trigger (DIR/alice/, DIR/bob/)",
            )
        c = _scan_concept(source, source, "", None, class_word, caption_ext)
        notes = ("sub-folders are merged into the one concept",) if subdirs else ()
        return Discovery(source, False, (c,), notes)

    concepts: list[ConceptSource] = []
    for d in subdirs:
        t, cls, reps = parse_concept_folder(d.name)
        where = f"concept folder {d.name!r}"
        t = check_token(t, "trigger", where)
        cls = check_token(cls, "class", where) if cls else class_word
        concepts.append(_scan_concept(source, d, d.name, t, cls, caption_ext, reps))
    seen: dict[str, str] = {}
    for c in concepts:
        assert c.trigger is not None
        key = f"{c.trigger} {c.class_word or ''}".lower()
        if key in seen:
            raise DatasetError(
                f"concept folders {seen[key]!r} and {c.folder!r} give the same trigger and class",
                fix="merge them into one folder or rename one",
            )
        seen[key] = c.folder
    notes = () if len(concepts) > 1 else (f"one concept, trigger {concepts[0].trigger!r} from its folder name",)
    return Discovery(source, len(concepts) > 1, tuple(concepts), notes)
