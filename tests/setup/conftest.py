"""Fixtures for setup/doctor tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty lorakit data folder; trainer.json (platformdirs) lands under XDG_DATA_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LORAKIT_HOME", str(home / "lorakit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    for var in ("LORAKIT_SD_SCRIPTS", "LORAKIT_PYTHON"):
        monkeypatch.delenv(var, raising=False)
    return home
