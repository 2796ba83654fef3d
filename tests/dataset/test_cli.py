"""The real `lorakit dataset` CLI in a child process: output, JSON, exit codes, untouched sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.dataset.conftest import build_concepts, snapshot


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """The CLI in this process (tests/conftest.py): it starts no trainer."""
    return lorakit_in_process


def test_inspect_table_and_verdict(lorakit: Any, nasty: Path) -> None:
    before = snapshot(nasty)
    r = lorakit("dataset", "inspect", str(nasty), "--resolution", "256")
    assert r.code == 0, r.err
    out = r.out
    assert "verdict: needs prepare" in out
    assert "broken: empty file (0 bytes)" in out
    assert "exact duplicate of photo.jpg" in out
    assert "near-duplicate (distance" in out
    assert "3 broken file(s) will be skipped" in out
    assert "2 duplicate(s) will be dropped" in out
    assert "1 caption(s) without an image" in out
    assert "orphan.txt" in out
    assert snapshot(nasty) == before
    written = [p.name for p in nasty.parent.iterdir() if p.name not in ("raw", "home", "tmp")]
    assert written == []  # inspect writes nothing


def test_inspect_json(lorakit: Any, nasty: Path) -> None:
    r = lorakit("dataset", "inspect", str(nasty), "--json", "--resolution", "256")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["verdict"] == "needs prepare"
    files = {f["path"]: f for f in data["files"]}
    assert files["truncated.jpg"]["fate"] == "skip"
    assert files["z_dup.jpg"]["fate"] == "drop"
    assert files["photo_small.jpg"]["fate"] == "drop"
    assert files["photo.jpg"]["fate"] == "copy"
    assert files["big.jpg"]["problems"][0] == "downscale 6000×4000 to 3000×2000"
    assert files["rotated.jpg"]["problems"][0] == "EXIF orientation 6 (rotate 90°)"
    assert files["rgba.png"]["problems"] == ["flatten transparency onto #ffffff"]
    assert files["web image.webp"]["problems"] == ["convert WEBP to PNG"]
    assert files["cmyk.jpg"]["problems"] == ["CMYK to RGB", "no caption"]
    assert files["deep16.png"]["problems"][0] == "16-bit to 8-bit RGB"
    assert files["anim.gif"]["problems"][:2] == ["convert GIF to PNG", "first frame of 3 (animated)"]
    assert data["formats"] == {"GIF": 1, "JPEG": 8, "PNG": 5, "WEBP": 1}
    assert data["captions"] == {"images": 18, "captioned": 3, "orphan_captions": ["orphan.txt"]}
    assert data["schedule"]["total_steps"] == 13 * 100


def test_inspect_ready_folder(lorakit: Any, tmp_path: Path) -> None:
    src = build_concepts(tmp_path / "ok", {"10_ohwx woman": 3})
    r = lorakit("dataset", "inspect", str(src), "--json", "--resolution", "256")
    data = json.loads(r.out)
    assert data["verdict"] == "ready", data["reasons"]
    assert data["schedule"]["repeats"] == [10]  # from the kohya folder name
    assert data["schedule"]["total_steps"] == 3 * 10 * 10


def test_prepare_cli_end_to_end(lorakit: Any, nasty: Path, tmp_path: Path) -> None:
    before = snapshot(nasty)
    out = tmp_path / "ds"
    r = lorakit("dataset", "prepare", str(nasty), "--trigger", "ohwx", "--class", "woman", "--out", str(out),
                "--resolution", "256", "--visits", "120", "--batch-size", "2")  # fmt: skip
    assert r.code == 0, r.err
    assert "prepared 13 image(s)" in r.out
    assert "12_ohwx woman" in r.out
    assert "steps: 156 images×repeats × 10 epochs ÷ batch 2 = 780 steps" in r.out
    assert "exact duplicate of photo.jpg" in r.out
    assert "truncated.jpg" in r.out
    assert (out / "12_ohwx woman" / "photo.jpg").is_file()
    assert snapshot(nasty) == before
    again = lorakit("dataset", "prepare", str(nasty), "--trigger", "ohwx", "--class", "woman", "--out", str(out),
                    "--resolution", "256", "--visits", "120", "--batch-size", "2", "--json")  # fmt: skip
    assert again.code == 0
    assert json.loads(again.out)["summary"]["kept"] == 13


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset", "prepare", "{missing}", "--trigger", "x"], "does not exist"),
        (["dataset", "prepare", "{empty}", "--trigger", "x"], "no images in"),
        (["dataset", "prepare", "{nasty}", "--trigger", "x", "--out", "{nasty}/out"], "inside the source folder"),
        (["dataset", "prepare", "{nasty}"], "no trigger was given"),
        (["dataset", "prepare", "{nasty}", "--trigger", "x", "--repeats", "2", "--visits", "9"], "both given"),
        (["dataset", "prepare", "{nasty}", "--trigger", "x", "--format", "bmp"], "--format 'bmp'"),
        (["dataset", "inspect", "{missing}"], "does not exist"),
        (["dataset", "inspect", "{file}"], "is a file, not a folder"),
    ],
)
def test_bad_input_exits_2(lorakit: Any, nasty: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "nasty": nasty, "file": tmp_path / "file.txt"}
    before = snapshot(nasty)
    r = lorakit(*[a.format(**paths) for a in args])
    assert r.code == 2, (r.out, r.err)
    assert message in r.err
    assert "Fix:" in r.err
    assert snapshot(nasty) == before


def test_help_does_not_import_pillow(isolated_env: dict[str, str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom lorakit.cli.main import app\n"
        "try:\n    app(['dataset', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('PIL' in sys.modules, 'numpy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=isolated_env, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False False", proc.stdout + proc.stderr


def test_train_dry_run_accepts_the_prepared_folder(lorakit: Any, tmp_path: Path) -> None:
    """The core's launch plan reads prepare's output: same concepts, same steps."""
    src = build_concepts(tmp_path / "cast", {"alice woman": 6, "bob man": 3})
    out = tmp_path / "cast-ready"
    r = lorakit("dataset", "prepare", str(src), "--out", str(out), "--visits", "120", "--json")
    assert r.code == 0, r.err
    manifest = json.loads(r.out)
    sched = manifest["schedule"]
    plan = lorakit("train", "-p", "comic-style", "-d", str(out), "-s", f"training.epochs={sched['epochs']}",
                   "-s", f"training.batch_size={sched['batch_size']}", "--dry-run", "--json")  # fmt: skip
    assert plan.code == 0, plan.err
    data = json.loads(plan.out)
    assert data["steps"]["total_steps"] == sched["total_steps"]
    for c in manifest["concepts"]:
        assert f'class_tokens = "{c["trigger"]} {c["class"]}"' in data["dataset_toml"]
        assert f"num_repeats = {c['repeats']}" in data["dataset_toml"]
