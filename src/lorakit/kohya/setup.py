# Over ~400 lines because: the whole sd-scripts install/doctor flow (plan, apply, record, probe).
"""Installing sd-scripts (`lorakit setup`) and checking an install (`lorakit doctor`).

Plan and apply are split (the pip-tools pattern): :func:`observe_tree` looks at the
target folder, :func:`plan_setup` is a pure function from that observation and the options
to the list of commands, :func:`apply_setup` runs them (argv lists, never a shell) and
records the result in ``trainer.json`` (the file :mod:`lorakit.kohya.install` reads).

The doctor part runs ONE child process in the trainer's Python that prints JSON (package
versions through ``importlib.metadata``, and what torch says about CUDA), with a timeout,
so a broken trainer environment is reported, never imported into lorakit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorakit.errors import EnvironmentProblem
from lorakit.fs import atomic_write
from lorakit.kohya.install import TRAIN_SCRIPTS, _venv_python, find_trainer, is_sd_scripts
from lorakit.kohya.install import data_home as data_home
from lorakit.kohya.install import record_file as record_file

SD_SCRIPTS_REPO = "https://github.com/kohya-ss/sd-scripts.git"
# The commit lorakit's flag tables and log parser were tested against (H200 runs, 2026-11).
SD_SCRIPTS_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"
# sd-scripts leaves torch to the user; its README installs a CUDA build from PyTorch's index.
TORCH_PACKAGES = ("torch==2.6.0", "torchvision==0.21.0")
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu124"
# Beyond sd-scripts' requirements.txt: 8-bit optimizers and LyCORIS (versions seen working).
EXTRA_PACKAGES = ("bitsandbytes>=0.45", "lycoris-lora==4.1.3")
XFORMERS_PACKAGE = "xformers"

# Packages `doctor` reports, by distribution name; `required` ones make it exit 3 when absent.
PROBED_PACKAGES: dict[str, bool] = {
    "torch": True,
    "accelerate": True,
    "diffusers": True,
    "transformers": True,
    "safetensors": True,
    "bitsandbytes": False,
    "lycoris-lora": False,
    "xformers": False,
    "tensorboard": False,  # in sd-scripts' requirements.txt; without it accelerate drops the logger silently
}
# What an optional package is for, said next to a missing one.
PACKAGE_PURPOSE: dict[str, str] = {
    "tensorboard": "the per-step loss curve (lorakit falls back to the progress bar's 3-digit running average)",
}
PROBE_TIMEOUT_S = 120.0
LOW_DISK_GIB = 10.0


def default_install_dir() -> Path:
    return data_home() / "sd-scripts"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# ---------------------------------------------------------------------------------------
# setup: observe → plan (pure) → apply


@dataclass(frozen=True)
class TreeState:
    """What is at the install target before setup runs."""

    path: Path
    exists: bool
    is_git: bool = False
    head: str | None = None
    venv_python_exists: bool = False


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    cwd: Path | None = None

    def text(self) -> str:
        cmd = shlex.join(self.argv)
        return f"cd {shlex.quote(str(self.cwd))} && {cmd}" if self.cwd else cmd


@dataclass(frozen=True)
class SetupPlan:
    sd_scripts: Path
    venv: Path
    python: Path
    commit: str
    steps: tuple[Step, ...]

    def record(self) -> dict[str, str]:
        return {"sd_scripts": str(self.sd_scripts), "python": str(self.python), "commit": self.commit}


@dataclass(frozen=True)
class SetupOptions:
    target: Path
    base_python: str = sys.executable
    venv: Path | None = None  # default: <target>/venv (found by install.find_trainer)
    repo: str = SD_SCRIPTS_REPO
    commit: str = SD_SCRIPTS_COMMIT
    xformers: bool = False
    torch_packages: tuple[str, ...] = TORCH_PACKAGES
    torch_index_url: str | None = TORCH_INDEX_URL
    git: str = "git"


def git_head(path: Path, git: str = "git", timeout: float = 20.0) -> str | None:
    """The commit checked out at ``path`` (a clone or a submodule); None when unknown."""
    if not (path / ".git").exists():
        return None
    try:
        out = subprocess.run(
            [git, "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    head = out.stdout.strip()
    return head if out.returncode == 0 and head else None


def observe_tree(target: Path, venv: Path | None = None, git: str = "git") -> TreeState:
    venv = venv or target / "venv"
    if not target.exists():
        return TreeState(target, exists=False)
    is_git = (target / ".git").exists()
    return TreeState(
        target,
        exists=True,
        is_git=is_git,
        head=git_head(target, git) if is_git else None,
        venv_python_exists=venv_python(venv).is_file(),
    )


def plan_setup(state: TreeState, opts: SetupOptions) -> SetupPlan:
    """The commands that bring ``opts.target`` to the pinned commit with a working venv."""
    target, git = opts.target, opts.git
    venv = opts.venv or target / "venv"
    py = venv_python(venv)
    steps: list[Step] = []
    if not state.exists or (not state.is_git and not any(target.iterdir())):
        steps.append(Step("clone sd-scripts", (git, "clone", opts.repo, str(target))))
        steps.append(
            Step(f"check out {opts.commit[:10]}", (git, "-C", str(target), "checkout", "--detach", opts.commit))
        )
    elif not state.is_git:
        raise EnvironmentProblem(
            f"{target} exists and is not a git checkout of sd-scripts",
            fix=(
                "record an existing install with `lorakit setup --sd-scripts PATH`, or choose another folder "
                "with `lorakit setup --dir DIR`"
            ),
        )
    elif state.head != opts.commit:
        steps.append(Step("fetch sd-scripts", (git, "-C", str(target), "fetch", "origin")))
        steps.append(
            Step(f"check out {opts.commit[:10]}", (git, "-C", str(target), "checkout", "--detach", opts.commit))
        )
    if not state.venv_python_exists:
        steps.append(Step("create the trainer venv", (opts.base_python, "-m", "venv", str(venv))))
    pip = (str(py), "-m", "pip", "install")
    steps.append(Step("upgrade pip", (*pip, "--upgrade", "pip")))
    torch = (*pip, *opts.torch_packages)
    if opts.torch_index_url:
        torch += ("--index-url", opts.torch_index_url)
    steps.append(Step("install torch", torch))
    # requirements.txt ends with `-e .` (sd-scripts' `library` package): run it from the checkout
    steps.append(Step("install sd-scripts requirements", (*pip, "-r", "requirements.txt"), cwd=target))
    extras = [*EXTRA_PACKAGES, *([XFORMERS_PACKAGE] if opts.xformers else [])]
    steps.append(Step("install " + ", ".join(p.split("=")[0].split(">")[0] for p in extras), (*pip, *extras)))
    return SetupPlan(target, venv, py, opts.commit, tuple(steps))


def write_record(record: dict[str, str], path: Path | None = None) -> Path:
    """Write ``trainer.json`` atomically (temp file + rename)."""
    path = path or record_file()
    data = {**record, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path


def apply_setup(plan: SetupPlan, echo: Callable[[str], None] = print) -> Path:
    """Run the plan's commands in order; stop at the first failure. Returns trainer.json."""
    if plan.steps and plan.steps[0].argv[1:2] == ("clone",):
        plan.sd_scripts.parent.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(plan.steps, 1):
        echo(f"[{i}/{len(plan.steps)}] {step.title}: {step.text()}")
        try:
            rc = subprocess.run(list(step.argv), cwd=step.cwd, check=False).returncode
        except OSError as exc:
            raise EnvironmentProblem(
                f"setup step '{step.title}' could not start: {exc}",
                fix=f"install {step.argv[0]} (or put it on PATH) and run lorakit setup again",
            ) from exc
        if rc != 0:
            raise EnvironmentProblem(
                f"setup step '{step.title}' failed (exit code {rc}): {step.text()}",
                fix="read the output above; fix the cause and run `lorakit setup` again (finished steps are skipped "
                "or quick to repeat)",
            )
    if not is_sd_scripts(plan.sd_scripts):
        raise EnvironmentProblem(
            f"{plan.sd_scripts} does not look like sd-scripts after setup (missing {', '.join(TRAIN_SCRIPTS)})",
            fix="remove the folder and run lorakit setup again",
        )
    return write_record(plan.record())


