"""Helpers for the captioning tests. The `caption` extra (onnxruntime, transformers, huggingface_hub),
`onnx` (dev extra) and torch are installed by .ci/run: in CI a missing one fails instead of skipping."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest


def need(module: str) -> Any:
    """Import ``module``; skip when it is missing on a developer machine, fail in CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} not installed (pip install -e '.[dev,caption]' torch)")
