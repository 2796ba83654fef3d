"""The stand-in ComfyUI answers like the recorded real one (tests/fixtures/comfyui/): for each
recorded request, the same status, Content-Type and JSON shape (keys and value types, recursively)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.comfyui_standin import FIXTURES, StandIn, fixture, serve

NOT_SAFETENSORS = b"not a safetensors file"  # what the recording put into the folders


def shape(value: Any) -> Any:
    """Keys and value types, recursively; lists by the shape of their first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def ask(url: str, method: str, path: str, body: str | None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url + path, data=None if body is None else body.encode(), method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[tuple[str, StandIn]]:
    state = StandIn(tmp_path / "comfyui", device="cpu")
    (state.root / "models" / "loras" / "fixture_lora.safetensors").write_bytes(NOT_SAFETENSORS)
    (state.root / "models" / "checkpoints" / "fixture_broken.safetensors").write_bytes(NOT_SAFETENSORS)
    with serve(state) as url:
        yield url, state


SIMPLE = [
    "system_stats_cpu", "free_cpu", "free_empty_body", "get_prompt", "models_loras", "models_checkpoints",
    "models_text_encoders", "models_unknown_folder", "experiment_models", "object_info_loraloader",
    "get_unknown_path", "post_unknown_path", "history_unknown", "prompt_ckpt_not_listed", "prompt_lora_not_listed",
    "prompt_unknown_node", "prompt_no_prompt", "prompt_broken_ckpt", "prompt_ok", "view_missing",
]  # fmt: skip


def _same(rec: dict[str, Any], status: int, ctype: str, body: bytes) -> None:
    assert status == rec["status"]
    assert ctype == rec["content_type"]
    if "body_json" in rec:
        assert shape(json.loads(body)) == shape(rec["body_json"])
    elif rec.get("body_text"):
        assert body.decode() == rec["body_text"]
    else:
        assert body == b""


@pytest.mark.parametrize("name", SIMPLE)
def test_answers_like_the_recorded_comfyui(standin: tuple[str, StandIn], name: str) -> None:
    url, _ = standin
    rec = fixture(name)
    _same(rec, *ask(url, rec["request"]["method"], rec["request"]["path"], rec["request"]["body"]))


def test_the_lists_are_the_recorded_ones(standin: tuple[str, StandIn]) -> None:
    url, _ = standin
    for name in ("models_loras", "models_checkpoints", "models_text_encoders", "prompt_ckpt_not_listed"):
        rec = fixture(name)
        _, _, body = ask(url, rec["request"]["method"], rec["request"]["path"], rec["request"]["body"])
        assert json.loads(body) == rec["body_json"]


def _history(url: str, prompt_id: str) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, _, body = ask(url, "GET", f"/history/{prompt_id}", None)
        if json.loads(body):
            return body
        time.sleep(0.05)
    raise AssertionError("never finished")


def test_execution_error_and_success_like_the_recording(standin: tuple[str, StandIn]) -> None:
    url, _ = standin
    for post, hist in (("prompt_broken_ckpt", "history_execution_error"), ("prompt_ok", "history_ok")):
        req = fixture(post)["request"]
        _, _, answer = ask(url, "POST", "/prompt", req["body"])
        pid = json.loads(answer)["prompt_id"]
        body = _history(url, pid)
        rec = fixture(hist)
        got, want = json.loads(body)[pid], next(iter(rec["body_json"].values()))
        assert shape(got["status"]["messages"][-1]) == shape(want["status"]["messages"][-1])
        assert got["status"]["status_str"] == want["status"]["status_str"]
        assert set(got) >= {"prompt", "outputs", "status"}
        assert shape(got["outputs"]) == shape(want["outputs"])
    img = json.loads(body)[pid]["outputs"]["9"]["images"][0]
    assert img["subfolder"] == "lorakit" and img["filename"] == "fixture_00001_.png"  # the recorded naming
    status, ctype, png = ask(url, "GET", fixture("view_ok")["request"]["path"], None)
    assert (status, ctype) == (200, fixture("view_ok")["content_type"])
    assert png[:8] == (FIXTURES / "view_ok.png").read_bytes()[:8]
