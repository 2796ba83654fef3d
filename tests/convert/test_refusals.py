"""What lorakit does not train is refused with exit 2 and a message naming what the file is;
a broken file gets one clear message, never a traceback (the real CLI, in a child process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.convert.api import import_config
from lorakit.errors import ConfigError
from tests.convert.conftest import FIXTURES, SD15_PRESETS, SDXL_PRESETS


def _one_message(res) -> str:  # type: ignore[no-untyped-def]
    assert res.code == 2, (res.out, res.err)
    assert "Traceback" not in res.err + res.out
    assert res.err.count("error: ") == 1
    return " ".join(res.err.split("error: ", 1)[1].split())


@pytest.mark.parametrize("preset", SD15_PRESETS, ids=lambda p: p.name)
def test_sd15_presets_are_refused(preset: Path, lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    msg = _one_message(lorakit("import", str(preset), "-o", str(tmp_path / "x.yaml")))
    assert "an SD 1.x LoRA config" in msg and "lorakit trains LoRA / LyCORIS networks for SDXL and SD 3.5" in msg
    assert not (tmp_path / "x.yaml").exists()


def test_sd15_presets_are_all_here() -> None:
    assert len(SD15_PRESETS) == 11 and len(SDXL_PRESETS) == 19


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("test-config-SDXL-Standard-AdamW.json", "a DreamBooth / full fine-tune config (kohya_ss GUI, DreamBooth tab)"),
    ],
)
def test_other_families_and_tabs_are_refused(name: str, words: str, lorakit) -> None:  # type: ignore[no-untyped-def]
    assert words in _one_message(lorakit("import", str(FIXTURES / name)))


def test_other_gui_model_lines_are_refused(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    """Flux.1 imports now (test_flux.py); the GUI's other DiT lines and a Flux network on SDXL do not."""
    flux = json.loads((FIXTURES / "flux1D - adamw8bit fp8.json").read_text())
    (tmp_path / "hy.json").write_text(json.dumps(flux | {"flux1_checkbox": False, "hunyuan_image_checkbox": True}))
    msg = _one_message(lorakit("import", str(tmp_path / "hy.json")))
    assert "a HunyuanImage-2.1 LoRA config (hunyuan_image_checkbox is on)" in msg
    (tmp_path / "mixed.json").write_text(json.dumps(flux | {"flux1_checkbox": False, "sdxl": True}))
    assert "LoRA_type 'Flux1' is a network for another model" in _one_message(
        lorakit("import", str(tmp_path / "mixed.json"))
    )


