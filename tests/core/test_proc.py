"""lorakit.proc: the one child environment and the one new-process-group start."""

from __future__ import annotations

import os
import sys

import pytest

from lorakit.proc import child_env, popen_group


def test_child_env_table() -> None:
    base = {"PATH": "/bin", "PYTHONPATH": "old"}
    assert child_env(base=base) == {
        "PATH": "/bin",
        "PYTHONPATH": "old",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",
    }
    # the user's encoding is kept; extra wins over everything
    env = child_env({"PYTHONUNBUFFERED": "0", "X": "1"}, base={"PYTHONIOENCODING": "latin-1"})
    assert env == {"PYTHONIOENCODING": "latin-1", "PYTHONUNBUFFERED": "0", "X": "1"}
    # not a Python child: nothing added; python_path goes first, in order
    env = child_env(python=False, python_path=("src", "sd"), base=base)
    assert env == {"PATH": "/bin", "PYTHONPATH": os.pathsep.join(["src", "sd", "old"])}
    assert child_env(python=False, python_path=("a",), base={})["PYTHONPATH"] == "a"


@pytest.mark.skipif(os.name != "posix", reason="sessions are POSIX")
def test_popen_group_starts_a_session_of_its_own_with_the_env() -> None:
    code = "import os, sys; sys.stdout.write(f\"{os.getsid(0)} {os.environ['PYTHONIOENCODING']}\")"
    proc = popen_group([sys.executable, "-c", code], env=child_env())
    out, _ = proc.communicate(timeout=30)
    sid, enc = out.decode().split()
    assert int(sid) == proc.pid and proc.pid != os.getsid(0)
    assert enc == os.environ.get("PYTHONIOENCODING", "utf-8")
    assert proc.returncode == 0 and proc.stdin is None
