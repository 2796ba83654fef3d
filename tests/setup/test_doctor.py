"""`lorakit doctor` against a fake sd-scripts tree and real child Pythons."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from lorakit.kohya.setup import SD_SCRIPTS_COMMIT, probe_python, run_doctor
from tests.setup.setup_fakes import make_fake_sd_scripts, run_cli

FAKE_TORCH = """
class version:
    cuda = "12.4"


class cuda:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def device_count():
        return 2

    @staticmethod
    def get_device_name(i):
        return f"Fake GPU {i}"
"""


def fake_site(root: Path, versions: dict[str, str]) -> Path:
    """A folder of distributions (dist-info) a child Python finds on PYTHONPATH."""
    root.mkdir(parents=True)
    for dist, version in versions.items():
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (root / "torch").mkdir()
    (root / "torch" / "__init__.py").write_text(FAKE_TORCH, encoding="utf-8")
    return root


def checks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["checks"]}


def test_doctor_without_install_exits_3(home: Path, tmp_path: Path) -> None:
    r = run_cli("doctor", "--runs", str(tmp_path / "runs"))
    assert r.returncode == 3
    assert "sd-scripts" in r.stdout and "no install found" in r.stdout
    assert "lorakit setup" in r.stdout
    assert "disk" in r.stdout


def test_doctor_reports_missing_packages_in_the_trainer_python(home: Path, tmp_path: Path) -> None:
    import subprocess

    sd = make_fake_sd_scripts(tmp_path / "sd")
    # a bare venv (no system site-packages): torch is missing there whether or not this
    # machine has it; safetensors comes from a fake distribution on PYTHONPATH
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    py = str(bare / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    site = tmp_path / "site"
    site.mkdir()
    info = site / "safetensors-0.4.5.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: safetensors\nVersion: 0.4.5\n", encoding="utf-8")
    r = run_cli("setup", "--sd-scripts", str(sd), "--python", py)
    assert r.returncode == 0, r.stderr
    r = run_cli("doctor", "--json", "--runs", str(tmp_path / "runs"), env={"PYTHONPATH": str(site)})
    assert r.returncode == 3, r.stderr
    data = json.loads(r.stdout)
    c = checks(data)
    assert data["ok"] is False
    assert c["sd-scripts"]["status"] == "ok" and c["sd-scripts"]["detail"] == str(sd.resolve())
    assert c["sd-scripts commit"]["status"] == "warn"
    assert SD_SCRIPTS_COMMIT[:10] in c["sd-scripts commit"]["detail"]
    assert c["trainer python"]["status"] == "ok"
    assert f"Python {sys.version.split()[0]}" in c["trainer python"]["detail"]
    assert c["torch"]["status"] == "missing" and c["torch"]["required"] is True
    assert c["torch"]["fix"] == f"{py} -m pip install torch"
    assert c["CUDA"]["status"] == "missing"
    assert c["safetensors"]["status"] == "ok" and c["safetensors"]["detail"] == "0.4.5"
    assert c["lycoris-lora"]["required"] is False
    assert c["NVML"]["required"] is False  # no GPU is reported, not a crash
    assert c["disk"]["detail"].endswith(str(tmp_path))


def test_doctor_all_required_found(home: Path, tmp_path: Path) -> None:
    sd = make_fake_sd_scripts(tmp_path / "sd")
    site = fake_site(
        tmp_path / "site",
        {
            "torch": "2.6.0",
            "accelerate": "1.6.0",
            "diffusers": "0.32.1",
            "transformers": "4.54.1",
            "lycoris-lora": "4.1.3",
        },
    )
    env = {"PYTHONPATH": str(site), "LORAKIT_SD_SCRIPTS": str(sd), "LORAKIT_PYTHON": sys.executable}
    r = run_cli("doctor", "--json", "--runs", str(tmp_path), env=env)
    data = json.loads(r.stdout)
    c = checks(data)
    assert r.returncode == 0, data
    assert c["torch"]["detail"] == "2.6.0" and c["accelerate"]["detail"] == "1.6.0"
    assert c["lycoris-lora"]["status"] == "ok"
    assert c["CUDA"] == {
        "name": "CUDA",
        "status": "ok",
        "detail": "CUDA 12.4: Fake GPU 0, Fake GPU 1",
        "required": True,
        "fix": None,
    }
    assert data["probe"]["devices"] == ["Fake GPU 0", "Fake GPU 1"]
    # text output says so too
    r = run_cli("doctor", "--runs", str(tmp_path), env=env)
    assert r.returncode == 0
    assert "all required parts found" in r.stdout


def test_probe_timeout_and_missing_interpreter(tmp_path: Path) -> None:
    hang = tmp_path / "python"
    hang.write_text("#!/bin/sh\nexec sleep 30\n", encoding="utf-8")
    os.chmod(hang, 0o755)
    assert probe_python(str(hang), ["torch"], timeout=1) == {"error": "did not answer within 1 s"}
    assert probe_python(str(tmp_path / "nope"), ["torch"])["error"].startswith("cannot run:")
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'boom' >&2\nexit 7\n", encoding="utf-8")
    os.chmod(broken, 0o755)
    assert probe_python(str(broken), ["torch"]) == {"error": "exit code 7: boom"}


def test_doctor_broken_trainer_python(home: Path, tmp_path: Path, monkeypatch: Any) -> None:
    sd = make_fake_sd_scripts(tmp_path / "sd")
    monkeypatch.setenv("LORAKIT_PYTHON", str(tmp_path / "missing-python"))
    report = run_doctor(sd, tmp_path, timeout=10)
    assert not report.ok
    trainer = next(c for c in report.checks if c.name == "trainer python")
    assert trainer.status == "missing" and "cannot run" in trainer.detail


def test_doctor_warns_without_tensorboard_in_the_trainer(home: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """lorakit launches with --log_with=tensorboard; accelerate silently drops the logger when
    the trainer lacks the package, so doctor says what is lost (not required: training works)."""
    import lorakit.kohya.setup as setup

    sd = make_fake_sd_scripts(tmp_path / "sd")
    monkeypatch.setenv("LORAKIT_PYTHON", sys.executable)
    versions = {name: "1.0" for name in setup.PROBED_PACKAGES} | {"tensorboard": None}
    monkeypatch.setattr(
        setup,
        "probe_python",
        lambda *a, **k: {"python": "3.11.0", "packages": versions, "cuda_available": True, "devices": ["GPU"]},
    )
    report = run_doctor(sd, tmp_path, timeout=10)
    tb = next(c for c in report.checks if c.name == "tensorboard")
    assert (tb.status, tb.required) == ("warn", False)
    assert "per-step loss curve" in tb.detail
    assert tb.fix == f"{sys.executable} -m pip install tensorboard"
    assert report.ok
