"""One mechanism for each job (issue 13): each pattern below may appear only in the module that
owns the job (and in the few places listed with their reason). A second implementation of a
job makes this test fail and names the file; docs/architecture.md says where each job lives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "lorakit"

# pattern → the files (relative to src/lorakit) allowed to contain it
RULES: dict[str, tuple[str, set[str]]] = {
    "atomic write (rename over a file)": (
        r"\bos\.replace\(|\bos\.rename\(|\.replace\((?:path|dest|dst|target)\)|tempfile\.mkstemp",
        {
            "fs.py",
            "cli/main.py",  # the crash report: a new uniquely named file, never a replace
            "dataset/prepare.py",  # swaps whole output folders (directories, not files)
        },
    ),
    "file locking": (r"\bimport fcntl\b|\bimport msvcrt\b", {"run/lock.py"}),
    "signal handlers": (
        r"\bsignal\.signal\(",
        {"run/signals.py", "run/reaper.py"},  # reaper: ignores them on purpose (its docstring)
    ),
    "child-process environment": (
        r"dict\(os\.environ\)|os\.environ\.copy\(\)",
        # readers, which build nothing: find_trainer(env) / data_home(env), physical_gpus(env)
        {"proc.py", "kohya/install.py", "run/lock.py"},
    ),
    "duration formatting": (r"\bdivmod\(", {"fmt.py"}),
    "steady rate (median of step intervals)": (r"statistics\.median\(", {"rate.py"}),
    "TOML string escaping": (r"json\.dumps\(str\(|\\\\u\{code:04X\}", {"toml_out.py"}),
    "steady s/step algorithm": (r"def steady_s_per_step\((?!self)", {"rate.py", "bench.py", "report/summary.py"}),
}
# bench.py and report/summary.py keep their public name as a one-line delegate to lorakit.rate
DELEGATES = {"bench.py", "report/summary.py"}


def sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)).replace("\\", "/"): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


@pytest.mark.parametrize("job", sorted(RULES))
def test_each_job_has_one_home(job: str) -> None:
    pattern, allowed = RULES[job]
    found = sorted(name for name, text in sources().items() if re.search(pattern, text))
    assert [f for f in found if f not in allowed] == [], f"{job}: implemented outside {sorted(allowed)}"


def test_the_kept_names_only_delegate() -> None:
    src = sources()
    for name in DELEGATES:
        body = src[name].split("def steady_s_per_step(", 1)[1].split("\ndef ", 1)[0]
        assert "rate.steady_s_per_step(" in body and "median" not in body, name


def test_the_rules_see_the_homes() -> None:  # the patterns match the real code (so they can fail)
    src = sources()
    for job, (pattern, allowed) in RULES.items():
        assert any(re.search(pattern, src[f]) for f in allowed if f in src), job
