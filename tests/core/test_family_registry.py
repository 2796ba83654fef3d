"""Model families live in one registry (src/lorakit/families/, issue 14): the rest of src/ asks
it and never tests a family's name. docs/architecture.md "Adding a model family".

The scan flags, outside families/: a string that is a family name (``"sdxl"``), one that starts
like an SD 3 name (``"sd3"``, ``"sd3.5-"``, also the head of an f-string), a string that lists
two or more families (help text must be generated from the registry), and ``.is_sd3``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lorakit import families
from lorakit.config.presets import preset_info, preset_names
from lorakit.config.schema import ModelSection, TrainingSection, TrainSpec
from lorakit.convert.flags import script_flags

SRC = Path(__file__).resolve().parents[2] / "src" / "lorakit"
REGISTRY = SRC / "families"

# The whole allow-list. convert/ reads and writes the kohya_ss GUI's files: "sdxl" is the GUI's
# checkbox key and, with "sd3", its word for a model line (convert/data/kohya_gui.toml `when`);
# they are the GUI's vocabulary, mapped onto lorakit's families through the registry's scripts.
ALLOWED: dict[str, frozenset[str]] = {
    "convert/": frozenset({"sdxl", "sd3"}),
}


def _family_words() -> list[str]:
    return list(families.NAMES)


def _bad_constant(text: str, words: list[str]) -> str | None:
    if text in words or text in ("sd3", "sd3.5") or text.startswith("sd3.5-"):
        return text
    named = [w for w in words if re.search(rf"(?<![\w.-]){re.escape(w)}(?![\w-])", text)]
    if len(named) > 1:  # a hand-written list of families (one name in an example path is fine)
        return ", ".join(named)
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def scan(source: str, rel: str) -> list[str]:
    """Family names written in ``source`` (a module at ``rel`` under src/lorakit)."""
    tree = ast.parse(source)
    words = _family_words()
    allowed = frozenset().union(*(v for k, v in ALLOWED.items() if rel.startswith(k)))
    docs = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            bad = _bad_constant(node.value, words)
            if bad is not None and node.value not in allowed:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in ("is_sd3", "SD3_FAMILIES", "is_sdxl"):
            found.append(f"{rel}:{node.lineno}: .{node.attr}")
    return found


def test_no_family_names_outside_the_registry() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if REGISTRY in path.parents:
            continue
        rel = path.relative_to(SRC).as_posix()
        found += scan(path.read_text(encoding="utf-8"), rel)
    assert not found, "ask lorakit.families instead of naming a family:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        'if spec.model.family == "sdxl":\n    pass',
        'x = family.startswith("sd3")',
        'fams = ("sd3.5-medium", "sd3.5-large")',
        'name = f"sd3.5-{size}"',
        'help_text = "sdxl, sd3.5-medium or sd3.5-large."',
        "ok = spec.is_sd3",
    ],
)
def test_the_scan_catches_names(code: str) -> None:  # so the test above can fail
    assert scan(code, "run/example.py")


def test_the_scan_allows_generated_text_and_gui_words() -> None:
    assert not scan('"""Trains sdxl."""\nx = f"use {families.names_text()}"', "cli/example.py")
    assert not scan('gui["sdxl"] = True', "convert/export.py")
    assert scan('fam = "sd3.5-large"', "convert/read.py")


# --------------------------------------------------------------------------------------------
# what every family file must provide, checked against the schema and sd-scripts' real flags


@pytest.mark.parametrize("fam", list(families.FAMILIES.values()), ids=lambda f: f.name)
def test_a_family_is_consistent(fam: families.ModelFamily) -> None:
    flags = script_flags(fam.script)
    assert fam.model_files[0].key == "checkpoint" and fam.model_files[0].required
    for f in fam.model_files:
        assert f.key in ModelSection.model_fields, f"model.{f.key} is not a config key"
        assert f.flag in flags, f"--{f.flag} is not a flag of {fam.script}"
    for o in fam.option_flags:
        section, key = o.key.split(".")
        assert key in TrainSpec.model_fields[section].annotation.model_fields, f"{o.key} is not a config key"
        assert o.flag in flags, f"--{o.flag} is not a flag of {fam.script}"
    for flag, _ in fam.fixed_flags:
        assert flag in flags, f"--{flag} is not a flag of {fam.script}"
    if fam.swap is not None:
        assert "blocks_to_swap" in flags and 0 < fam.swap.max_blocks < 1000
        assert fam.swap.params(fam.swap.max_blocks) < fam.arch.denoiser_params
        assert fam.swap.blocks(10**6) == fam.swap.max_blocks
        for key in fam.swap.conflicts:
            assert key in TrainingSection.model_fields
    assert fam.arch.family == fam.name
    assert fam.denoiser_kind in ("unet", "mmdit")  # the estimator's gc_keep coefficients
    assert set(fam.lycoris_kinds) <= {"locon", "loha", "lokr", "dylora", "ia3", "glora", "diag-oft"}


def test_synth_builders_and_comfy_graphs_exist() -> None:
    from lorakit.synth.build import BUILDERS

    for fam in families.FAMILIES.values():
        assert fam.synth.builder in BUILDERS, fam.name


def test_the_schema_takes_its_list_from_the_registry() -> None:
    for name in families.NAMES:
        assert TrainSpec.model_validate({"model": {"family": name}}).family is families.get(name)
    assert TrainSpec().model.family == families.DEFAULT
    listed = ", ".join(f"'{n}'" for n in families.NAMES[:-1]) + f" or '{families.NAMES[-1]}'"
    with pytest.raises(ValueError, match=re.escape(f"Input should be {listed}")):
        TrainSpec.model_validate({"model": {"family": "sd1.5"}})


def test_sd3_swap_limit_is_sd_scripts_assert() -> None:
    # sd-scripts 48d368fa library/sd3_models.py: blocks_to_swap <= num_blocks - 2
    for name, depth in (("sd3.5-medium", 24), ("sd3.5-large", 38)):
        swap = families.get(name).swap
        assert swap is not None and swap.max_blocks == depth - 2


def test_every_preset_names_a_registered_family() -> None:
    for name in preset_names():
        assert preset_info(name).family in families.NAMES, name


def test_unknown_family_is_one_clear_error() -> None:
    with pytest.raises(families.UnknownFamily, match=r"unknown model family 'sd1\.5' \(known: sdxl, "):
        families.get("sd1.5")