def record_existing(sd_scripts: Path, python: str | None) -> dict[str, str]:
    """The record for an install lorakit did not make (kohya_ss GUI, a manual clone)."""
    sd_scripts = sd_scripts.expanduser()
    if not is_sd_scripts(sd_scripts):
        raise EnvironmentProblem(
            f"{sd_scripts} is not an sd-scripts checkout (it needs {', '.join(TRAIN_SCRIPTS)} and library/)",
            fix="pass the sd-scripts folder itself (in a kohya_ss GUI install: its sd-scripts sub-folder)",
        )
    if python is None:
        python = _venv_python(sd_scripts)
    if python is None:
        raise EnvironmentProblem(
            f"no venv/.venv found in or beside {sd_scripts}",
            fix="pass --python with the interpreter that has that install's torch and accelerate",
        )
    py = Path(python).expanduser()
    resolved = str(py.absolute()) if py.is_file() else shutil.which(python)
    if resolved is None:
        raise EnvironmentProblem(
            f"python {python} not found",
            fix="pass --python with the interpreter of that install's venv (e.g. venv/bin/python)",
        )
    record = {"sd_scripts": str(sd_scripts.resolve()), "python": resolved}
    head = git_head(sd_scripts)
    if head:
        record["commit"] = head
    return record


# ---------------------------------------------------------------------------------------
# doctor

