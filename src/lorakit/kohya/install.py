"""Finding the sd-scripts install lorakit launches (the runner issue adds `lorakit setup`).

Order: explicit ``--sd-scripts PATH`` → ``LORAKIT_SD_SCRIPTS`` → the install recorded by
``lorakit setup`` in the user data dir. The trainer's Python is ``LORAKIT_PYTHON``, else a
``venv``/``.venv`` beside or inside the sd-scripts folder (kohya_ss GUI layout), else the
recorded one, else this interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lorakit import families
from lorakit.errors import EnvironmentProblem

# what makes a folder an sd-scripts checkout; a family's own script is checked when a run of that
# family is planned (lorakit/planning.py), so an older checkout still trains the families it has
TRAIN_SCRIPTS = ("train_network.py", families.get(families.DEFAULT).script)


@dataclass(frozen=True)
class Trainer:
    sd_scripts: Path
    python: str
    found: bool = True  # False: placeholder for a dry run without an install


PLACEHOLDER = Trainer(Path("<sd-scripts>"), "python", found=False)


def data_home(env: dict[str, str] | None = None) -> Path:
    """lorakit's data folder: ``LORAKIT_HOME`` if set, else the platformdirs user data dir."""
    env = dict(os.environ) if env is None else env
    if env.get("LORAKIT_HOME"):
        return Path(env["LORAKIT_HOME"]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("lorakit"))


def record_file() -> Path:
    return data_home() / "trainer.json"


def _venv_python(sd_scripts: Path) -> str | None:
    for base in (sd_scripts, sd_scripts.parent):
        for name in ("venv", ".venv"):
            for rel in ("bin/python", "Scripts/python.exe"):
                candidate = base / name / rel
                if candidate.is_file():
                    return str(candidate)
    return None


def is_sd_scripts(path: Path) -> bool:
    return all((path / name).is_file() for name in TRAIN_SCRIPTS) and (path / "library").is_dir()


def find_trainer(explicit: Path | None = None, env: dict[str, str] | None = None) -> Trainer | None:
    env = dict(os.environ) if env is None else env
    recorded: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(record_file().read_text(encoding="utf-8"))
    source = explicit or (Path(env["LORAKIT_SD_SCRIPTS"]) if env.get("LORAKIT_SD_SCRIPTS") else None)
    if source is None and recorded.get("sd_scripts"):
        source = Path(recorded["sd_scripts"])
    if source is None:
        return None
    source = source.expanduser()
    if not is_sd_scripts(source):
        raise EnvironmentProblem(
            f"{source} is not an sd-scripts checkout (it needs {', '.join(TRAIN_SCRIPTS)} and library/)",
            fix="point --sd-scripts / LORAKIT_SD_SCRIPTS at the sd-scripts folder, or run lorakit setup",
        )
    python = env.get("LORAKIT_PYTHON") or _venv_python(source) or recorded.get("python") or sys.executable
    return Trainer(source.resolve(), python)


def require_trainer(explicit: Path | None = None, *, dry_run_hint: bool = False) -> Trainer:
    """The trainer, or EnvironmentProblem. ``dry_run_hint``: the command has a ``--dry-run``
    (only `train` does) that plans without one, so the fix may name it."""
    trainer = find_trainer(explicit)
    if trainer is None:
        raise EnvironmentProblem(
            "no sd-scripts install found, so nothing can train",
            fix="run `lorakit setup`, or point lorakit at an existing one with --sd-scripts PATH "
            "or LORAKIT_SD_SCRIPTS=PATH (kohya_ss GUI users: its sd-scripts sub-folder)"
            + ("; `--dry-run` shows the plan without one" if dry_run_hint else ""),
        )
    return trainer
