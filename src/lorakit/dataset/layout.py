"""The kohya layout prepare writes: ``<repeats>_<trigger> <class>/`` folders and ``dataset.toml``.

The TOML follows sd-scripts' ``library/config_util.py`` schema (general → datasets → subsets):
``[general]`` caption_extension (always ".txt": sd-scripts' own default ``.caption`` would
silently ignore our captions), ``[[datasets]]`` resolution, batch_size and buckets,
``[[datasets.subsets]]`` one per concept with image_dir, num_repeats, class_tokens, keep_tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorakit.config.schema import TrainingSection
from lorakit.toml_out import toml_string

__all__ = [
    "CAPTION_EXTENSION",
    "RegSubset",
    "Subset",
    "class_tokens",
    "dataset_toml",
    "folder_name",
    "reg_subset_lines",
    "toml_string",
]

CAPTION_EXTENSION = ".txt"


def class_tokens(trigger: str, class_word: str | None) -> str:
    return f"{trigger} {class_word}" if class_word else trigger


def folder_name(repeats: int, trigger: str, class_word: str | None) -> str:
    return f"{repeats}_{class_tokens(trigger, class_word)}"


@dataclass(frozen=True)
class Subset:
    image_dir: Path
    num_repeats: int
    class_tokens: str
    keep_tokens: int


@dataclass(frozen=True)
class RegSubset:
    image_dir: Path
    num_repeats: int
    class_tokens: str


def reg_subset_lines(reg: RegSubset) -> list[str]:
    """The regularization subset: sd-scripts' DreamBooth subset with ``is_reg = true``
    (library/config_util.py); reg images without a caption get ``class_tokens``."""
    return [
        "  [[datasets.subsets]]",
        f"  image_dir = {toml_string(str(reg.image_dir))}",
        "  is_reg = true",
        f"  num_repeats = {reg.num_repeats}",
        f"  class_tokens = {toml_string(reg.class_tokens)}",
        "",
    ]


def dataset_toml(subsets: Sequence[Subset], *, resolution: int, batch_size: int, reg: RegSubset | None = None) -> str:
    buckets = TrainingSection()  # the spec's bucket defaults; the largest bucket never below the resolution
    lines = [
        "# written by lorakit dataset prepare: sd-scripts --dataset_config",
        "[general]",
        f"caption_extension = {toml_string(CAPTION_EXTENSION)}",
        "",
        "[[datasets]]",
        f"resolution = {resolution}",
        f"batch_size = {batch_size}",
        "enable_bucket = true",
        f"min_bucket_reso = {buckets.min_bucket_reso}",
        f"max_bucket_reso = {max(buckets.max_bucket_reso, resolution)}",
        f"bucket_reso_steps = {buckets.bucket_reso_steps}",
        "",
    ]
    for s in subsets:
        lines += [
            "  [[datasets.subsets]]",
            f"  image_dir = {toml_string(str(s.image_dir))}",
            f"  num_repeats = {s.num_repeats}",
            f"  class_tokens = {toml_string(s.class_tokens)}",
            f"  keep_tokens = {s.keep_tokens}",
            "",
        ]
    if reg is not None:
        lines += reg_subset_lines(reg)
    return "\n".join(lines)
