"""Config strictness (issue 11, item 7), through the real CLI: repeated YAML keys, NaN/inf,
absurd counts, bad ``--set`` forms and readable union messages; fix hints name only options
that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, make_kohya_dataset
from tests.core.test_cli_errors import assert_clean_error


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """These commands start no child: the CLI runs in this process (tests/conftest.py)."""
    return lorakit_in_process


def test_repeated_key_in_a_yaml_mapping_names_file_and_line(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("extends: comic-style\nnetwork:\n  dim: 64\n  alpha: 8\n  dim: 16\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "-d", str(EXAMPLE), "--dry-run")
    assert_clean_error(res, f"{cfg}: line 5", "key `dim` is repeated (first on line 3)")


def test_repeated_key_inside_a_set_value(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "network.args={a: 1, a: 2}", "--dry-run")
    assert_clean_error(res, "key `a` is repeated")


@pytest.mark.parametrize(
    "setting,needle",
    [
        ("optimizer.lr=.nan", "`optimizer.lr`: Input should be a finite number"),
        ("network.alpha=.inf", "`network.alpha`: Input should be a finite number"),
        ("network.args={a: .nan}", "`a` must be a finite number"),
        ("training.epochs=100000000", "`training.epochs`: Input should be less than or equal to 100000"),
        ("network.dim=100000", "`network.dim`: Input should be less than or equal to 1024"),
        ("training.batch_size=5000", "less than or equal to 1024"),
        ("dataset.repeats=99999999", "less than or equal to 10000"),
        ("training.max_steps=99999999999", "less than or equal to 10000000"),
    ],
)
def test_nan_inf_and_absurd_counts_are_refused(lorakit, setting: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", setting, "--dry-run")
    assert_clean_error(res, needle)


def test_nan_in_a_yaml_file_is_refused(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "nan.yaml"
    cfg.write_text("extends: comic-style\noptimizer:\n  lr: .nan\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "-d", str(EXAMPLE), "--dry-run")
    assert_clean_error(res, f"{cfg}: `optimizer.lr`", "finite")


@pytest.mark.parametrize(
    "setting,needles",
    [
        ("~unknown.key", ("--set ~unknown.key: `unknown.key` is not a known setting",)),
        ("~model.checkpont", ("did you mean `model.checkpoint`?",)),
        ("model.checkpoint=", ("--set model.checkpoint=: no value after '='", "--set ~model.checkpoint")),
        ("trainig.epochs=3", ("`trainig.epochs` is not a known setting", "did you mean `training`?")),
    ],
)
def test_bad_set_forms(lorakit, setting: str, needles: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", setting, "--dry-run")
    assert_clean_error(res, *needles)


@pytest.mark.parametrize("value", ["abc", "[1024, 768, 512]", "0", "1024,x", "[a, 3]"])
def test_resolution_message_has_no_pydantic_internals(lorakit, value: str) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"training.resolution={value}",
                  "--dry-run")  # fmt: skip
    assert_clean_error(res, f"--set training.resolution={value}: `training.resolution`: must be 1024 or [1024, 768]")
    for internal in ("constrained-int", "tuple", "Value error", "int()"):
        assert internal not in res.err, res.err
    assert res.err.count("training.resolution`") == 1  # one message, not one per union member


def test_network_args_message_has_no_pydantic_internals(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "network.args={a: [1]}", "--dry-run")
    assert_clean_error(res, "`a` must be a string, a number or true/false")
    assert "network.args.a.str" not in res.err and "valid boolean" not in res.err


def test_brackets_in_an_error_are_printed(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "training.gpus=[a]", "--dry-run")
    assert_clean_error(res, "--set training.gpus=[a]:")  # not eaten as console markup


def test_set_path_value_is_taken_literally(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "my model #2.safetensors"
    ckpt.write_bytes(b"x")
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={ckpt.name}",
                  "--dry-run", "--json")  # fmt: skip
    assert res.code == 0, res.err
    assert f"--pretrained_model_name_or_path={ckpt}" in res.out


@pytest.mark.parametrize("cmd", [("bench", "-p", "comic-style"), ("resume", "last")])
def test_no_trainer_hint_names_no_dry_run_where_there_is_none(lorakit, tmp_path: Path, cmd) -> None:  # type: ignore[no-untyped-def]
    make_kohya_dataset(tmp_path / "d", {"3_lk thing": 2})
    res = lorakit(*cmd)
    assert "Traceback" not in res.err
    assert "--dry-run" not in res.err, res.err


def test_train_no_trainer_hint_names_dry_run(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "sdxl.safetensors"
    ckpt.write_bytes(b"x")
    data = make_kohya_dataset(tmp_path / "d", {"3_lk thing": 2})
    res = lorakit("train", "-p", "comic-style", "-d", str(data), "--set", f"model.checkpoint={ckpt}")
    assert res.code == 3 and "`--dry-run` shows the plan" in res.err, res.err


@pytest.mark.parametrize("save_state", [True, False])
def test_interrupted_fix_offers_resume_only_with_saved_state(tmp_path: Path, save_state: bool) -> None:
    from lorakit.cli.runs import outcome_error
    from lorakit.run.diagnose import diagnose
    from lorakit.run.runner import RunOutcome

    diag = diagnose(returncode=-2, errors=[], interrupted=True)
    outcome = RunOutcome(tmp_path / "lora-20260101-000000", "interrupted", 130, -2, diag, [], 1.0)
    err = outcome_error(outcome, save_state)
    assert err is not None and err.exit_code == 130 and err.fix is not None
    if save_state:
        assert "lorakit resume lora-20260101-000000" in err.fix
    else:
        assert "resume`" not in err.fix and "cannot be resumed" in err.fix
