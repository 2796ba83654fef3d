"""The sd-scripts log parser against every recorded log (tests/fixtures/sdscripts, see its
README): exact figures as they appear in those logs, and the same events whatever the chunking."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    ErrorEvent,
    Event,
    Progress,
    StateSaved,
    WarningEvent,
)
from lorakit.kohya.logparse import LogParser, cell_len
from tests.run.conftest import FIXTURES, fixture_log

ALL_LOGS = [
    "sdxl_success.log",
    "sdxl_success_80col.log",
    "sdxl_resume.log",
    "sdxl_nan.log",
    "sdxl_oom.log",
    "missing_model.log",
    "missing_module.log",
    "sd3_success.log",
    "flux_success.log",
]


def parse(path: Path, sizes: tuple[int, int] | None = None, seed: int = 0) -> tuple[LogParser, list[Event]]:
    """Parse a log as bytes decoded like the runner does, whole or in random-sized chunks."""
    import codecs

    data = path.read_bytes()
    parser = LogParser()
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    events: list[Event] = []
    if sizes is None:
        events += parser.feed(dec.decode(data, final=True))
    else:
        rnd = random.Random(seed)
        i = 0
        while i < len(data):
            n = rnd.randint(*sizes)
            events += parser.feed(dec.decode(data[i : i + n]))
            i += n
        events += parser.feed(dec.decode(b"", final=True))
    return parser, events + parser.flush()


def of(events: list[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


def steps(events: list[Event]) -> list[tuple[int, int, float | None]]:
    return [(p.step, p.total, p.avr_loss) for p in of(events, Progress)]


@pytest.mark.parametrize("name", ALL_LOGS)
def test_chunking_does_not_change_events(name: str) -> None:
    path = fixture_log(name)
    _, whole = parse(path)
    for sizes, seed in (((1, 1), 0), ((1, 7), 1), ((50, 4000), 2), ((1, 300), 3)):
        _, chunked = parse(path, sizes, seed)
        assert [e.to_json() for e in chunked] == [e.to_json() for e in whole], (sizes, seed)


@pytest.mark.parametrize("name", ALL_LOGS)
def test_every_fixture_progress_is_one_event_per_step(name: str) -> None:
    _, events = parse(fixture_log(name))
    got = [p.step for p in of(events, Progress)]
    assert got == list(range(1, len(got) + 1))
    assert all(e.t == 0.0 for e in events)  # the parser has no clock; the runner stamps times


def test_sdxl_success() -> None:
    parser, events = parse(fixture_log("sdxl_success.log"))
    (ds,) = of(events, DatasetSummary)
    assert (ds.images_x_repeats, ds.batches_per_epoch, ds.epochs, ds.batch_size, ds.grad_accum, ds.total_steps) == (
        4,
        4,
        2,
        1,
        1,
        8,
    )
    assert [(e.epoch, e.total) for e in of(events, EpochStarted)] == [(1, 2), (2, 2)]
    assert steps(events) == [
        (1, 8, 1.03),
        (2, 8, 1.03),
        (3, 8, 1.03),
        (4, 8, 1.03),
        (5, 8, 1.04),  # drawn first with 1.03 (update), then 1.04 (set_postfix): the later one counts
        (6, 8, 1.03),
        (7, 8, 1.03),
        (8, 8, 1.03),
    ]
    s_per_step = [p.s_per_step for p in of(events, Progress)]
    assert s_per_step == [3.22, 1.96, 1.55, 1.34, 1.26, 1.22, 1.15, 1.11]
    assert [(c.path, c.step, c.epoch) for c in of(events, Checkpoint)] == [
        ("<RUN>/sdxl_success-000001.safetensors", 4, 1),
        ("<RUN>/sdxl_success.safetensors", 8, 2),
    ]
    assert [(s.path, s.step, s.epoch) for s in of(events, StateSaved)] == [
        ("<RUN>/sdxl_success-000001-state", 4, 1),
        ("<RUN>/sdxl_success-state", 8, 2),
    ]
    # the checkpoint of epoch 1 comes after step 4 and before epoch 2
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Checkpoint") > kinds.index("EpochStarted")
    assert not of(events, ErrorEvent) and not parser.exceptions
    assert not of(events, WarningEvent)  # "Failed to get git commit hash", "no regularization images": benign
    assert parser.current is not None and (parser.current.step, parser.current.elapsed_s) == (8, 10.0)


def test_80_columns_rewraps_to_the_same_events() -> None:
    _, wide = parse(fixture_log("sdxl_success.log"))
    _, narrow = parse(fixture_log("sdxl_success_80col.log"))
    assert [(e.epoch, e.total) for e in of(narrow, EpochStarted)] == [(1, 2), (2, 2)]
    assert [(s, t, loss) for s, t, loss in steps(narrow)] == [(s, t, loss) for s, t, loss in steps(wide)]
    # rich folded these paths mid-word at the column width; they come back whole
    assert [(s.path, s.step, s.epoch) for s in of(narrow, StateSaved)] == [
        ("<RUN>/sdxl_success_80col-000001-state", 4, 1),
        ("<RUN>/sdxl_success_80col-state", 8, 2),
    ]
    assert [c.path for c in of(narrow, Checkpoint)] == [
        "<RUN>/sdxl_success_80col-000001.safetensors",
        "<RUN>/sdxl_success_80col.safetensors",
    ]
    assert not of(narrow, WarningEvent)


def test_resume_log() -> None:
    parser, events = parse(fixture_log("sdxl_resume.log"))
    assert parser.resumed_from == "<RUNS>/sdxl_success/sdxl_success-000001-state"
    assert parser.loaded_state == (1, 4)
    (ds,) = of(events, DatasetSummary)
    assert (ds.epochs, ds.total_steps) == (3, 12)
    assert [(e.epoch, e.total) for e in of(events, EpochStarted)] == [(2, 3), (3, 3)]
    # sd-scripts' counter starts again at 1 and stops at 8/12: the 4 resumed steps are not counted
    assert steps(events) == [
        (1, 12, 1.03),
        (2, 12, 1.03),
        (3, 12, 1.03),
        (4, 12, 1.03),
        (5, 12, 1.02),
        (6, 12, 1.02),
        (7, 12, 1.02),
        (8, 12, 1.02),
    ]
    assert [(c.path, c.step) for c in of(events, Checkpoint)] == [
        ("<RUN>/sdxl_resume-000002.safetensors", 4),
        ("<RUN>/sdxl_resume.safetensors", 8),
    ]


def test_resume_with_initial_step_warns_nothing() -> None:
    # the recorded resume log has sd-scripts' "steps from the state is ignored because initial_step is
    # specified": lorakit passes --initial_step itself, so it is no warning for the user
    text = fixture_log("sdxl_resume_skip.log").read_text(encoding="utf-8")
    assert "steps from the state is ignored because initial_step is specified" in text
    _, events = parse(fixture_log("sdxl_resume_skip.log"))
    assert not of(events, WarningEvent)


def test_nan_log() -> None:
    parser, events = parse(fixture_log("sdxl_nan.log"))
    progress = of(events, Progress)
    assert [p.avr_loss for p in progress[:2]] == [1.03, 1.01]
    assert all(p.avr_loss is not None and math.isnan(p.avr_loss) for p in progress[2:])
    assert len(progress) == 8
    (err,) = of(events, ErrorEvent)
    assert err.kind == "nan" and err.evidence == "avr_loss=nan at step 3"
    assert "step 3/8" in err.message
    # the error comes right after the first NaN step, not at the end
    assert events.index(err) == events.index(progress[2]) + 1
    assert parser.nan_seen
    assert [c.path for c in of(events, Checkpoint)] == ["<RUN>/sdxl_nan.safetensors"]  # it saved anyway (exit 0)


def test_oom_log() -> None:
    parser, events = parse(fixture_log("sdxl_oom.log"))
    (ds,) = of(events, DatasetSummary)
    assert (ds.images_x_repeats, ds.batches_per_epoch, ds.batch_size, ds.total_steps) == (32, 1, 32, 2)
    assert not of(events, Progress)  # died in the first step
    (err,) = of(events, ErrorEvent)
    assert err.kind == "oom"
    assert err.evidence is not None and err.evidence.startswith(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 640.00 MiB. GPU 0 has a total capacity of "
        "139.80 GiB of which 121.12 MiB is free."
    )
    assert [x.name for x in parser.exceptions] == ["torch.OutOfMemoryError", "subprocess.CalledProcessError"]


def test_missing_model_log() -> None:
    parser, events = parse(fixture_log("missing_model.log"))
    (err,) = of(events, ErrorEvent)
    assert err.kind == "missing_model"
    assert err.message == "the trainer could not find the model file <MODEL>/sdxl/does_not_exist.safetensors"
    assert parser.exceptions[0].line.startswith(
        'ValueError: The provided pretrained_model_name_or_path "<MODEL>/sdxl/does_not_exist.safetensors" is '
        "neither a valid local path nor a valid repo id."
    )
    assert not of(events, Progress) and not of(events, DatasetSummary)


def test_missing_module_log() -> None:
    parser, events = parse(fixture_log("missing_module.log"))
    (err,) = of(events, ErrorEvent)
    assert err.kind == "missing_package"
    assert err.evidence == "ModuleNotFoundError: No module named 'lycoris'"
    assert err.message == "the trainer's Python lacks the package 'lycoris'"
    assert parser.exceptions[0].line == "ModuleNotFoundError: No module named 'lycoris'"


def test_sd3_success() -> None:
    _, events = parse(fixture_log("sd3_success.log"))
    assert steps(events) == [
        (1, 8, 1.19),
        (2, 8, 0.891),
        (3, 8, 1.02),
        (4, 8, 0.987),
        (5, 8, 0.938),
        (6, 8, 0.793),
        (7, 8, 1.35),
        (8, 8, 1.22),
    ]
    progress = of(events, Progress)
    assert progress[0].s_per_step == 1.15
    assert progress[-1].s_per_step == pytest.approx(1 / 1.52)  # "1.52it/s": faster than 1 step/s
    assert [c.path for c in of(events, Checkpoint)] == [
        "<RUN>/sd3_success-000001.safetensors",
        "<RUN>/sd3_success.safetensors",
    ]
    assert not of(events, StateSaved) and not of(events, ErrorEvent)


def test_flux_success() -> None:
    """flux_train_network.py, `lorakit train --preset flux-dev` on the H200 (README: flux_success.log)."""
    _, events = parse(fixture_log("flux_success.log"))
    (ds,) = of(events, DatasetSummary)
    assert (ds.images_x_repeats, ds.batches_per_epoch, ds.epochs, ds.batch_size) == (10, 10, 1, 1)
    assert [(p.step, p.total) for p in of(events, Progress)][-1] == (6, 6)
    assert {p.avr_loss for p in of(events, Progress)} == {1.25}
    assert [c.path for c in of(events, Checkpoint)] == ["<RUN>/flux-dev.safetensors"]
    assert not of(events, ErrorEvent)


def test_cell_len() -> None:
    assert cell_len("abc") == 3
    assert cell_len("学習") == 4


def test_fixture_readme_present() -> None:
    if not FIXTURES.is_dir():
        pytest.skip("fixtures not captured yet")
    assert (FIXTURES / "README.md").is_file()
