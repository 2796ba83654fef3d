"""``OUT/manifest.json``: source → output for every image, with every action taken.

It is also prepare's cache: a re-run reuses an image's earlier output when the source file
(path, size, mtime) and the image settings fingerprint are unchanged, so it skips the decode.
The file holds no timestamps: the same input gives the same manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.dataset.images import ImageResult, SourceFacts
from lorakit.fs import atomic_write

MANIFEST_NAME = "manifest.json"
TOOL = "lorakit dataset prepare"
FORMAT_VERSION = 1


@dataclass
class ImageRecord:
    source: str  # relative to the source folder (POSIX)
    concept: str  # output folder of its concept ("" when dropped before one was named)
    status: str  # kept | dropped | broken
    reason: str | None = None
    output: str | None = None  # relative to OUT
    caption: str | None = None  # relative to OUT
    caption_source: str | None = None  # relative to the source folder
    actions: list[str] = field(default_factory=list)
    caption_actions: list[str] = field(default_factory=list)
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    phash: str | None = None  # 16 hex digits
    source_info: dict[str, Any] | None = None  # SourceFacts
    out_width: int = 0
    out_height: int = 0
    copied: bool = False
    flags: list[str] = field(default_factory=list)  # e.g. "small"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "status": self.status,
            "concept": self.concept,
            "output": self.output,
            "caption": self.caption,
            "caption_source": self.caption_source,
            "reason": self.reason,
            "actions": self.actions,
            "caption_actions": self.caption_actions,
            "flags": self.flags,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "phash": self.phash,
            "source_info": self.source_info,
            "out_width": self.out_width,
            "out_height": self.out_height,
            "copied": self.copied,
        }
        return d


def facts_dict(facts: SourceFacts | None) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {
        "format": facts.format,
        "mode": facts.mode,
        "width": facts.width,
        "height": facts.height,
        "frames": facts.frames,
        "orientation": facts.orientation,
        "bit_depth": facts.bit_depth,
        "has_alpha": facts.has_alpha,
        "icc": facts.icc,
        "jpeg_subsampling": facts.jpeg_subsampling,
    }


def _facts_from(d: Any) -> SourceFacts | None:
    if not isinstance(d, dict):
        return None
    try:
        return SourceFacts(
            str(d["format"]), str(d["mode"]), int(d["width"]), int(d["height"]), int(d["frames"]),
            int(d["orientation"]), int(d["bit_depth"]), bool(d["has_alpha"]),
            None if d.get("icc") is None else str(d["icc"]), int(d["jpeg_subsampling"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CachedImage:
    """What an earlier run learned about one source file."""

    size: int
    mtime_ns: int
    result: ImageResult  # index 0; the caller re-numbers it
    output: Path | None  # the earlier output file, when there is one


def load_cache(out_dir: Path, fingerprint: str) -> dict[str, CachedImage]:
    """Source rel path → cached analysis, from an earlier manifest with the same fingerprint."""
    data = read_manifest(out_dir)
    if data is None or data.get("settings", {}).get("fingerprint") != fingerprint:
        return {}
    cache: dict[str, CachedImage] = {}
    for rec in data.get("images", []):
        try:
            status = rec["status"]
            facts = _facts_from(rec.get("source_info"))
            ph = rec.get("phash")
            ok = status != "broken"
            if ok and facts is None:
                continue
            out = rec.get("output")
            out_path = out_dir / out if out else None
            if out_path is not None and not out_path.is_file():
                out_path = None
            image_actions = [a for a in rec.get("actions", []) if not str(a).startswith("reused")]
            result = ImageResult(
                index=0, ok=ok, sha256=str(rec["sha256"]), file_size=int(rec["size"]),
                error=rec.get("reason") if not ok else None, facts=facts,
                phash=int(ph, 16) if ph else None,
                output=out_path.name if out_path else None,
                out_width=int(rec.get("out_width", 0)), out_height=int(rec.get("out_height", 0)),
                actions=tuple(image_actions), copied=bool(rec.get("copied", False)),
            )  # fmt: skip
            cache[str(rec["source"])] = CachedImage(int(rec["size"]), int(rec["mtime_ns"]), result, out_path)
        except (KeyError, TypeError, ValueError):
            continue
    return cache


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest of a folder prepare wrote, or None (missing, unreadable or not ours)."""
    path = out_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        return None
    return data


def write_manifest(out_dir: Path, payload: dict[str, Any]) -> None:
    body = {"tool": TOOL, "format_version": FORMAT_VERSION, **payload}
    atomic_write(out_dir / MANIFEST_NAME, durable=False, data=json.dumps(body, indent=2, ensure_ascii=False) + "\n")
