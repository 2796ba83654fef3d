"""Shared test helpers: run the real `lorakit` CLI in a child process, isolated from the
user's data dir and any sd-scripts install of the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "comic-sample"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORAKIT_")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), LORAKIT_HOME=str(home / "lorakit"), COLUMNS="200")
    # the CLI tests train with a stand-in trainer on machines without a GPU; a test of the
    # no-GPU refusal removes this
    env["LORAKIT_ALLOW_NO_GPU"] = "1"
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    return env


@pytest.fixture
def lorakit(isolated_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(*args: str, cwd: Path | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-c", "from lorakit.cli.main import main; main()", *args],
            capture_output=True,
            text=True,
            env=isolated_env,
            cwd=cwd or tmp_path,
            timeout=60,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def lorakit_in_process(isolated_env: dict[str, str], tmp_path: Path, lorakit):  # type: ignore[no-untyped-def]
    """The same CLI call as ``lorakit``, run in this process (the real ``main()``, its error edge
    included, with this environment, folder and argv; stdout/stderr captured): for commands that
    start no child, where a fresh interpreter per call proves nothing more and costs ~2 s.
    LORAKIT_TEST_SUBPROCESS=1 runs them as child processes again (to compare)."""
    import contextlib
    import io

    if os.environ.get("LORAKIT_TEST_SUBPROCESS") == "1":
        return lorakit

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        from lorakit.cli._console import console, err_console
        from lorakit.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        saved_env, saved_cwd, saved_argv = dict(os.environ), Path.cwd(), sys.argv
        # rich fixes a console's width when it is made (COLUMNS then): a test that imported the
        # CLI first, without COLUMNS, left it at 80 and wrapped later tables (order-dependent)
        saved_widths = [c._width for c in (console, err_console)]
        code = 0
        try:
            os.environ.clear()
            os.environ.update(isolated_env)
            for c in (console, err_console):
                c.width = int(isolated_env.get("COLUMNS", "200"))
            os.chdir(cwd or tmp_path)
            sys.argv = ["lorakit", *args]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    if isinstance(exc.code, str):
                        err.write(exc.code + "\n")
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            sys.argv = saved_argv
            for c, w in zip((console, err_console), saved_widths, strict=True):
                c._width = w
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def make_kohya_dataset(root: Path, concepts: dict[str, int], caption: bool = True) -> Path:
    """root/<folder>/img_N.png (+ .txt): real tiny PNGs; concepts maps folder name → image count."""
    import zlib

    def png(path: Path) -> None:
        raw = b"\x00\xff\x00\x00" * 1  # one RGB pixel row with filter byte

        def chunk(kind: bytes, data: bytes) -> bytes:
            return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

        ihdr = (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
        path.write_bytes(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        )

    for folder, count in concepts.items():
        d = root / folder
        d.mkdir(parents=True)
        for i in range(count):
            png(d / f"img_{i:02d}.png")
            if caption:
                (d / f"img_{i:02d}.txt").write_text(f"tag{i}, thing", encoding="utf-8")
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stand_in_sd_scripts(root: Path) -> Path:
    """An sd-scripts-shaped folder (the scripts lorakit looks for, and library/) at ``root``."""
    from lorakit.kohya.install import TRAIN_SCRIPTS

    (root / "library").mkdir(parents=True)
    for name in TRAIN_SCRIPTS:
        (root / name).write_text("# stand-in\n", encoding="utf-8")
    return root
