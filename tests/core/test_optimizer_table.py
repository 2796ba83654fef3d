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
