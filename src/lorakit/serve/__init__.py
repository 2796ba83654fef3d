"""``lorakit serve``: a local web dashboard over the same core functions as the CLI.

Needs the ``serve`` extra (starlette, uvicorn, jinja2); :func:`require_extra` turns its absence
into one message with the fix.
"""

from __future__ import annotations

from lorakit.errors import EnvironmentProblem


def require_extra() -> None:
    """EnvironmentProblem (exit 3) when the serve extra is not installed."""
    missing = []
    for name in ("starlette", "uvicorn", "jinja2"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise EnvironmentProblem(
            f"lorakit serve needs the serve extra ({', '.join(missing)} not installed)",
            fix="pip install 'lorakit[serve]'",
        )
