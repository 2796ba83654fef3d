"""After a successful run: check the final LoRA and copy it to the configured LoRA folders.

The check reads the safetensors header itself (8-byte little-endian length + JSON), so it
needs neither torch nor the tensors: the file must be complete (header + every tensor's byte
range inside the file), hold LoRA keys, and its ``ss_*`` metadata must match the spec
(``ss_network_module``, ``ss_network_dim``, ``ss_network_alpha``); for a plain LoRA the
down-projections must have rank ``network.dim`` and, with ``unet_only``, no text-encoder keys.

The copy never overwrites a different file: an identical file already there is left alone,
a different one keeps its name and the new file gets ``<stem>-2.safetensors`` (``-3`` ...).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.fs import atomic_copy

MAX_HEADER = 100 * 2**20  # safetensors' own limit


class HeaderError(ValueError):
    """The file is not a readable safetensors file."""


@dataclass(frozen=True)
class Expected:
    """What the spec says the LoRA must be."""

    module: str  # ss_network_module, e.g. networks.lora / networks.lora_sd3 / lycoris.kohya
    dim: int
    alpha: float
    unet_only: bool = False
    plain_lora: bool = True  # rank check only for sd-scripts' own LoRA modules


@dataclass
class LoraCheck:
    path: Path
    tensors: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_header(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(tensor name → {dtype, shape, data_offsets}, metadata) of a safetensors file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise HeaderError(f"{path} is {size} bytes: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise HeaderError(f"{path}: header length {n} does not fit the file ({size} bytes); truncated?")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"{path}: the header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeaderError(f"{path}: the header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    data_len = size - 8 - n
    tensors: dict[str, dict[str, Any]] = {}
    for name, info in header.items():
        if not isinstance(info, dict) or "data_offsets" not in info:
            raise HeaderError(f"{path}: tensor {name} has no data_offsets")
        start, end = info["data_offsets"]
        if not (0 <= start <= end <= data_len):
            raise HeaderError(f"{path}: tensor {name} lies outside the file (truncated?)")
        tensors[name] = info
    return tensors, {str(k): str(v) for k, v in meta.items()}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "None") else None
    except ValueError:
        return None


def verify_lora(path: Path, expected: Expected) -> LoraCheck:
    check = LoraCheck(path)
    if not path.is_file():
        check.problems.append(f"{path} does not exist")
        return check
    try:
        tensors, meta = read_header(path)
    except (HeaderError, OSError) as exc:
        check.problems.append(str(exc))
        return check
    check.tensors, check.metadata = len(tensors), meta
    p = check.problems
    lora_keys = [k for k in tensors if k.startswith(("lora_unet_", "lora_te", "lycoris_"))]
    if not lora_keys:
        p.append(f"{path.name} holds no LoRA weights (no lora_unet_* / lora_te* keys among {len(tensors)} tensors)")
    if meta.get("ss_network_module") != expected.module:
        p.append(f"ss_network_module is {meta.get('ss_network_module')!r}, the spec asks for {expected.module!r}")
    if meta.get("ss_network_dim") != str(expected.dim):
        p.append(f"ss_network_dim is {meta.get('ss_network_dim')!r}, the spec asks for network.dim={expected.dim}")
    alpha = _float(meta.get("ss_network_alpha"))
    if alpha is None or abs(alpha - expected.alpha) > 1e-6 * max(1.0, expected.alpha):
        p.append(f"ss_network_alpha is {meta.get('ss_network_alpha')!r}, the spec asks for {expected.alpha:g}")
    if expected.unet_only and any(k.startswith("lora_te") for k in tensors):
        p.append("the spec trains the U-Net only, but the file holds text-encoder (lora_te*) weights")
    if expected.plain_lora:
        ranks = {
            int(info["shape"][0])
            for k, info in tensors.items()
            if k.endswith("lora_down.weight") and len(info.get("shape", [])) == 2
        }
        if ranks and ranks != {expected.dim}:
            p.append(f"linear LoRA ranks are {sorted(ranks)}, expected {expected.dim}")
        alphas = [k for k in tensors if k.endswith(".alpha")]
        downs = [k for k in tensors if k.endswith("lora_down.weight")]
        if downs and len(alphas) != len(downs):
            p.append(f"{len(downs)} lora_down weights but {len(alphas)} alpha values")
    return check


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Copied:
    source: Path
    dest: Path
    action: str  # copied | identical | renamed (the name was taken by a different file)

    def describe(self) -> str:
        if self.action == "identical":
            return f"{self.dest} already holds this LoRA"
        if self.action == "renamed":
            return f"copied to {self.dest} ({self.dest.parent / self.source.name} is a different file, kept)"
        return f"copied to {self.dest}"


def copy_lora(src: Path, folder: Path) -> Copied:
    """Copy ``src`` into ``folder`` (created if missing) without overwriting a different file.
    The copy lands under a temp name first, then is renamed into place; its mode is the
    umask's usual one (never narrower than the source), so a ComfyUI run by another user can read it."""
    folder = folder.expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    action = "copied"
    n = 2
    while dest.exists():  # the name is taken: the same LoRA (done), or another file (next name)
        if dest.is_file() and dest.stat().st_size == src.stat().st_size and _digest(dest) == _digest(src):
            return Copied(src, dest, "identical")
        dest = folder / f"{src.stem}-{n}{src.suffix}"
        action = "renamed"
        n += 1
    atomic_copy(src, dest, clobber=False)  # never clobbers a file that appeared meanwhile
    return Copied(src, dest, action)
