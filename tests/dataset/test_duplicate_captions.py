"""Duplicates never cost a caption (issue 11, item 4): of duplicates the captioned one stays,
then the plainer name; `inspect` and `prepare` agree on what an empty caption is. Real
images, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dataset.conftest import jpeg_bytes, photo


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """The CLI in this process (tests/conftest.py): it starts no trainer."""
    return lorakit_in_process


def _raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    same = jpeg_bytes(photo(1, 640, 512))
    (raw / "photo.jpg").write_bytes(same)
    (raw / "photo.txt").write_text("red hat, smiling", encoding="utf-8")
    (raw / "photo copy.jpg").write_bytes(same)  # sorts first, byte-identical, no caption
    other = jpeg_bytes(photo(2, 640, 512))
    (raw / "beach (1).jpg").write_bytes(other)  # neither captioned: the plainer name stays
    (raw / "beach.jpg").write_bytes(other)
    (raw / "tree.jpg").write_bytes(jpeg_bytes(photo(3, 640, 512)))
    (raw / "tree.txt").write_text(" , \n", encoding="utf-8")  # only separators: empty
    (raw / "cat.jpg").write_bytes(jpeg_bytes(photo(4, 640, 512)))
    (raw / "cat.txt").write_text("lk", encoding="utf-8")  # only the trigger: empty
    return raw


def _manifest(out: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {r["source"]: r for r in data["images"]}


def test_prepare_keeps_the_captioned_duplicate_then_the_plainer_name(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = _raw(tmp_path)
    res = lorakit("dataset", "prepare", str(raw), "--trigger", "lk", "--out", str(tmp_path / "out"))
    assert res.code == 0, res.err
    images = _manifest(tmp_path / "out")
    assert images["photo.jpg"]["status"] == "kept"
    assert images["photo.jpg"]["caption_source"] == "photo.txt"
    kept_caption = (tmp_path / "out" / images["photo.jpg"]["caption"]).read_text(encoding="utf-8")
    assert kept_caption == "lk, red hat, smiling\n"
    assert images["photo copy.jpg"]["status"] == "dropped"
    assert images["photo copy.jpg"]["reason"].startswith("exact duplicate of photo.jpg")
    assert "kept the captioned one" in images["photo copy.jpg"]["reason"]
    assert images["beach.jpg"]["status"] == "kept"
    assert images["beach (1).jpg"]["status"] == "dropped"
    assert images["beach (1).jpg"]["reason"].startswith("exact duplicate of beach.jpg")


def test_inspect_and_prepare_agree_on_empty_captions(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = _raw(tmp_path)
    res = lorakit("dataset", "inspect", str(raw), "--json")
    assert res.code == 0, res.err
    files = {f["path"]: f for f in json.loads(res.out)["files"]}
    # the same duplicate decision as prepare
    assert files["photo copy.jpg"]["fate"] == "drop" and files["photo.jpg"]["fate"] != "drop"
    assert files["beach (1).jpg"]["fate"] == "drop" and files["beach.jpg"]["fate"] != "drop"
    assert files["tree.jpg"]["caption"] is False and "empty caption" in files["tree.jpg"]["problems"]
    assert files["photo.jpg"]["caption"] is True

    res = lorakit("dataset", "prepare", str(raw), "--trigger", "lk", "--out", str(tmp_path / "out"))
    assert res.code == 0, res.err
    images = _manifest(tmp_path / "out")
    for name in ("tree.jpg", "cat.jpg"):  # prepare: an empty caption is no caption
        assert "empty caption" in images[name]["flags"], images[name]
        assert images[name]["caption_source"] is None
    # inspect with the same trigger (a kohya folder names it) calls the trigger-only caption empty too
    kohya = tmp_path / "k" / "1_lk"
    kohya.mkdir(parents=True)
    for name in ("cat.jpg", "cat.txt"):
        (kohya / name).write_bytes((raw / name).read_bytes())
    res = lorakit("dataset", "inspect", str(tmp_path / "k"), "--json")
    assert res.code == 0, res.err
    cat = json.loads(res.out)["files"][0]
    assert cat["caption"] is False and "empty caption" in cat["problems"]
