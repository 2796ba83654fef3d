"""`lorakit setup`: the dry-run argv, recording an existing install, and applying a plan
against a local repository (no network: pip is told to use no index)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lorakit.errors import EnvironmentProblem
from lorakit.kohya.setup import (
    SD_SCRIPTS_COMMIT,
    SD_SCRIPTS_REPO,
    SetupOptions,
    apply_setup,
    observe_tree,
    plan_setup,
)
from tests.setup.setup_fakes import git_head, make_fake_sd_scripts, run_cli


def test_dry_run_argv_fresh_install(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "inst" / "sd-scripts"
    r = run_cli("setup", "--dry-run", "--json", "--dir", str(target), "--base-python", "/usr/bin/python3.11")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    py = str(target / "venv" / "bin" / "python")
    assert [s["argv"] for s in data["steps"]] == [
        ["git", "clone", SD_SCRIPTS_REPO, str(target)],
        ["git", "-C", str(target), "checkout", "--detach", SD_SCRIPTS_COMMIT],
        ["/usr/bin/python3.11", "-m", "venv", str(target / "venv")],
        [py, "-m", "pip", "install", "--upgrade", "pip"],
        [
            py,
            "-m",
            "pip",
            "install",
            "torch==2.6.0",
            "torchvision==0.21.0",
            "--index-url",
            "https://download.pytorch.org/whl/cu124",
        ],
        [py, "-m", "pip", "install", "-r", "requirements.txt"],
        [py, "-m", "pip", "install", "bitsandbytes>=0.45", "lycoris-lora==4.1.3"],
    ]
    assert data["steps"][5]["cwd"] == str(target)  # `-e .` in requirements.txt
    assert data["record"] == {"sd_scripts": str(target), "python": py, "commit": SD_SCRIPTS_COMMIT}
    assert data["record_file"] == str(home / "lorakit" / "trainer.json")
    assert not target.exists()  # nothing done


def test_dry_run_text_and_xformers(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "sd"
    r = run_cli(
        "setup", "--dry-run", "--dir", str(target), "--xformers", "--torch-index-url", "https://example.invalid/whl"
    )
    assert r.returncode == 0, r.stderr
    assert f"git clone {SD_SCRIPTS_REPO} {target}" in r.stdout
    assert "--index-url https://example.invalid/whl" in r.stdout
    assert "lycoris-lora==4.1.3 xformers" in r.stdout
    assert f"cd {target} && " in r.stdout


def test_existing_checkout_at_another_commit_is_fetched(tmp_path: Path) -> None:
    target = make_fake_sd_scripts(tmp_path / "sd")
    state = observe_tree(target)
    assert state.is_git and state.head == git_head(target)
    plan = plan_setup(state, SetupOptions(target=target, base_python="py"))
    assert [s.argv[:4] for s in plan.steps[:2]] == [
        ("git", "-C", str(target), "fetch"),
        ("git", "-C", str(target), "checkout"),
    ]
    # at the pinned commit with a venv: only the pip steps remain (idempotent re-run)
    (target / "venv" / "bin").mkdir(parents=True)
    (target / "venv" / "bin" / "python").write_text("", encoding="utf-8")
    plan = plan_setup(observe_tree(target), SetupOptions(target=target, commit=git_head(target)))
    assert plan.steps[0].title == "upgrade pip"


def test_non_git_folder_is_refused(home: Path, tmp_path: Path) -> None:
    target = make_fake_sd_scripts(tmp_path / "plain", git=False)
    with pytest.raises(EnvironmentProblem, match="not a git checkout"):
        plan_setup(observe_tree(target), SetupOptions(target=target))
    r = run_cli("setup", "--dry-run", "--dir", str(target))
    assert r.returncode == 3
    assert "--sd-scripts PATH" in r.stderr


def test_record_existing_install(home: Path, tmp_path: Path) -> None:
    sd = make_fake_sd_scripts(tmp_path / "kohya_ss" / "sd-scripts")
    r = run_cli("setup", "--sd-scripts", str(sd), "--python", sys.executable)
    assert r.returncode == 0, r.stderr
    record = json.loads((home / "lorakit" / "trainer.json").read_text())
    assert record["sd_scripts"] == str(sd.resolve())
    assert record["python"] == sys.executable
    assert record["commit"] == git_head(sd)
    # find_trainer (what train uses) now finds it
    from lorakit.kohya.install import find_trainer

    trainer = find_trainer(env={})
    assert trainer is not None and trainer.sd_scripts == sd.resolve() and trainer.python == sys.executable


def test_record_existing_without_python_needs_a_venv(home: Path, tmp_path: Path) -> None:
    sd = make_fake_sd_scripts(tmp_path / "kohya_ss" / "sd-scripts")
    r = run_cli("setup", "--sd-scripts", str(sd))
    assert r.returncode == 3
    assert "no venv/.venv found" in r.stderr
    venv_py = tmp_path / "kohya_ss" / "venv" / "bin" / "python"  # kohya_ss GUI layout: venv beside
    venv_py.parent.mkdir(parents=True)
    venv_py.symlink_to(sys.executable)
    r = run_cli("setup", "--sd-scripts", str(sd), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert str(venv_py) in r.stdout
    assert not (home / "lorakit" / "trainer.json").exists()


def test_record_existing_rejects_non_sd_scripts(home: Path, tmp_path: Path) -> None:
    r = run_cli("setup", "--sd-scripts", str(tmp_path), "--python", sys.executable)
    assert r.returncode == 3
    assert "is not an sd-scripts checkout" in r.stderr


def test_apply_clones_checks_out_and_stops_at_failing_step(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real apply against a local 'upstream': clone, checkout, venv, pip (offline) — the
    torch install fails without an index and is reported with the step's name."""
    upstream = make_fake_sd_scripts(tmp_path / "upstream")
    commit = git_head(upstream)
    target = tmp_path / "data" / "sd-scripts"
    opts = SetupOptions(target=target, repo=str(upstream), commit=commit, torch_packages=("torch-not-here",))
    plan = plan_setup(observe_tree(target), opts)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    lines: list[str] = []
    with pytest.raises(EnvironmentProblem, match="'install torch' failed") as info:
        apply_setup(plan, echo=lines.append)
    assert info.value.exit_code == 3
    assert git_head(target) == commit
    assert (target / "venv" / "bin" / "python").exists()
    assert lines[0].startswith("[1/7] clone sd-scripts: git clone ")
    assert not (home / "lorakit" / "trainer.json").exists()  # recorded only after success
    assert os.environ["PIP_NO_INDEX"] == "1"


def test_setup_pins_the_commit_of_the_flag_manifest() -> None:
    from lorakit.kohya.manifest import manifest_commit

    assert manifest_commit() == SD_SCRIPTS_COMMIT
