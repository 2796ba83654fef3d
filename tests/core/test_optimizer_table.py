"""Every optimizer the schema accepts has a trainer flag, a memory model and an LR rule: a new
optimizer is one name in config/schema.py plus one row in each table, and this test says which
row is missing."""

from __future__ import annotations

from typing import get_args

import pytest

from lorakit.config.schema import ADAPTIVE_OPTIMIZERS, OptimizerName
from lorakit.gpu import estimate
from lorakit.gpu.fit import lr_factor
from lorakit.kohya.launch import OPTIMIZER_TYPES

NAMES = get_args(OptimizerName)


@pytest.mark.parametrize("name", NAMES)
def test_each_optimizer_has_a_flag_a_memory_model_and_an_lr_rule(name: str) -> None:
    assert OPTIMIZER_TYPES.get(name), f"{name}: no --optimizer_type in kohya/launch.py OPTIMIZER_TYPES"
    modelled = name in estimate._STATE_SLOTS or name in estimate._STATE_BYTES_8BIT or name == "adafactor"
    assert modelled, f"{name}: no optimizer-state term in gpu/estimate.py"
    factor = lr_factor(name, 1, 4)
    assert factor == (1.0 if name in ADAPTIVE_OPTIMIZERS else 4.0 if name == "sgd" else 2.0)


def test_the_tables_hold_no_unknown_optimizer() -> None:
    known = set(NAMES)
    assert set(OPTIMIZER_TYPES) == known
    assert set(estimate._STATE_SLOTS) | set(estimate._STATE_BYTES_8BIT) | {"adafactor"} == known
    assert known >= ADAPTIVE_OPTIMIZERS and estimate.ADAPTIVE_OPTIMIZERS is ADAPTIVE_OPTIMIZERS


def test_the_copies_of_spec_keys_are_real_spec_keys() -> None:
    """TrainShape → spec keys (gpu/fit.py) and the path keys resume makes absolute
    (run/resume.py, derived from the schema) name real TrainSpec settings."""
    from dataclasses import fields
    from pathlib import Path

    from lorakit.config.schema import TrainSpec
    from lorakit.gpu.estimate import TrainShape
    from lorakit.gpu.fit import SHAPE_SPEC_KEYS
    from lorakit.planning import flatten, spec_dump
    from lorakit.run.resume import PATH_KEYS

    spec_keys = set(flatten(spec_dump(TrainSpec())))
    shape_attrs = {f.name for f in fields(TrainShape)}
    for attr, key in SHAPE_SPEC_KEYS.items():
        assert attr in shape_attrs and key in spec_keys, (attr, key)
    assert ("model", "checkpoint") in PATH_KEYS and ("output", "folder") in PATH_KEYS
    for section, key in PATH_KEYS:
        assert f"{section}.{key}" in spec_keys
        assert TrainSpec.model_fields[section].annotation.model_fields[key].annotation in (Path, Path | None)  # type: ignore[union-attr]
