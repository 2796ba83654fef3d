"""Measured runs kept as data: peak VRAM and speed of real sd-scripts runs.

Three files under ``gpu/data/`` are read:

- ``vram_calibration.json``: the calibration grid measured on the GPU machine (the reference for
  the ±10 % target);
- ``throughput.json``: the benchmark results (s/step, images/s, peak GiB per config);
- ``field_notes_measurements.json``: the figures of shared/docs/field-notes.md, transcribed.

The first two are written by the benchmark driver, whose exact key names this module does not
dictate: a row's config may be nested like a lorakit spec (``training.batch_size``), dotted, flat
(``batch_size``) or in sd-scripts' own words (``train_batch_size``, ``network_dim``,
``optimizer_type: AdamW8bit``, ``mixed_precision``). Rows without a peak or a known model family
are skipped with a reason, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lorakit import families
from lorakit.gpu.estimate import DATA_DIR, GIB, TrainShape

CALIBRATION_FILE = DATA_DIR / "vram_calibration.json"
THROUGHPUT_FILE = DATA_DIR / "throughput.json"
FIELD_NOTES_FILE = DATA_DIR / "field_notes_measurements.json"


@dataclass(frozen=True)
class Measurement:
    id: str
    source: str  # "calibration" | "throughput" | "field-notes"
    shape: TrainShape
    gpu: str
    peak_gib: float | None = None
    s_per_step: float | None = None
    images_per_s: float | None = None
    sd_scripts_commit: str = ""
    date: str = ""
    peak_train_gib: float | None = None  # from the first training step on, when recorded
    peak_setup_gib: float | None = None  # before the first step (loading, caching, set-up)

    @property
    def img_per_s(self) -> float | None:
        if self.images_per_s:
            return self.images_per_s
        if self.s_per_step:
            return self.shape.batch_size / self.s_per_step
        return None


# ---------------------------------------------------------------------------------------------
# config normalisation

_FAMILY_WORDS = {word: f.name for f in families.FAMILIES.values() for word in (f.name, *f.measurement_words)}
_OPTIMIZER_WORDS = {
    "adamw": "adamw",
    "adamw8bit": "adamw8bit",
    "pagedadamw8bit": "paged-adamw8bit",
    "paged-adamw8bit": "paged-adamw8bit",
    "adafactor": "adafactor",
    "prodigy": "prodigy",
    "dadaptadam": "dadaptadam",
    "lion": "lion",
    "lion8bit": "lion8bit",
    "sgd": "sgd",
    "sgdnesterov": "sgd",
}
# key (last dotted part, lower case) → TrainShape field
_ALIASES = {
    "family": "family",
    "model_family": "family",
    "model": "family",
    "batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "bs": "batch_size",
    "batch": "batch_size",
    "network": "network_kind",
    "cache_te": "cache_text_encoder_outputs",
    "dim": "dim",
    "rank": "dim",
    "network_dim": "dim",
    "conv_dim": "conv_dim",
    "kind": "network_kind",
    "network_kind": "network_kind",
    "optimizer": "optimizer",
    "optimizer_type": "optimizer",
    "name": "optimizer",  # optimizer.name (only read under an optimizer section)
    "precision": "precision",
    "mixed_precision": "precision",
    "full_bf16": "full_bf16",
    "fp8_base": "fp8_base",
    "gradient_checkpointing": "gradient_checkpointing",
    "gc": "gradient_checkpointing",
    "cache_latents": "cache_latents",
    "cache_text_encoder_outputs": "cache_text_encoder_outputs",
    "unet_only": "unet_only",
    "network_train_unet_only": "unet_only",
    "no_half_vae": "no_half_vae",
    "attention": "attention",
    "blocks_to_swap": "blocks_to_swap",
    "resolution": "resolution",
}
_SHAPE_FIELDS = {f.name for f in fields(TrainShape)}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out |= _flatten(v, key + ".")
        else:
            out[key] = v
    return out


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _resolution(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[-1])
    if isinstance(v, str):
        parts = [p for p in v.replace("x", ",").split(",") if p.strip()]
        return int(parts[0]), int(parts[-1])
    return int(v), int(v)


def shape_from_config(config: Mapping[str, Any]) -> TrainShape:
    """A TrainShape from a measured row's config, whatever words it uses (see module doc)."""
    flat = _flatten(config)
    values: dict[str, Any] = {}
    for dotted, raw in flat.items():
        parts = dotted.lower().split(".")
        key = parts[-1]
        if key == "name" and (len(parts) < 2 or parts[-2] != "optimizer"):
            continue
        if key == "model" and isinstance(raw, str) and raw.lower() not in _FAMILY_WORDS:
            continue
        target = _ALIASES.get(key)
        if target is None and key in _SHAPE_FIELDS:
            target = key
        if target is None:
            if key == "network_module" and isinstance(raw, str) and "lycoris" in raw:
                values.setdefault("network_kind", "locon")
            elif key == "algo":
                values["network_kind"] = str(raw).lower()
            elif key in ("sdpa", "xformers") and _bool(raw):
                values["attention"] = key
            elif key == "sdpa" and "attention" not in values:
                values["attention"] = "none"
            continue
        if raw is None:
            continue
        if target == "family":
            fam = _FAMILY_WORDS.get(str(raw).lower())
            if fam:
                values["family"] = fam
        elif target == "resolution":
            values["width"], values["height"] = _resolution(raw)
        elif target == "optimizer":
            values["optimizer"] = _OPTIMIZER_WORDS.get(str(raw).lower().replace("_", ""), str(raw).lower())
        elif target in ("batch_size", "dim", "conv_dim", "blocks_to_swap", "width", "height", "dataloader_workers"):
            values[target] = int(raw)
        elif target in ("precision", "attention", "network_kind"):
            values[target] = str(raw).lower()
        else:
            values[target] = _bool(raw)
    if "family" not in values:
        raise ValueError("no model family in the row's config")
    return TrainShape(**values)


