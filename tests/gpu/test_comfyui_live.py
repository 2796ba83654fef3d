"""Opt-in: lorakit's ComfyUI client against a live ComfyUI.

    LORAKIT_TEST_COMFYUI=http://127.0.0.1:8188 [LORAKIT_TEST_COMFYUI_DIR=path/to/ComfyUI] pytest tests/gpu/test_comfyui_live.py

With the folder given, the `lorakit try` test puts a broken checkpoint and a LoRA file into its
models/ for its duration (removed after) and expects ComfyUI's real execution error."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from lorakit.gpu import comfyui

URL = os.environ.get("LORAKIT_TEST_COMFYUI", "")
DIR = os.environ.get("LORAKIT_TEST_COMFYUI_DIR", "")
pytestmark = pytest.mark.skipif(not URL, reason="set LORAKIT_TEST_COMFYUI=http://127.0.0.1:8188 to run")


def test_device_and_free() -> None:
    client = comfyui.Client(URL)
    dev = comfyui.device_of(client.system_stats())
    result = comfyui.free(URL, gpu_index=None, first_rise_s=1.0, settle_s=0.5)
    if dev.on_gpu:
        assert dev.card, "a CUDA device names its card"
        assert result.outcome in ("freed", "nothing-freed", "timeout")
    else:
        assert result.outcome == "not-on-gpu"
    assert "-0.0" not in result.message


def test_lists_and_errors() -> None:
    client = comfyui.Client(URL)
    assert isinstance(client.models("loras"), list)
    assert any(f.rstrip("/").endswith("loras") for f in client.model_folders("loras"))
    with pytest.raises(comfyui.ComfyHTTPError) as info:
        client.call("POST", "/no/such/path", {})
    assert info.value.status == 405
    with pytest.raises(comfyui.ComfyHTTPError) as info:
        client.get_json("/models/no_such_folder")
    assert info.value.status == 404


def test_prompt_history_view() -> None:
    import time

    from lorakit.tryout.render import node_error_text

    client = comfyui.Client(URL)
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 255}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "lorakit/live-test"}},
    }
    pid = client.queue_prompt(graph, f"lorakit-{uuid.uuid4()}")
    deadline = time.monotonic() + 60
    while (entry := client.history(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert entry is not None and entry["status"]["status_str"] == "success"
    img = entry["outputs"]["9"]["images"][0]
    assert client.view(img["filename"], img["subfolder"], img["type"])[:8] == b"\x89PNG\r\n\x1a\n"
    from lorakit.tryout.workflow import Prompt, build_graph

    bad = build_graph("sdxl", {"checkpoint": "no-such.safetensors"}, "no-such-lora.safetensors", 1.0, Prompt("x"),
                      width=64, height=64, seed=1, steps=1, prefix="lorakit/live-test")  # fmt: skip
    with pytest.raises(comfyui.ComfyHTTPError) as info:
        client.queue_prompt(bad, "lorakit-live")
    assert info.value.status == 400
    text = node_error_text(info.value.json())
    assert "ckpt_name: 'no-such.safetensors' not in" in text
    assert "lora_name: 'no-such-lora.safetensors' not in" in text


@pytest.mark.skipif(not DIR, reason="set LORAKIT_TEST_COMFYUI_DIR to the live ComfyUI's folder")
def test_try_reaches_comfyui_s_real_node_error(tmp_path: Path) -> None:
    """The whole `lorakit try` exchange up to ComfyUI loading the base model: a checkpoint that is
    not a safetensors file fails in ComfyUI's CheckpointLoaderSimple, reported as one message."""
    import json

    from lorakit.tryout.render import TryFailed, TryRequest, try_run

    tag = uuid.uuid4().hex[:8]
    ckpt = Path(DIR) / "models" / "checkpoints" / f"lorakit-live-{tag}.safetensors"
    lora = Path(DIR) / "models" / "loras" / f"lorakit-live-{tag}.safetensors"
    run = tmp_path / "runs" / f"live-{tag}"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text(f"model: {{checkpoint: {ckpt}}}\ntraining: {{resolution: 512}}\n")
    (run / "lora.safetensors").write_bytes(b"x")
    (run / "state.json").write_text(
        json.dumps({"status": "done", "lora": str(run / "lora.safetensors"), "copies": [str(lora)]})
    )
    try:
        ckpt.write_bytes(b"not a safetensors file")
        lora.write_bytes(b"not a safetensors file")
        with pytest.raises(TryFailed) as info:
            try_run(TryRequest(run, url=URL, strengths=(1.0,), steps=1, timeout_s=120))
    finally:
        ckpt.unlink(missing_ok=True)
        lora.unlink(missing_ok=True)
    assert "CheckpointLoaderSimple" in info.value.message
