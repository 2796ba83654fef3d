"""Typed errors. Each carries the exit code of DESIGN.md's table; the CLI edge turns
one into a single clear message (what, where, fix) and that exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class LorakitError(Exception):
    """Base of every error lorakit reports to the user."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        return self.message if not self.fix else f"{self.message}\nFix: {self.fix}"


class ConfigError(LorakitError):
    """A preset, YAML file or override is wrong. ``problems`` holds every problem found."""

    def __init__(self, problems: list[str], *, fix: str | None = None) -> None:
        self.problems = problems
        text = problems[0] if len(problems) == 1 else "\n".join(f"- {p}" for p in problems)
        super().__init__(text, fix=fix)


class DatasetError(LorakitError):
    """The dataset folder is missing, empty or unusable."""


class EnvironmentProblem(LorakitError):
    """Something outside the config is missing: GPU, driver, sd-scripts install, a package."""

    exit_code = EXIT_ENVIRONMENT


class TrainingFailed(LorakitError):
    """The trainer ran and failed (OOM, NaN, crash)."""

    exit_code = EXIT_TRAINING_FAILED


class Interrupted(LorakitError):
    exit_code = EXIT_INTERRUPTED


def save_crash(exc: BaseException) -> str:
    """Write the traceback to a file the user can attach; its path (or why there is none)."""
    import os
    import sys
    import tempfile
    import time
    import traceback

    from lorakit import __version__ as version

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    argv = " ".join(sys.argv)
    try:
        fd, path = tempfile.mkstemp(prefix=f"lorakit-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"lorakit {version}\nargv: {argv}\n\n{text}")
        return path
    except OSError:
        return "(no file could be written; run again with LORAKIT_DEBUG=1 to see it)"