def test_sd2_and_textual_inversion(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    v2 = json.loads((FIXTURES / "sd15 - EDG_LoraOptiSettings.json").read_text()) | {"v2": True}
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    assert "an SD 2.x LoRA config" in _one_message(lorakit("import", str(tmp_path / "v2.json")))
    ti = {"token_string": "tok", "init_word": "*", "num_vectors_per_token": 8, "learning_rate": 1e-4}
    (tmp_path / "ti.json").write_text(json.dumps(ti))
    assert "a textual-inversion config" in _one_message(lorakit("import", str(tmp_path / "ti.json")))
    (tmp_path / "ft.sh").write_text("accelerate launch sdxl_train.py --learning_rate=1e-5\n")
    assert "an SDXL full fine-tune launch (sdxl_train.py)" in _one_message(lorakit("import", str(tmp_path / "ft.sh")))


def test_sd3_needs_its_size(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((FIXTURES / "SDXL - LoRA AI_Now prodigy v1.0.json").read_text())
    data |= {"sdxl": False, "sd3_checkbox": True, "bucket_no_upscale": False}
    (tmp_path / "sd3.json").write_text(json.dumps(data))
    assert "--family sd3.5-medium" in _one_message(lorakit("import", str(tmp_path / "sd3.json")))
    res = lorakit("import", str(tmp_path / "sd3.json"), "--family", "sd3.5-large", "-o", str(tmp_path / "sd3.yaml"))
    assert res.code == 0, res.err
    assert "family: sd3.5-large" in (tmp_path / "sd3.yaml").read_text()


BROKEN = {
    "truncated.json": ('{"LoRA_type": "Standard", "network_dim": 3', "is not valid JSON (line 1, column"),
    "list.json": ("[1, 2]", "holds a JSON list, not a GUI config"),
    "empty.json": ("", "is not valid JSON"),
    "binary.json": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not text (UTF-8)"),
    "notes.txt": ("buy milk\n", "is not a kohya_ss GUI JSON, an sd-scripts TOML nor a launch line"),
    "broken.toml": ('learning_rate = "1e-4\n', "is not valid TOML"),
    "dataset.toml": (
        '[[datasets]]\nresolution = 1024\n[[datasets.subsets]]\nimage_dir = "x"\n',
        "an sd-scripts dataset config",
    ),
    "meta.json": ('{"img/a.png": {"caption": "x"}}', "a metadata file"),
    "vars.ps1": (
        'accelerate launch "./sdxl_train_network.py" --pretrained_model_name_or_path="$model"\n',
        "shell variables",
    ),
    "two.ps1": (
        "accelerate launch sdxl_train_network.py --network_dim=8\naccelerate launch sdxl_train_network.py --network_dim=4\n",
        "holds 2 training launches",
    ),
    "quote.sh": ('accelerate launch sdxl_train_network.py --output_name="oops\n', "cannot be split into arguments"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_bad_files_get_one_message(name: str, tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    content, words = BROKEN[name]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert words in _one_message(lorakit("import", str(path)))


def test_missing_file_and_folder(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    assert "no such file" in _one_message(lorakit("import", str(tmp_path / "nope.json")))
    assert "is a folder" in _one_message(lorakit("import", str(tmp_path)))


@pytest.mark.parametrize(
    ("preset", "script"),
    [("SDXL - LoKR v1.0.json", "sdxl_train_network.py"), ("flux1D - adamw8bit fp8.json", "flux_train_network.py")],
)
@pytest.mark.parametrize("bad", [None, [], {}, "x", -1, 1e300, True])
def test_wrong_types_never_crash(bad: object, preset: str, script: str) -> None:
    """Every key of a real preset set to a wrong-typed value: a report or a ConfigError."""
    from lorakit.convert.gui import read_gui
    from lorakit.convert.mapping import to_lorakit

    data = json.loads((FIXTURES / preset).read_text())
    outcomes: dict[str, str] = {}
    for key in data:  # any exception but ConfigError fails the test: that is the crash it names
        try:
            to_lorakit(read_gui(data | {key: bad}, Path("wrong.json")), script, "x")
            outcomes[key] = "report"  # a report row (NOT UNDERSTOOD rows stop the CLI unless --lenient)
        except ConfigError:
            outcomes[key] = "error"
    assert len(outcomes) == len(data) > 80  # a real GUI file: every one of its 89 keys was tried


def test_unknown_key_is_an_error_unless_lenient(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((FIXTURES / "SDXL - LoRA by malcolmrey training v1.0.json").read_text()) | {"learnig_rate": 1}
    (tmp_path / "typo.json").write_text(json.dumps(data))
    res = lorakit("import", str(tmp_path / "typo.json"), "-o", str(tmp_path / "out.yaml"))
    assert "1 value(s) lorakit cannot carry over: learnig_rate=1" in _one_message(res)
    assert "NOT UNDERSTOOD" in res.out and not (tmp_path / "out.yaml").exists()
    res = lorakit("import", str(tmp_path / "typo.json"), "-o", str(tmp_path / "out.yaml"), "--lenient")
    assert res.code == 0 and (tmp_path / "out.yaml").exists()
    assert import_config(tmp_path / "typo.json").full["optimizer"]["lr"] == 0.0001