Status = Literal["ok", "warn", "missing"]

PROBE_SCRIPT = r"""
import json, sys
try:
    from importlib import metadata
except ImportError:
    metadata = None
out = {"python": sys.version.split()[0], "executable": sys.executable, "packages": {}}
for name in NAMES:
    try:
        out["packages"][name] = metadata.version(name) if metadata else None
    except Exception:
        out["packages"][name] = None
try:
    import torch
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = bool(torch.cuda.is_available())
    n = torch.cuda.device_count() if out["cuda_available"] else 0
    out["devices"] = [torch.cuda.get_device_name(i) for i in range(n)]
except Exception as exc:
    out["torch_error"] = type(exc).__name__ + ": " + str(exc)
print("LORAKIT_PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    required: bool = True
    fix: str | None = None


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(c.required and c.status == "missing" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "probe": self.probe}


def probe_python(
    python: str, names: Sequence[str], cwd: Path | None = None, timeout: float = PROBE_TIMEOUT_S
) -> dict[str, Any]:
    """Run the probe in ``python``; returns its JSON, or ``{"error": ...}``."""
    script = f"NAMES = {list(names)!r}\n{PROBE_SCRIPT}"
    try:
        out = subprocess.run(
            [python, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not answer within {timeout:g} s"}
    except OSError as exc:
        return {"error": f"cannot run: {exc}"}
    for line in out.stdout.splitlines():
        if line.startswith("LORAKIT_PROBE "):
            with contextlib.suppress(ValueError):
                data = json.loads(line[len("LORAKIT_PROBE ") :])
                if isinstance(data, dict):
                    return data
    tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit code {out.returncode}: {tail[0]}"}


def nvml_gpus() -> tuple[list[dict[str, Any]], str | None]:
    """(GPUs seen by NVML as dicts, None) or ([], why not). Never raises."""
    from lorakit.gpu.nvml import list_gpus

    try:
        return [g.to_json() for g in list_gpus(processes=False)], None
    except EnvironmentProblem as exc:
        return [], exc.message


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def run_doctor(
    sd_scripts: Path | None = None,
    runs_dir: Path = Path("runs"),
    timeout: float = PROBE_TIMEOUT_S,
    pinned: str | None = None,
) -> DoctorReport:
    """Every check; ``pinned`` defaults to the commit of the flag manifest (what the argv
    lorakit builds is checked against), which `lorakit setup` installs."""
    if pinned is None:
        from lorakit.kohya.manifest import manifest_commit

        pinned = manifest_commit()
    report = DoctorReport()
    add = report.checks.append
    setup_fix = "run `lorakit setup`, or record an existing install with `lorakit setup --sd-scripts PATH`"
    try:
        trainer = find_trainer(sd_scripts)
    except EnvironmentProblem as exc:
        add(Check("sd-scripts", "missing", exc.message, fix=exc.fix))
        trainer = None
    else:
        if trainer is None:
            add(Check("sd-scripts", "missing", "no install found", fix=setup_fix))
    if trainer is not None:
        add(Check("sd-scripts", "ok", str(trainer.sd_scripts)))
        head = git_head(trainer.sd_scripts)
        if head == pinned:
            add(Check("sd-scripts commit", "ok", f"{head[:10]} (the tested commit)", required=False))
        else:
            add(
                Check(
                    "sd-scripts commit",
                    "warn",
                    f"{head[:10] if head else 'unknown (not a git checkout)'}; lorakit is tested with {pinned[:10]}",
                    required=False,
                    fix=f"git -C {trainer.sd_scripts} checkout {pinned} (or `lorakit setup`); other commits "
                    "usually work but flags may differ",
                )
            )
        probe = probe_python(trainer.python, list(PROBED_PACKAGES), cwd=trainer.sd_scripts, timeout=timeout)
        report.probe = probe
        if "error" in probe:
            add(Check("trainer python", "missing", f"{trainer.python}: {probe['error']}", fix=setup_fix))
        else:
            add(Check("trainer python", "ok", f"{probe.get('executable', trainer.python)} (Python {probe['python']})"))
            versions: dict[str, str | None] = probe.get("packages", {})
            for name, required in PROBED_PACKAGES.items():
                v = versions.get(name)
                if v:
                    add(Check(name, "ok", v, required=required))
                else:
                    add(
                        Check(
                            name,
                            "missing" if required else "warn",
                            "not installed in the trainer python"
                            + (f": needed for {PACKAGE_PURPOSE[name]}" if name in PACKAGE_PURPOSE else ""),
                            required=required,
                            fix=f"{shlex.quote(trainer.python)} -m pip install {name}",
                        )
                    )
            if probe.get("cuda_available"):
                devices = ", ".join(probe.get("devices", []))
                add(Check("CUDA", "ok", f"CUDA {probe.get('torch_cuda')}: {devices}"))
            else:
                why = probe.get("torch_error") or (
                    f"torch built for CUDA {probe['torch_cuda']} sees no GPU"
                    if probe.get("torch_cuda")
                    else "torch is a CPU-only build"
                    if versions.get("torch")
                    else "torch is not installed"
                )
                add(
                    Check(
                        "CUDA",
                        "missing",
                        why,
                        fix="install an NVIDIA driver and a CUDA build of torch (lorakit setup does), and check "
                        "CUDA_VISIBLE_DEVICES",
                    )
                )
    gpus, why = nvml_gpus()
    if gpus:
        text = "; ".join(f"{g['index']}: {g['name']} {g['free_gib']:.1f}/{g['total_gib']:.1f} GiB free" for g in gpus)
        add(Check("NVML", "ok", text, required=False))
    else:
        add(
            Check(
                "NVML",
                "warn",
                why or "no GPU",
                required=False,
                fix="without NVML lorakit cannot check free VRAM or show GPU use; install the NVIDIA driver",
            )
        )
    where = _existing_parent(runs_dir)
    free = shutil.disk_usage(where).free / 2**30
    add(
        Check(
            "disk",
            "ok" if free >= LOW_DISK_GIB else "warn",
            f"{free:.1f} GiB free at {where}",
            required=False,
            fix=None if free >= LOW_DISK_GIB else "checkpoints are ~0.1-1 GB each and cached latents more; free space",
        )
    )
    return report
