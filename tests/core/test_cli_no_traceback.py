"""Failures a user can reach end in one message and a documented exit code, never a traceback
(issue 11, item 5): presets copy onto a folder, prepare into a place it cannot write,
synth-model with a trainer Python lacking a package, and train without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.kohya.install import TRAIN_SCRIPTS
from tests.conftest import EXAMPLE, make_kohya_dataset, tree_bytes
from tests.core.test_cli_errors import assert_clean_error


def _sd_scripts(root: Path) -> Path:
    sd = root / "sd-scripts"
    (sd / "library").mkdir(parents=True)
    for name in TRAIN_SCRIPTS:
        (sd / name).write_text("# stand-in\n", encoding="utf-8")
    return sd


def test_presets_copy_force_onto_a_folder(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "configs").mkdir()
    res = lorakit("presets", "copy", "comic-style", "configs", "--force")
    assert_clean_error(res, "configs is a folder", "configs/comic-style.yaml")
    assert list((tmp_path / "configs").iterdir()) == []


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_prepare_out_where_it_cannot_write(lorakit, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    raw = make_kohya_dataset(tmp_path / "raw", {"1_lk": 2})
    before = tree_bytes(raw)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "out" if where == "under-a-file" else Path("/proc/lorakit-cannot-write")
    res = lorakit("dataset", "prepare", str(raw), "--trigger", "lk", "--out", str(out))
    assert_clean_error(res, f"cannot write the prepared dataset to {out}", "pass --out to a folder you can write")
    assert tree_bytes(raw) == before


def test_synth_model_with_a_trainer_python_lacking_packages(lorakit, isolated_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n', encoding="utf-8")  # no site-packages
    py.chmod(0o755)
    isolated_env.update(LORAKIT_SD_SCRIPTS=str(_sd_scripts(tmp_path)), LORAKIT_PYTHON=str(py))
    res = lorakit("synth-model", "sdxl", str(tmp_path / "model"))
    assert res.code == 3, (res.code, res.err)
    assert "Traceback" not in res.err and res.err.startswith("error: ")
    assert "needs the Python package" in res.err and "-m pip install" in res.err
    assert not (tmp_path / "model").exists()  # no empty folder left behind


def test_train_without_a_gpu_exits_3_before_any_trainer(lorakit, isolated_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "trainer-ran"
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n", encoding="utf-8")
    py.chmod(0o755)
    ckpt = tmp_path / "base.safetensors"
    ckpt.write_bytes(b"x")
    isolated_env.update(LORAKIT_SD_SCRIPTS=str(_sd_scripts(tmp_path)), LORAKIT_PYTHON=str(py))
    isolated_env.pop("LORAKIT_ALLOW_NO_GPU")
    isolated_env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, also on a machine that has one
    args = ("-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={ckpt}")
    res = lorakit("train", *args)
    assert res.code == 3, (res.code, res.err)
    assert "Traceback" not in res.err and "no usable NVIDIA GPU" in res.err and "--dry-run" in res.err
    assert not marker.exists() and not (tmp_path / "runs").exists()
    # a dry run still plans without a GPU
    res = lorakit("train", *args, "--dry-run")
    assert res.code == 0, res.err
    # bench trains too: same refusal
    res = lorakit("bench", *args, "--steps", "3")
    assert res.code == 3 and "no usable NVIDIA GPU" in res.err and "Traceback" not in res.err, res.err
    assert not marker.exists()


if os.name != "posix":  # pragma: no cover
    pytestmark = pytest.mark.skip("shebang stand-ins")


def test_an_internal_error_is_one_message_and_a_file(tmp_path: Path) -> None:
    # the H200 smoke met an ImportError inside `lorakit resume` that printed a raw traceback
    code = (
        "from lorakit.cli.main import run_guarded\n"
        "def boom():\n    raise ValueError('unexpected shape')\n"
        "run_guarded(boom)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("LORAKIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error (ValueError: unexpected shape)" in proc.stderr
    (crash,) = tmp_path.glob("lorakit-crash-*.txt")
    assert "Traceback (most recent call last)" in crash.read_text() and str(crash) in proc.stderr.replace("\n", "")
