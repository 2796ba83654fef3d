"""`lorakit dataset caption --tagger blip` with a tiny random-weight BLIP built from its config
(lorakit.synth.blip): the pipeline (files written, trigger and class first, kept/append rules,
source untouched), not the words, which are random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.caption.conftest import need
from tests.caption.test_caption_cli import raw_images
from tests.conftest import tree_bytes


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    need("transformers")
    from lorakit.synth.blip import build

    return build(tmp_path_factory.mktemp("blip") / "model")


def test_blip_captions_a_prepared_dataset(lorakit: Any, tmp_path: Path, tiny_blip: Path) -> None:
    raw = raw_images(tmp_path / "raw")
    before = tree_bytes(raw)
    out = tmp_path / "prep"
    r = lorakit("dataset", "prepare", str(raw), "-t", "ohwx", "--class", "woman", "--repeats", "1",
                "--near-dup-distance", "-1", "--resolution", "64", "-o", str(out))  # fmt: skip
    assert r.code == 0, r.err
    r = lorakit("dataset", "caption", str(out), "--tagger", "blip", "--model", str(tiny_blip), "--batch-size", "4")
    assert r.code == 0, r.err
    assert "written 5, appended 0, kept 1" in r.out and "on torch cpu" in r.out
    caps = {p.stem: p.read_text(encoding="utf-8") for p in out.glob("*/*.txt")}
    assert caps["a_red"] == "ohwx, woman, my own tags, kept\n"
    for stem in ("b_tall_red", "c_clear", "d_blue", "e_red", "f_red"):
        text = caps[stem]
        assert text.startswith("ohwx, woman, ") and text.endswith("\n") and text.count("\n") == 1
        assert len(text.split(", ", 2)[2].split()) >= 3  # a sentence of at least min_new_tokens words
    r = lorakit("dataset", "caption", str(out), "--tagger", "blip", "--model", str(tiny_blip), "--append")
    assert r.code == 0, r.err
    appended = (out / "1_ohwx woman" / "a_red.txt").read_text(encoding="utf-8")
    assert appended.startswith("ohwx, woman, my own tags, kept, ") and appended.count("ohwx") == 1
    assert tree_bytes(raw) == before
