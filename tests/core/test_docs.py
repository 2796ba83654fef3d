"""The configuration reference is generated from the schema; a stale file fails here."""

from __future__ import annotations

import runpy

from tests.conftest import REPO


def test_config_reference_is_current() -> None:
    render = runpy.run_path(str(REPO / "scripts" / "gen_config_reference.py"))["render"]
    assert (REPO / "docs" / "config-reference.md").read_text(encoding="utf-8") == render(), (
        "run: python scripts/gen_config_reference.py"
    )


def test_readme_lists_every_preset() -> None:
    from lorakit.config.presets import preset_names

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in preset_names():
        assert f"`{name}`" in readme, name
