"""The sd-scripts ``--dataset_config`` TOML, written from the spec and the DatasetPlan.

Layout follows sd-scripts' config_util: ``[general]`` (subset keys every subset inherits),
``[[datasets]]`` (resolution, batch size, buckets), ``[[datasets.subsets]]`` (one per
concept: image_dir, num_repeats, class_tokens). The caption extension is always written:
sd-scripts' default is ``.caption``, which silently ignores ``.txt`` captions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lorakit.config.schema import TrainSpec
from lorakit.dataset.plan import DatasetPlan
from lorakit.toml_out import toml_table


def _table(values: Mapping[str, Any], indent: str = "") -> list[str]:
    return toml_table(values, indent)


def dataset_toml(spec: TrainSpec, plan: DatasetPlan) -> str:
    t = spec.training
    general = {
        "caption_extension": plan.caption_extension,
        "shuffle_caption": t.shuffle_caption,
        "keep_tokens": t.keep_tokens,
        "flip_aug": t.flip_aug,
    }
    dataset: dict[str, Any] = {
        "resolution": list(t.size),
        "batch_size": t.batch_size,
        "enable_bucket": t.enable_bucket,
    }
    if t.enable_bucket:
        dataset |= {
            "min_bucket_reso": t.min_bucket_reso,
            "max_bucket_reso": t.max_bucket_reso,
            "bucket_reso_steps": t.bucket_reso_steps,
        }
        if t.bucket_no_upscale:
            dataset["bucket_no_upscale"] = True
    lines = ["# written by lorakit: sd-scripts --dataset_config", "[general]", *_table(general), ""]
    lines += ["[[datasets]]", *_table(dataset), ""]
    for c in plan.concepts:
        if c.images == 0:
            continue
        subset = {
            "image_dir": str(c.folder.resolve()),
            "num_repeats": c.repeats,
            "class_tokens": c.class_tokens or None,
            "flip_aug": c.flip_aug,
            # a prepared folder's captions start "trigger, class": keep both in place when shuffled
            "keep_tokens": c.keep_tokens if c.keep_tokens and c.keep_tokens > t.keep_tokens else None,
        }
        lines += ["  [[datasets.subsets]]", *_table(subset, "  "), ""]
    lines += reg_subset_lines(plan)
    return "\n".join(lines)


def reg_subset_lines(plan: DatasetPlan) -> list[str]:
    """The regularization subset (sd-scripts config_util: a DreamBooth subset with ``is_reg = true``;
    its images without a caption get ``class_tokens``); [] without regularization images."""
    r = plan.regularization
    if r is None or r.images == 0:
        return []
    subset = {
        "image_dir": str(r.folder.resolve()),
        "is_reg": True,
        "num_repeats": r.repeats,
        "class_tokens": r.class_tokens or None,
    }
    return ["  [[datasets.subsets]]", *_table(subset, "  "), ""]
