"""The table of common GPUs (``gpu/data/cards.json``): memory, bandwidth and 16-bit tensor
TFLOPS as published (docs/research/gpu-cards.md), and how a name finds its card.

A name matches a card when, lower-cased with the words ``nvidia``, ``geforce`` and ``tesla`` and
every character that is not a letter or digit dropped, it equals one of the card's aliases
treated the same way: ``NVIDIA GeForce RTX 3090``, ``rtx3090`` and ``3090`` all find the RTX 3090,
while ``RTX 3090 Ti`` and ``RTX 4090 Laptop GPU`` find nothing (another chip; never a prefix match).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from lorakit.gpu.estimate import DATA_DIR

CARDS_FILE = DATA_DIR / "cards.json"
CONTEXT_GIB = 0.6  # what the CUDA context takes of a card's memory before torch allocates anything


@dataclass(frozen=True)
class Card:
    name: str
    aliases: tuple[str, ...]
    memory_mib: int
    bandwidth_gbs: float
    tflops16: float  # dense FP16/BF16 tensor TFLOPS, FP32 accumulate
    arch: str
    cc: str
    segment: str  # geforce | workstation | datacenter | datacenter-pcie
    watts: int

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def usable_gib(self) -> float:
        """What a training can allocate: the card's memory less the CUDA context."""
        return self.memory_gib - CONTEXT_GIB

    @property
    def bf16(self) -> bool:
        return float(self.cc) >= 8.0

    @property
    def consumer_stack(self) -> bool:
        """GeForce and workstation cards: the community figures' efficiency applies."""
        return self.segment in ("geforce", "workstation")


def _norm(name: str) -> str:
    words = re.sub(r"\b(nvidia|geforce|tesla)\b", " ", name.lower())
    return re.sub(r"[^a-z0-9]", "", words)


@cache
def cards() -> tuple[Card, ...]:
    data = json.loads(CARDS_FILE.read_text(encoding="utf-8"))
    return tuple(
        Card(
            name=c["name"],
            aliases=tuple(c["aliases"]),
            memory_mib=int(c["memory_mib"]),
            bandwidth_gbs=float(c["bandwidth_gbs"]),
            tflops16=float(c["tflops16"]),
            arch=c["arch"],
            cc=str(c["cc"]),
            segment=c["segment"],
            watts=int(c["watts"]),
        )
        for c in data["cards"]
    )


@cache
def reference() -> Card:
    """The card the speed curves were measured on (the others are carried from it)."""
    name = json.loads(CARDS_FILE.read_text(encoding="utf-8"))["reference"]
    found = find(name)
    assert found is not None
    return found


def known_names() -> list[str]:
    return [c.name for c in cards()]


def find(name: str | None) -> Card | None:
    """The card a name (NVML's, or a user's words) means; None when it is not in the table."""
    if not name:
        return None
    key = _norm(name)
    for c in cards():
        if key == _norm(c.name) or any(key == _norm(a) for a in c.aliases):
            return c
    return None


def nearest_by_memory(gib: float) -> Card:
    """The card whose memory is closest to ``gib`` (ratio, not difference)."""
    import math

    return min(cards(), key=lambda c: (abs(math.log(c.memory_gib / gib)), -c.tflops16))


def lookup(name: str) -> Card:
    """``--card NAME``: the card, or a ConfigError that lists the known names."""
    card = find(name)
    if card is None:
        from lorakit.errors import ConfigError

        raise ConfigError(
            [f"--card {name!r}: not a card lorakit knows"],
            fix="use one of: " + ", ".join(known_names()) + " (or --vram SIZE for a card of that size)",
        )
    return card


__all__ = ["CONTEXT_GIB", "Card", "cards", "find", "known_names", "lookup", "nearest_by_memory", "reference"]
