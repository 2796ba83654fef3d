"""The ±10 % target, read from the measurement files: the estimator fails here if it drifts.

- every row of gpu/data/vram_calibration.json (the grid measured on the GPU machine) must be within
  ±10 % of the measured peak — the rows the fit uses and the validation rows (fp8 base, text
  encoders on the GPU, SD 3.5 large) alike — and so must its training-phase and set-up peaks;
- field-notes rows (other days and set-ups, whole-device readings; the same SDXL configs read
  1–16 % higher there than in the grid): within ±15 %, validation rows (LoCon) ±20 %;
- the stored coefficients must be what a refit of the current data gives (refit with
  ``python -m lorakit.gpu.calibrate --write`` when the data changes);
- docs/vram.md must show the current grid (``python -m lorakit.gpu.calibrate --docs docs/vram.md``).
"""

from __future__ import annotations

import json

import pytest

from lorakit.gpu import calibrate
from lorakit.gpu.estimate import COEFFICIENTS_FILE, Coefficients, load_coefficients
from lorakit.gpu.measurements import CALIBRATION_FILE, load_all, with_peak
from tests.conftest import REPO

ROWS, SKIPPED = load_all()
PEAK_ROWS = with_peak(ROWS)


def _ids(rows: list) -> list[str]:  # type: ignore[type-arg]
    return [f"{r.source}:{r.id}" for r in rows]


def test_there_are_measurements() -> None:
    assert len(PEAK_ROWS) >= 12
    families = {r.shape.family for r in PEAK_ROWS}
    assert families == {"sdxl", "sd3.5-medium", "sd3.5-large"}


GRID = [r for r in PEAK_ROWS if r.source != "field-notes"]
NOTES = [r for r in PEAK_ROWS if r.source == "field-notes"]


def _err(est: float, measured: float) -> float:
    return est / measured - 1


@pytest.mark.parametrize("row", GRID, ids=_ids(GRID))
def test_grid_within_ten_percent(row) -> None:  # type: ignore[no-untyped-def]
    from lorakit.gpu.estimate import estimate

    e = estimate(row.shape)
    checks = [("peak", e.peak_gib, row.peak_gib)]
    if row.peak_train_gib:
        checks.append(("training phase", e.training.gib, row.peak_train_gib))
    if row.peak_setup_gib:
        checks.append(("set-up", e.setup_gib, row.peak_setup_gib))
    for what, est, measured in checks:
        err = _err(est, measured)
        assert abs(err) <= 0.10, f"{row.id} {what}: estimate {est:.2f} GiB vs measured {measured:.2f} GiB ({err:+.1%})"


@pytest.mark.parametrize("row", NOTES, ids=_ids(NOTES))
def test_field_notes_rows(row) -> None:  # type: ignore[no-untyped-def]
    from lorakit.gpu.estimate import estimate

    limit = 0.15 if calibrate.fitted_feature(row.shape) else 0.20
    est = estimate(row.shape).peak_gib
    err = _err(est, row.peak_gib)
    assert abs(err) <= limit, f"{row.id}: estimate {est:.2f} GiB vs measured {row.peak_gib:.2f} GiB ({err:+.1%})"


def test_calibration_grid_covers_the_issue_when_present() -> None:
    if not CALIBRATION_FILE.is_file():
        pytest.skip("vram_calibration.json not committed yet: fitted on the field-notes figures")
    grid = [r for r in PEAK_ROWS if r.source == "calibration"]
    sdxl = {(r.shape.batch_size, r.shape.gradient_checkpointing, r.shape.dim) for r in grid if r.shape.family == "sdxl"}
    assert {(b, gc, d) for b in (1, 2, 4, 8) for gc in (False, True) for d in (16, 128)} <= sdxl
    medium = {r.shape.batch_size for r in grid if r.shape.family == "sd3.5-medium"}
    assert {1, 4} <= medium
    data = json.loads(CALIBRATION_FILE.read_text())
    text = json.dumps(data)
    for key in ("gpu", "sd_scripts_commit", "date"):
        assert key in text, f"the calibration data should record {key}"


def test_stored_coefficients_are_a_fit_of_the_current_data() -> None:
    stored = load_coefficients()
    assert COEFFICIENTS_FILE.is_file()
    refit = calibrate.fit(ROWS)
    from lorakit import families
    from lorakit.gpu.estimate import DENOISER_KINDS

    names = ["overhead", *families.NAMES, *(f"gc {k}" for k in DENOISER_KINDS), "grad overlap"]
    for name, a, b in zip(names, stored.as_vector(), refit.as_vector(), strict=True):
        assert a == pytest.approx(b, rel=0.01), (
            f"{name}: stored {a} vs refit {b}; run python -m lorakit.gpu.calibrate --write"
        )
    assert stored.meta.get("method") and stored.meta.get("sources")


def test_coefficients_file_round_trips() -> None:
    stored = load_coefficients()
    again = Coefficients.from_json(json.loads(json.dumps(stored.to_json())))
    assert again.as_vector() == pytest.approx(stored.as_vector(), rel=1e-3)


def test_docs_show_the_current_grid() -> None:
    doc = (REPO / "docs" / "vram.md").read_text(encoding="utf-8")
    table = calibrate.markdown(calibrate.grid(ROWS))
    assert table in doc, "docs/vram.md is stale: python -m lorakit.gpu.calibrate --docs docs/vram.md"
