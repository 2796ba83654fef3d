"""Duplicates: exact (same file bytes, SHA-256) and near (64-bit perceptual hash, pHash).

pHash is our own ~20 lines on Pillow + numpy rather than the ``imagehash`` package: it is the
same algorithm (32×32 greyscale, 2-D DCT, 8×8 lowest frequencies against their median), it is
computed from the image the worker has already decoded, and it spares the scipy/PyWavelets
install. Near-duplicate search compares every pair with numpy XOR + popcount in blocks:
exact (no bucketing misses), and 10,000 hashes take well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

HASH_BITS = 64
DEFAULT_NEAR_DISTANCE = 6


@lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> Any:
    import numpy as np

    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0, :] = np.sqrt(1.0 / n)
    return m


def phash(im: Image) -> int:
    """64-bit perceptual hash of a Pillow image (any size, any mode)."""
    import numpy as np
    from PIL import Image as PILImage

    factor = min(im.size) // 128
    if factor >= 2 and im.mode in ("RGB", "RGBX", "L"):
        im = im.reduce(factor)
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    g = im.convert("L").resize((32, 32), PILImage.Resampling.LANCZOS)
    a = np.asarray(g, dtype=np.float64)
    d = _dct_matrix(32)
    low = (d @ a @ d.T)[:8, :8].ravel()
    bits = low > np.median(low)
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_pairs(hashes: Sequence[int], max_distance: int) -> list[tuple[int, int, int]]:
    """All index pairs (i < j) whose hashes differ in at most ``max_distance`` bits, with the distance."""
    import numpy as np

    n = len(hashes)
    if n < 2 or max_distance < 0:
        return []
    arr = np.array([h & 0xFFFF_FFFF_FFFF_FFFF for h in hashes], dtype=np.uint64)
    popcount: Callable[[Any], Any]
    if hasattr(np, "bitwise_count"):
        popcount = np.bitwise_count
    else:  # numpy < 2.0
        table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

        def popcount(x: Any) -> Any:
            return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)

    block = max(1, 4_000_000 // n)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        rows = arr[start : start + block]
        dist = popcount(rows[:, None] ^ arr[None, start:])  # (rows, n - start)
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # upper triangle: column start+jj after row start+ii
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist(), strict=True):
            pairs.append((start + i, start + j, int(dist[i, j])))
    return pairs


Rank = tuple[int, ...]


def keep_rank(captioned: bool, pixels: int, file_size: int, name: str) -> Rank:
    """Which of two duplicates to keep (higher wins): the captioned one (a caption is never
    lost to a duplicate), then the larger image, then the plainer name (``photo.jpg`` over
    ``photo copy.jpg`` / ``photo (1).jpg``: shorter, then fewer non-letters)."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    odd = sum(1 for ch in stem if not ch.isalnum())
    return (int(captioned), pixels, file_size, -len(stem), -odd)


@dataclass(frozen=True)
class Drop:
    index: int
    kept: int  # index of the image kept instead
    kind: str  # "exact" | "near"
    distance: int = 0


def find_duplicates(
    sha256: Sequence[str],
    hashes: Sequence[int | None],
    rank: Sequence[Rank],
    max_distance: int,
) -> list[Drop]:
    """Which images to drop so one of each duplicate group stays.

    ``rank[i]`` orders images (``keep_rank``: captioned, pixels, file size, plainer name): of a
    group the highest rank stays, ties go to the lower index (the caller passes images sorted
    by path, so the result is stable). Exact duplicates (same SHA-256) first; then
    near-duplicates among what is left, grouped transitively (union-find) over pairs within
    ``max_distance`` (a negative distance turns near-duplicate search off).
    """
    n = len(sha256)
    drops: list[Drop] = []
    by_sha: dict[str, list[int]] = {}
    for i in range(n):
        by_sha.setdefault(sha256[i], []).append(i)
    alive: list[int] = []
    for members in by_sha.values():
        best = max(members, key=lambda i: (rank[i], -i))
        alive.append(best)
        drops += [Drop(i, best, "exact") for i in members if i != best]
    alive.sort()

    cand = [i for i in alive if hashes[i] is not None]
    cand_hashes = [int(hashes[i] or 0) for i in cand]
    parent = list(range(len(cand)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in near_pairs(cand_hashes, max_distance):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for k in range(len(cand)):
        groups.setdefault(find(k), []).append(k)
    for members in groups.values():
        if len(members) < 2:
            continue
        best = max(members, key=lambda k: (rank[cand[k]], -cand[k]))
        for k in members:
            if k != best:
                d = hamming(cand_hashes[k], cand_hashes[best])
                drops.append(Drop(cand[k], cand[best], "near", d))
    # exact duplicates of a near-duplicate loser point at the image actually kept
    kept_of = {d.index: d.kept for d in drops if d.kind == "near"}
    drops = [Drop(d.index, kept_of.get(d.kept, d.kept), d.kind, d.distance) for d in drops]
    return sorted(drops, key=lambda d: d.index)
