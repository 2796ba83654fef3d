"""The WD14-style tagger's pure parts: tag selection, preprocessing, the tag list, the synthetic model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lorakit.caption.wd14 import TagOptions, display_name, parse_tags_csv, preprocess, select_tags
from lorakit.errors import DatasetError
from lorakit.synth import wd14 as synth
from tests.caption.conftest import need

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "wd14-synth"
TABLE = parse_tags_csv(synth.tags_csv())


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# the synthetic model's output for a pure red image (docs/research/captioning.md §2)
RED = [sig(4), sig(-6), sig(-6), sig(-6), sig(6), sig(-6), 0.5, 0.45, sig(2), sig(-6)]


def test_tag_table_categories_and_quoting() -> None:
    assert TABLE.names[:4] == ("general", "sensitive", "questionable", "explicit")
    assert TABLE.categories == (9, 9, 9, 9, 0, 0, 0, 0, 4, 4)
    assert TABLE.names[9] == "kagamine_rin_(cosplay)"
    with pytest.raises(DatasetError, match="header must start tag_id,name,category"):
        parse_tags_csv("id,name\n1,x\n")
    with pytest.raises(DatasetError, match=r":3: bad row"):
        parse_tags_csv("tag_id,name,category,count\n1,a,0,1\n2,b,x,1\n")


def test_select_defaults_character_first_then_by_probability() -> None:
    # characters ≥ 0.85, general ≥ 0.35, each by falling probability; rating off; underscores → spaces
    assert select_tags(RED, TABLE, TagOptions()) == ["hatsune miku", "red theme", ">_<", "long hair"]


def test_thresholds_are_inclusive_and_separate() -> None:
    assert ">_<" in select_tags(RED, TABLE, TagOptions(general_threshold=0.5))  # p == 0.5 passes (>=)
    assert "long hair" not in select_tags(RED, TABLE, TagOptions(general_threshold=0.5))
    assert "hatsune miku" not in select_tags(RED, TABLE, TagOptions(character_threshold=0.9))
    assert select_tags(RED, TABLE, TagOptions(character_threshold=0.001))[:2] == [
        "hatsune miku",
        "kagamine rin (cosplay)",
    ]


def test_exclude_underscores_kaomoji_rating() -> None:
    assert "long hair" not in select_tags(RED, TABLE, TagOptions(exclude=frozenset({"Long_Hair"})))
    assert "long hair" not in select_tags(RED, TABLE, TagOptions(exclude=frozenset({"long hair"})))
    kept = select_tags(RED, TABLE, TagOptions(underscores=True))
    assert kept == ["hatsune_miku", "red_theme", ">_<", "long_hair"]
    assert select_tags(RED, TABLE, TagOptions(rating=True))[0] == "general"
    assert display_name("(o)_(o)") == "(o)_(o)"  # a kaomoji longer than 3 characters
    assert display_name("^_^") == "^_^"
    assert display_name("kagamine_rin_(cosplay)") == "kagamine rin (cosplay)"


def test_scores_must_match_the_tag_list() -> None:
    with pytest.raises(DatasetError, match="gives 3 scores but"):
        select_tags([0.1, 0.2, 0.3], TABLE, TagOptions())


def test_preprocess_bgr_white_padding_and_alpha() -> None:
    Image = need("PIL.Image")
    np = need("numpy")
    tall = Image.new("RGB", (100, 400), (255, 0, 0))
    x = preprocess(tall, 448)
    assert x.shape == (448, 448, 3) and x.dtype == np.float32
    assert list(x[224, 224]) == [0.0, 0.0, 255.0]  # red as BGR
    assert list(x[224, 5]) == [255.0, 255.0, 255.0]  # white padding left and right, centred
    assert list(x[224, 442]) == [255.0, 255.0, 255.0]
    clear = Image.new("RGBA", (50, 50), (255, 0, 0, 0))  # fully transparent red
    assert float(preprocess(clear, 64).min()) == 255.0  # flattened onto white
    grey = Image.new("L", (448, 448), 10)
    assert float(preprocess(grey, 448).max()) == 10.0  # already square and sized: unchanged


def test_committed_fixture_is_what_the_builder_writes() -> None:
    need("onnx")
    assert (FIXTURE / "model.onnx").read_bytes() == synth.model_bytes()
    assert (FIXTURE / "selected_tags.csv").read_text(encoding="utf-8") == synth.tags_csv()


def test_synthetic_model_signature_and_outputs(tmp_path: Path) -> None:
    ort = need("onnxruntime")
    np = need("numpy")
    sess = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    assert (inp.name, inp.shape, inp.type) == ("input_1:0", ["batch", 448, 448, 3], "tensor(float)")
    assert out.shape == ["batch", 10]
    x = np.zeros((2, 448, 448, 3), np.float32)
    x[0, ..., 2] = 255  # red (BGR)
    x[1] = 255  # white
    p = sess.run(None, {inp.name: x})[0]
    assert np.allclose(p[0], RED, atol=1e-5)
    assert p[1][5] > 0.99  # white has blue too


def test_cli_start_imports_no_captioning_runtime() -> None:
    """`lorakit --help` and the caption modules' import leave onnxruntime/torch/transformers/hub unloaded."""
    import subprocess
    import sys

    code = (
        "import sys; import lorakit.cli.main, lorakit.caption.run, lorakit.caption.models; "
        "heavy = [m for m in ('onnxruntime', 'torch', 'transformers', 'huggingface_hub', 'onnx') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