_PEAK_KEYS_GIB = ("peak_gib", "peak_vram_gib", "peak_mem_gib", "vram_gib")
_PEAK_KEYS_MIB = ("peak_mib", "peak_vram_mib")


def _peak(row: Mapping[str, Any]) -> float | None:
    for key in _PEAK_KEYS_GIB:
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    for key in _PEAK_KEYS_MIB:
        if isinstance(row.get(key), (int, float)):
            return float(row[key]) / 1024
    if isinstance(row.get("peak_bytes"), (int, float)):
        return float(row["peak_bytes"]) / GIB
    return None


def _num(row: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        v = row.get(key)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def _rows(data: Any) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    if isinstance(data, list):
        return [r for r in data if isinstance(r, Mapping)], {}
    if isinstance(data, Mapping):
        keys = ["rows", "results", "runs", "grid", "measurements", "configs", "jobs", "entries", "data"]
        keys += [k for k, v in data.items() if isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v)]
        for key in keys:
            if isinstance(data.get(key), list):
                common = {k: v for k, v in data.items() if not isinstance(v, (list, dict))}
                if isinstance(data.get("gpu"), Mapping):
                    common["gpu"] = data["gpu"].get("name", "")
                return [r for r in data[key] if isinstance(r, Mapping)], common
    return [], {}


def parse_rows(data: Any, source: str) -> tuple[list[Measurement], list[str]]:
    """Measurements from one file's JSON, and why any row was skipped."""
    rows, common = _rows(data)
    out: list[Measurement] = []
    skipped: list[str] = []
    for i, row in enumerate(rows):
        merged = {**common, **row}
        rid = str(merged.get("id") or merged.get("name") or f"{source}[{i}]")
        cfg = next(
            (merged[k] for k in ("config", "shape", "spec", "settings") if isinstance(merged.get(k), Mapping)), None
        )
        try:
            shape = shape_from_config(cfg if cfg is not None else merged)
        except (ValueError, TypeError) as exc:
            skipped.append(f"{rid}: {exc}")
            continue
        status = str(merged.get("status", "ok")).lower()
        peak = _peak(merged) if status in ("ok", "pass", "passed", "done", "") else None
        gpu = merged.get("gpu", "")
        if isinstance(gpu, Mapping):
            gpu = gpu.get("name", "")
        out.append(
            Measurement(
                id=rid,
                source=source,
                shape=shape,
                gpu=str(gpu),
                peak_gib=peak,
                s_per_step=_num(merged, "s_per_step", "sec_per_step", "seconds_per_step", "steady_s_per_step"),
                images_per_s=_num(merged, "images_per_s", "img_per_s", "images_per_sec"),
                sd_scripts_commit=str(merged.get("sd_scripts_commit", "")),
                date=str(merged.get("date", "")),
                peak_train_gib=_num(merged, "peak_train_gib") if peak is not None else None,
                peak_setup_gib=_num(merged, "peak_setup_gib") if peak is not None else None,
            )
        )
    return out, skipped


def load_file(path: Path, source: str) -> tuple[list[Measurement], list[str]]:
    if not path.is_file():
        return [], []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [], [f"{path.name}: unreadable ({exc})"]
    return parse_rows(data, source)


def load_all(data_dir: Path | None = None) -> tuple[list[Measurement], list[str]]:
    d = data_dir or DATA_DIR
    out: list[Measurement] = []
    skipped: list[str] = []
    for name, source in (
        (CALIBRATION_FILE.name, "calibration"),
        (THROUGHPUT_FILE.name, "throughput"),
        (FIELD_NOTES_FILE.name, "field-notes"),
    ):
        rows, why = load_file(d / name, source)
        out += rows
        skipped += why
    return out, skipped


def with_peak(rows: Iterable[Measurement]) -> list[Measurement]:
    """Rows with a peak, each measured run once (bench rows are repeated across the files)."""
    seen: set[tuple[TrainShape, str, float]] = set()
    out = []
    for r in rows:
        if r.peak_gib is None:
            continue
        key = (r.shape, r.gpu, round(r.peak_gib, 2))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
