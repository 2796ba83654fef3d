"""Captions: decode, normalise, put the trigger first, and tag statistics. Pure functions.

A caption is comma-separated tags (sentences work too: a sentence is one "tag"). Normalising
strips a byte-order mark, turns CRLF/CR and line breaks into tag separators (sd-scripts reads
only the first line of a caption file), collapses whitespace inside tags, drops empty tags and
repeats (case-insensitively, first spelling wins). Then the trigger goes first (added when
missing, moved when elsewhere) and the class word, when given, second; ``keep_tokens`` in the
dataset TOML keeps those two in place when sd-scripts shuffles captions.
"""

from __future__ import annotations

import codecs
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_TAGS_ADVISED = 20


@dataclass(frozen=True)
class Caption:
    tags: tuple[str, ...]
    actions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return ", ".join(self.tags)


def decode_caption(data: bytes) -> tuple[str, list[str]]:
    """Bytes of a caption file → text, and what had to be done to read it."""
    notes: list[str] = []
    if data.startswith(codecs.BOM_UTF8):
        notes.append("stripped UTF-8 BOM")
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        notes.append("converted UTF-16 to UTF-8")
        return data.decode("utf-16"), notes
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
        notes.append("not UTF-8: read as Windows-1252")
    if "\r" in text:
        notes.append("CRLF line ends → LF")
    return text, notes


def split_tags(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    tags: list[str] = []
    for line in text.split("\n"):
        for raw in line.split(","):
            tag = " ".join(raw.split())
            if tag:
                tags.append(tag)
    return tags


def normalise(text: str, trigger: str | None, class_word: str | None, notes: list[str] | None = None) -> Caption:
    actions = list(notes or [])
    raw_lines = [ln for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if ln.strip()]
    if len(raw_lines) > 1:
        actions.append(f"joined {len(raw_lines)} lines into one")
    tags = split_tags(text)
    if any(" ".join(raw.split()) != raw.strip() for ln in raw_lines for raw in ln.split(",")):
        actions.append("collapsed whitespace")
    seen: set[str] = set()
    unique: list[str] = []
    for t in tags:
        key = t.casefold()
        if key not in seen:
            seen.add(key)
            unique.append(t)
    if len(unique) < len(tags):
        actions.append(f"removed {len(tags) - len(unique)} repeated tag(s)")

    lead: list[str] = []
    for word in (trigger, class_word):
        if word:
            lead.append(word)
    if lead:
        lead_keys = {w.casefold() for w in lead}
        if trigger and class_word:
            lead_keys.add(f"{trigger} {class_word}".casefold())
        rest = [t for t in unique if t.casefold() not in lead_keys]
        if trigger:
            present = [i for i, t in enumerate(unique) if t.casefold() == trigger.casefold()]
            if not present:
                actions.append("added trigger")
            elif present[0] != 0:
                actions.append("moved trigger first")
        if class_word and class_word.casefold() not in {t.casefold() for t in unique}:
            actions.append("added class")
        unique = lead + rest
    return Caption(tuple(unique), tuple(actions))


def caption_has_text(text: str, trigger: str | None = None, class_word: str | None = None) -> bool:
    """Whether a caption says anything beyond the trigger and class word: the one definition of
    an "empty caption" that ``inspect`` and ``prepare`` share (blank, only commas/whitespace, or
    only the trigger/class words is empty)."""
    lead = {w.casefold() for w in (trigger, class_word) if w}
    if trigger and class_word:
        lead.add(f"{trigger} {class_word}".casefold())
    return any(t.casefold() not in lead for t in split_tags(text))


def read_caption_text(path: Path) -> tuple[str, list[str]] | None:
    """A caption file's text and decode notes; None when it cannot be read."""
    try:
        return decode_caption(path.read_bytes())
    except OSError:
        return None


def trigger_caption(trigger: str | None, class_word: str | None) -> Caption:
    return Caption(tuple(w for w in (trigger, class_word) if w), ("caption from trigger (no caption file)",))


@dataclass(frozen=True)
class TagStats:
    captioned: int
    top: tuple[tuple[str, int], ...]
    over_limit: tuple[tuple[str, int], ...]  # (image, tag count) over MAX_TAGS_ADVISED
    on_every_image: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "captioned": self.captioned,
            "top": [{"tag": t, "images": n} for t, n in self.top],
            "over_limit": [{"image": i, "tags": n} for i, n in self.over_limit],
            "on_every_image": list(self.on_every_image),
        }


def tag_stats(
    captions: list[tuple[str, Caption]], trigger_words: set[str], *, top: int = 15, limit: int = MAX_TAGS_ADVISED
) -> TagStats:
    """Most common tags (trigger/class words left out), images with too many tags, and tags on every
    image (the guide: do not tag what is constant, the LoRA should learn it)."""
    skip = {w.casefold() for w in trigger_words}
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    over: list[tuple[str, int]] = []
    for name, cap in captions:
        own = [t for t in cap.tags if t.casefold() not in skip]
        for t in own:
            spelling.setdefault(t.casefold(), t)
        counts.update({t.casefold() for t in own})
        if len(own) > limit:
            over.append((name, len(own)))
    n = len(captions)
    every = tuple(sorted(spelling[k] for k, c in counts.items() if n >= 5 and c == n))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return TagStats(n, tuple((spelling[k], c) for k, c in ranked), tuple(over), every)
