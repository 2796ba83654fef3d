"""lorakit.fmt.duration: the one duration formatter, both forms."""

from __future__ import annotations

import pytest

from lorakit.fmt import duration

CASES = [
    (0, "0s", "0m 00s"),
    (5, "5s", "0m 05s"),
    (59.6, "1m00s", "1m 00s"),
    (125, "2m05s", "2m 05s"),
    (3725, "1h02m", "1h 02m 05s"),
    (-5, "-5s", "-0m 05s"),
    (None, "?", "–"),
    (float("inf"), "?", "–"),
    (float("nan"), "?", "–"),
]


@pytest.mark.parametrize(("seconds", "short", "precise"), CASES)
def test_duration_both_forms(seconds: float | None, short: str, precise: str) -> None:
    assert duration(seconds) == short
    assert duration(seconds, precise=True, missing="–") == precise
