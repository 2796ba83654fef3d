"""`lorakit try` through the real CLI (child process) against the stand-in ComfyUI (a real HTTP
server answering like the recorded ComfyUI, tests/comfyui_standin.py), after a real `lorakit
train` with the stand-in trainer: the run's LoRA is copied into the stand-in's models/loras."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.comfyui_standin import StandIn, serve
from tests.conftest import EXAMPLE
from tests.run.conftest import FAKE_TRAINER, stand_in_trainer_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fake trainer Python is a shebang script")

PROMPTS = '["a cat --n blurry", "a house"]'


@pytest.fixture
def env(isolated_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = stand_in_trainer_env(isolated_env, tmp_path, FAKE_TRAINER)  # the lorakit fixture's env, updated
    env["FAKE_LORA"] = "1"
    return env


def _safetensors(path: Path) -> None:
    header = b'{"__metadata__":{}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def _train(lorakit, env: dict[str, str], tmp_path: Path, comfy: StandIn, url: str, *extra: str) -> Path:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "work"
    cwd.mkdir(exist_ok=True)
    r = lorakit(
        "train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={env['FAKE_CKPT']}",
        "--set", f"comfyui.url={url}", "--set", "training.resolution=512", "--set", f"sampling.prompts={PROMPTS}",
        "--set", "sampling.every_n_epochs=100", "--set", "dataset.trigger=sks", *extra, cwd=cwd,
    )  # fmt: skip
    assert r.code == 0, r.err + r.out
    runs = [p for p in (cwd / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


def _graphs_of(comfy: StandIn) -> list[dict[str, Any]]:
    return comfy.prompts


def test_try_renders_the_grid_into_the_run_and_its_report(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comfy = StandIn(tmp_path / "ComfyUI", loaded_gib=4, unload_delay_s=0.05)
    with serve(comfy) as url:
        loras = comfy.root / "models" / "loras"
        run = _train(lorakit, env, tmp_path, comfy, url, "--set", f"output.lora_folders=[{loras}]")
        assert comfy.free_posts == [{"unload_models": True, "free_memory": True}]  # train freed it first
        _safetensors(comfy.root / "models" / "checkpoints" / "base.safetensors")  # the base model, visible
        r = lorakit("try", str(run), "--json", "--steps", "3", cwd=tmp_path / "work")
        assert r.code == 0, r.err + r.out
    out = json.loads(r.out)
    assert out["comfyui_names"] == {"checkpoint": "base.safetensors", "lora": "comic-style.safetensors"}
    assert [p["text"] for p in out["prompts"]] == ["sks, a cat", "sks, a house"]
    assert out["strengths"] == [0.0, 0.5, 1.0] and out["seed"] == 42
    graphs = _graphs_of(comfy)
    assert len(graphs) == 6
    cells = [(g["1"]["inputs"]["strength_model"], g["2"]["inputs"]["text"]) for g in graphs]
    assert cells == [(s, t) for t in ("sks, a cat", "sks, a house") for s in (0.0, 0.5, 1.0)]
    assert {g["6"]["inputs"]["seed"] for g in graphs} == {42} and {g["6"]["inputs"]["steps"] for g in graphs} == {3}
    assert {g["3"]["inputs"]["text"] for g in graphs[:3]} == {"blurry"}
    assert {(g["5"]["inputs"]["width"], g["5"]["inputs"]["height"]) for g in graphs} == {(512, 512)}

    from PIL import Image

    images = sorted(p.name for p in (run / "comfyui").iterdir())
    assert images == sorted(f"p{i}-s{s}.png" for i in (0, 1) for s in ("0", "0.5", "1"))
    with Image.open(run / "comfyui" / "p1-s0.5.png") as im:
        assert im.size == (512, 512)  # ComfyUI's own image, fetched with /view
    with Image.open(run / "comfyui-try.png") as grid:
        assert grid.size == (220 + 3 * 384, 28 + 2 * 384)
    record = json.loads((run / "comfyui-try.json").read_text())
    assert record["workflow"]["1"]["class_type"] == "LoraLoader"
    assert 'src="comfyui-try.png"' in (run / "report.html").read_text()


def test_comfyui_not_running(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comfy = StandIn(tmp_path / "ComfyUI", device="cpu")
    with serve(comfy) as url:
        run = _train(lorakit, env, tmp_path, comfy, url)
    r = lorakit("try", str(run), cwd=tmp_path / "work")  # the server is gone now
    assert r.code == 3
    assert f"no ComfyUI answered at {url}" in r.err
    assert "python main.py --listen 127.0.0.1" in r.err
    assert "Traceback" not in r.err


def test_base_model_not_in_comfyui_says_which_file_where(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comfy = StandIn(tmp_path / "ComfyUI", device="cpu")
    with serve(comfy) as url:
        loras = comfy.root / "models" / "loras"
        run = _train(lorakit, env, tmp_path, comfy, url, "--set", f"output.lora_folders=[{loras}]")
        r = lorakit("try", str(run), cwd=tmp_path / "work")
    assert r.code == 3, r.err
    err = " ".join(r.err.split())
    assert "cannot see the base model's checkpoint file base.safetensors" in err
    assert f"put {env['FAKE_CKPT']} (or a link to it) into {comfy.root / 'models' / 'checkpoints'}/" in err
    assert comfy.prompts == []


def test_lora_not_visible_yet(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comfy = StandIn(tmp_path / "ComfyUI", device="cpu")
    with serve(comfy) as url:
        run = _train(lorakit, env, tmp_path, comfy, url)  # no lora_folders: ComfyUI cannot see it
        _safetensors(comfy.root / "models" / "checkpoints" / "base.safetensors")
        r = lorakit("try", "last", cwd=tmp_path / "work")
        assert r.code == 3, r.err
        err = " ".join(r.err.split())
        assert "does not list the LoRA comic-style.safetensors yet" in err
        assert f"cp {run / 'comic-style.safetensors'} {comfy.root / 'models' / 'loras'}/" in err
        # the fix it gives works, with no restart of ComfyUI
        # (into a sub-folder, which ComfyUI lists as "sub/name")
        (comfy.root / "models" / "loras" / "sub").mkdir()
        shutil.copy(run / "comic-style.safetensors", comfy.root / "models" / "loras" / "sub")
        r2 = lorakit("try", "last", "--strength", "1", cwd=tmp_path / "work")
    assert r2.code == 0, r2.err
    assert "LoRA sub/comic-style.safetensors" in r2.out
    assert comfy.prompts[-1]["1"]["inputs"]["lora_name"] == "sub/comic-style.safetensors"


def test_a_node_error_is_one_clear_message(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """ComfyUI running as another user cannot read a LoRA without o+r: the node fails in /history."""
    comfy = StandIn(tmp_path / "ComfyUI", device="cpu", as_other_user=True)
    with serve(comfy) as url:
        loras = comfy.root / "models" / "loras"
        run = _train(lorakit, env, tmp_path, comfy, url, "--set", f"output.lora_folders=[{loras}]")
        _safetensors(comfy.root / "models" / "checkpoints" / "base.safetensors")
        (comfy.root / "models" / "checkpoints" / "base.safetensors").chmod(0o644)
        (loras / "comic-style.safetensors").chmod(0o600)
        r = lorakit("try", str(run), "--strength", "1", cwd=tmp_path / "work")
    assert r.code == 1, r.err
    err = " ".join(r.err.split())
    assert "node 1 (LoraLoader): PermissionError: [Errno 13] Permission denied" in err
    assert "Traceback" not in r.err


def test_a_refused_workflow_names_the_node(lorakit, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comfy = StandIn(tmp_path / "ComfyUI", device="cpu")
    comfy.nodes.discard("EmptyLatentImage")  # an odd ComfyUI without the node
    with serve(comfy) as url:
        loras = comfy.root / "models" / "loras"
        run = _train(lorakit, env, tmp_path, comfy, url, "--set", f"output.lora_folders=[{loras}]")
        _safetensors(comfy.root / "models" / "checkpoints" / "base.safetensors")
        r = lorakit("try", str(run), cwd=tmp_path / "work")
    assert r.code == 1, r.err
    assert "Cannot execute because node EmptyLatentImage does not exist." in " ".join(r.err.split())


def test_a_run_without_a_lora(lorakit, isolated_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "runs" / "x-20261202-000000"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text("model: {checkpoint: /nowhere/b.safetensors}\n")
    (run / "state.json").write_text('{"status": "failed"}')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
    r = lorakit("try", str(run))
    assert r.code == 2
    assert "has no finished LoRA to try (status: failed)" in r.err
