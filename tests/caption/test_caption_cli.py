"""`lorakit dataset caption` with the synthetic WD14-style model, through the real CLI in a child
process: preprocessing, thresholds, order, files written, existing captions, source untouched.
The assertions are on the pipeline (which tags the synthetic weights must give), not on words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.caption.conftest import need
from tests.conftest import tree_bytes

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "wd14-synth"
RED = "ohwx, woman, hatsune miku, red theme, >_<, long hair"
RED_PADDED = "ohwx, woman, hatsune miku, red theme, blue background, >_<, long hair"


def raw_images(root: Path) -> Path:
    """Six images whose synthetic tags differ only through preprocessing."""
    Image = need("PIL.Image")
    root.mkdir(parents=True)
    Image.new("RGB", (96, 96), (255, 0, 0)).save(root / "a_red.png")
    Image.new("RGB", (40, 160), (250, 0, 0)).save(root / "b_tall_red.png")  # white padding adds blue
    Image.new("RGBA", (96, 96), (255, 0, 0, 0)).save(root / "c_clear.png")  # flattened on white
    Image.new("RGB", (96, 96), (0, 0, 255)).save(root / "d_blue.png")
    Image.new("RGB", (96, 96), (254, 0, 0)).save(root / "e_red.jpg", quality=95)
    Image.new("RGB", (96, 96), (253, 1, 0)).save(root / "f_red.png")
    (root / "a_red.txt").write_text("my own tags, kept", encoding="utf-8")
    (root / "d_blue.txt").write_text("ohwx", encoding="utf-8")  # only the trigger: counts as no caption
    return root


@pytest.fixture
def prepared(lorakit: Any, tmp_path: Path) -> tuple[Path, Path]:
    need("onnxruntime")
    raw = raw_images(tmp_path / "raw")
    out = tmp_path / "prep"
    r = lorakit("dataset", "prepare", str(raw), "-t", "ohwx", "--class", "woman", "--repeats", "1",
                "--near-dup-distance", "-1", "--resolution", "64", "-o", str(out))  # fmt: skip
    assert r.code == 0, r.err
    return raw, out


def captions(folder: Path) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*/*.txt"))}


def test_caption_prepared_dataset(lorakit: Any, prepared: tuple[Path, Path]) -> None:
    raw, out = prepared
    source = tree_bytes(raw)
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--batch-size", "4")
    assert r.code == 0, r.err
    caps = captions(out)
    assert caps["a_red"] == "ohwx, woman, my own tags, kept\n"  # existing caption kept
    assert caps["b_tall_red"] == RED_PADDED + "\n"  # centred white padding (BGR: blue = white's B)
    assert caps["c_clear"] == "ohwx, woman, hatsune miku, red theme, blue background, >_<, long hair\n"
    assert caps["d_blue"] == "ohwx, woman, hatsune miku, blue background, >_<, long hair\n"  # RGB→BGR
    assert caps["e_red"] == RED + "\n"
    assert caps["f_red"] == RED + "\n"
    assert "written 5, appended 0, kept 1" in r.out
    assert "on CPUExecutionProvider, batch 4" in r.out
    assert tree_bytes(raw) == source  # the raw source is only read
    rec = json.loads((out / "autocaption.json").read_text(encoding="utf-8"))
    assert rec["provider"] == "CPUExecutionProvider" and rec["written"] == 5
    assert {i["image"]: i["action"] for i in rec["images"]}["1_ohwx woman/a_red.png"] == "kept"


def test_constant_tags_reported_and_json(lorakit: Any, prepared: tuple[Path, Path]) -> None:
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--overwrite", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert (data["written"], data["kept"], data["failed"]) == (6, 0, 0)
    assert data["images_per_second"] > 0
    # hatsune miku, >_< and long hair come from biases only: on every image, so reported
    assert data["tags"]["on_every_image"] == [">_<", "hatsune miku", "long hair"]


def test_append_merges_and_thresholds(lorakit: Any, prepared: tuple[Path, Path]) -> None:
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--append", "--threshold", "0.5",
                "--character-threshold", "0.9", "--exclude", "red theme", "--rating")  # fmt: skip
    assert r.code == 0, r.err
    caps = captions(out)
    # old tags first, then the new ones not already there; trigger and class stay first
    assert caps["a_red"] == "ohwx, woman, my own tags, kept, general, >_<\n"
    assert caps["e_red"] == "ohwx, woman, general, >_<\n"
    assert "appended 1" in r.out


def test_keep_underscores_and_overwrite(lorakit: Any, prepared: tuple[Path, Path]) -> None:
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--overwrite", "--keep-underscores",
                "--trigger", "zzt", "--class", "girl")  # fmt: skip
    assert r.code == 0, r.err
    assert captions(out)["a_red"] == "zzt, girl, hatsune_miku, red_theme, >_<, long_hair\n"


def test_raw_folder_needs_out_and_is_never_written(lorakit: Any, tmp_path: Path) -> None:
    need("onnxruntime")
    raw = raw_images(tmp_path / "raw")
    before = tree_bytes(raw)
    r = lorakit("dataset", "caption", str(raw), "--model", str(FIXTURE))
    assert r.code == 2
    assert "not a prepared dataset" in r.err and "--out" in r.err and "Traceback" not in r.err
    copy = tmp_path / "copy"
    r = lorakit("dataset", "caption", str(raw), "--model", str(FIXTURE), "--out", str(copy), "-t", "ohwx")
    assert r.code == 0, r.err
    assert tree_bytes(raw) == before
    assert (copy / "a_red.txt").read_text(encoding="utf-8") == "my own tags, kept"  # kept byte for byte
    assert (copy / "b_tall_red.txt").read_text(encoding="utf-8").startswith("ohwx, hatsune miku, red theme, blue")
    r = lorakit("dataset", "caption", str(raw), "--model", str(FIXTURE), "--out", str(copy))
    assert r.code == 2 and "not empty" in r.err  # never captions over an earlier copy
    r = lorakit("dataset", "caption", str(raw), "--model", str(FIXTURE), "--out", str(raw / "inner"))
    assert r.code == 2 and "overlap" in r.err
    assert tree_bytes(raw) == before


def test_out_copy_of_prepared_dataset_points_its_toml_at_the_copy(
    lorakit: Any, prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = prepared
    before = tree_bytes(out)
    copy = tmp_path / "copy"
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--out", str(copy))
    assert r.code == 0, r.err
    assert tree_bytes(out) == before
    toml = (copy / "dataset.toml").read_text(encoding="utf-8")
    assert str(copy.resolve()) in toml and str(out.resolve()) not in toml


def test_fixed_batch_model_and_model_read_size(lorakit: Any, prepared: tuple[Path, Path], tmp_path: Path) -> None:
    need("onnx")
    from lorakit.synth.wd14 import build

    model = build(tmp_path / "fixed64", size=64, fixed_batch=True)
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", str(model), "--overwrite", "--batch-size", "4")
    assert r.code == 0, r.err
    assert "fixed batch size 1" in r.out and "batch 1" in r.out
    assert captions(out)["b_tall_red"] == RED_PADDED + "\n"  # 64 px input read from the model


def test_model_from_hub_cache_offline(lorakit: Any, prepared: tuple[Path, Path], isolated_env: dict[str, str],
                                      tmp_path: Path) -> None:  # fmt: skip
    need("huggingface_hub")
    hf = tmp_path / "hf"
    snap = hf / "hub" / "models--someone--wd14-synth" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for f in ("model.onnx", "selected_tags.csv"):
        shutil.copy(FIXTURE / f, snap / f)
    (hf / "hub" / "models--someone--wd14-synth" / "refs").mkdir()
    (hf / "hub" / "models--someone--wd14-synth" / "refs" / "main").write_text("a" * 40)
    isolated_env.update(HF_HOME=str(hf), HF_HUB_OFFLINE="1")
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", "someone/wd14-synth", "--overwrite")
    assert r.code == 0, r.err
    assert captions(out)["e_red"] == RED + "\n"
    r = lorakit("dataset", "caption", str(out), "--model", "someone/not-there")
    assert r.code == 2
    assert "not in the Hugging Face cache" in r.err and "--model a local folder" in r.err


def test_bad_inputs_exit_2_or_3(lorakit: Any, prepared: tuple[Path, Path]) -> None:
    ort = need("onnxruntime")
    _, out = prepared
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--overwrite", "--append")
    assert r.code == 2 and "--overwrite and --append" in r.err
    r = lorakit("dataset", "caption", str(out), "--model", str(out / "nope"))
    assert r.code == 2 and "no such folder" in r.err
    r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--tagger", "gpt")
    assert r.code == 2 and "--tagger 'gpt'" in r.err
    r = lorakit("dataset", "caption", str(out), "--model", str(out))
    assert r.code == 2 and "no model.onnx" in r.err
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        r = lorakit("dataset", "caption", str(out), "--model", str(FIXTURE), "--device", "cuda")
        assert r.code == 3 and "no CUDA provider" in r.err and "caption-gpu" in r.err
