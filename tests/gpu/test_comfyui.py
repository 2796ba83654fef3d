"""The ComfyUI client against a real HTTP server on 127.0.0.1 that behaves like ComfyUI:
``POST /free`` sets a flag and answers 200 at once; a worker thread unloads the models later;
``GET /system_stats`` reports free VRAM the way ComfyUI does."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lorakit.errors import ConfigError
from lorakit.gpu import comfyui

GIB = 1024**3


class FakeComfy:
    """ComfyUI's prompt queue flags + a prompt worker that unloads some time after the flag."""

    def __init__(self, loaded_gib: float, unload_delay_s: float, steps: int = 3, total_gib: float = 24.0) -> None:
        self.total = int(total_gib * GIB)
        self.loaded = int(loaded_gib * GIB)
        self.base_used = int(1 * GIB)
        self.unload_delay_s = unload_delay_s
        self.steps = steps
        self.flags: dict[str, Any] = {}
        self.free_posts: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.stop = False
        self.worker = threading.Thread(target=self._prompt_worker, daemon=True)
        self.worker.start()

    @property
    def vram_free(self) -> int:
        return self.total - self.base_used - self.loaded

    def set_flags(self, data: dict[str, Any]) -> None:
        with self.cond:
            self.flags.update(data)
            self.free_posts.append(data)
            self.cond.notify()

    def _prompt_worker(self) -> None:
        while True:
            with self.cond:
                while not self.flags and not self.stop:
                    self.cond.wait(0.05)
                if self.stop:
                    return
                flags, self.flags = self.flags, {}
            if flags.get("unload_models") or flags.get("free_memory"):
                time.sleep(self.unload_delay_s)  # the worker notices the flag between prompts
                chunk = self.loaded // self.steps
                for i in range(self.steps):  # models leave the GPU one by one
                    self.loaded = 0 if i == self.steps - 1 else self.loaded - chunk
                    time.sleep(0.05)


def _handler(state: FakeComfy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/system_stats":
                stats = {
                    "system": {"os": "posix", "comfyui_version": "0.3.x"},
                    "devices": [
                        {
                            "name": "cuda:0 Fake GPU : cudaMallocAsync",
                            "type": "cuda",
                            "index": 0,
                            "vram_total": state.total,
                            "vram_free": state.vram_free,
                            "torch_vram_total": state.loaded,
                            "torch_vram_free": 0,
                        }
                    ],
                }
                self._send(200, json.dumps(stats).encode())
            else:
                self._send(404, b"404: Not Found", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            data = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/free":
                state.set_flags({k: data[k] for k in ("unload_models", "free_memory") if k in data})
                self._send(200)  # at once: the unload happens later in the worker
            else:
                self._send(404, b"404: Not Found", "text/plain")

    return Handler


@pytest.fixture
def comfy_server() -> Iterator[tuple[str, FakeComfy]]:
    state = FakeComfy(loaded_gib=9.5, unload_delay_s=0.4)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.stop = True
        server.shutdown()
        server.server_close()


def test_free_waits_for_the_unload_that_comes_after_the_200(comfy_server: tuple[str, FakeComfy]) -> None:
    url, state = comfy_server
    before = state.vram_free
    result = comfyui.free(url, memory="system_stats", poll_s=0.05, settle_s=0.4, first_rise_s=3.0, timeout_s=10)
    assert state.free_posts == [{"unload_models": True, "free_memory": True}]
    assert result.outcome == "freed"
    assert result.before_bytes == before
    assert result.won_bytes == int(9.5 * GIB)
    assert result.waited_s >= 0.4  # not the immediate reading after the 200
    assert result.source == "ComfyUI /system_stats"
    assert "9.5 GiB freed" in result.message
    assert "loads its models again by itself on its next prompt" in result.message
    assert str(result) == result.message


def test_reading_right_after_the_answer_shows_nothing_won(comfy_server: tuple[str, FakeComfy]) -> None:
    """Why the client polls: ComfyUI's 200 only means the flag is set."""
    url, _ = comfy_server
    before = comfyui.system_stats(url)["devices"][0]["vram_free"]
    comfyui._request(url + "/free", {"unload_models": True, "free_memory": True}, 2.0)
    right_after = comfyui.system_stats(url)["devices"][0]["vram_free"]
    assert right_after == before
    deadline = time.monotonic() + 5
    while comfyui.system_stats(url)["devices"][0]["vram_free"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert comfyui.system_stats(url)["devices"][0]["vram_free"] > before


def test_nothing_loaded_stops_after_the_first_rise_window(comfy_server: tuple[str, FakeComfy]) -> None:
    url, state = comfy_server
    state.loaded = 0
    result = comfyui.free(url, memory="system_stats", poll_s=0.05, settle_s=0.3, first_rise_s=0.8, timeout_s=10)
    assert result.outcome == "nothing-freed"
    assert result.won_bytes == 0
    assert 0.8 <= result.waited_s < 3
    assert "nothing was freed" in result.message


def test_timeout_while_still_rising(comfy_server: tuple[str, FakeComfy]) -> None:
    url, state = comfy_server
    state.unload_delay_s = 0.0
    state.steps = 40  # 40 × 50 ms: still unloading when the timeout comes
    result = comfyui.free(url, memory="system_stats", poll_s=0.05, settle_s=1.0, first_rise_s=1.0, timeout_s=0.8)
    assert result.outcome == "timeout"
    assert result.won_bytes is not None and 0 < result.won_bytes < int(9.5 * GIB)
    assert "still rising" in result.message


def test_no_comfyui_listening_is_reported_not_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = comfyui.free(f"http://127.0.0.1:{port}", memory="system_stats", connect_timeout_s=1)
    assert result.outcome == "unreachable"
    assert not result.reachable
    assert "no ComfyUI answered" in result.message


def test_old_comfyui_without_free_endpoint() -> None:
    state = FakeComfy(loaded_gib=1, unload_delay_s=0)

    class Old(_handler(state)):  # type: ignore[misc]
        def do_POST(self) -> None:
            self._send(404, b"404: Not Found", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = comfyui.free(f"http://127.0.0.1:{server.server_address[1]}", memory="system_stats")
    finally:
        state.stop = True
        server.shutdown()
        server.server_close()
    assert result.outcome == "http-error"
    assert "HTTP 404" in result.message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8188", "http://localhost:8188/", "http://[::1]:8188", "http://127.3.4.5:9000"]
)
def test_loopback_urls_are_allowed(url: str) -> None:
    assert comfyui.check_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://192.168.1.20:8188", "http://10.0.0.5:8188", "http://8.8.8.8:8188"])
def test_remote_urls_need_the_explicit_flag(url: str) -> None:
    with pytest.raises(ConfigError, match="not on this machine") as info:
        comfyui.free(url)
    assert "comfyui.allow_remote" in (info.value.fix or "")
    assert comfyui.check_url(url, allow_remote=True) == url


def test_not_a_url() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        comfyui.check_url("ftp://127.0.0.1/")


def _nvml_available() -> bool:
    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml

    try:
        nvml.list_gpus(processes=False)
    except EnvironmentProblem:
        return False
    return True


@pytest.mark.skipif(_nvml_available(), reason="with a GPU driver, auto reads NVML")
def test_auto_falls_back_to_system_stats_without_nvml(comfy_server: tuple[str, FakeComfy]) -> None:
    url, _ = comfy_server
    result = comfyui.free(url, poll_s=0.05, settle_s=0.3, first_rise_s=3.0, timeout_s=10)
    assert result.source == "ComfyUI /system_stats"
    assert result.outcome == "freed"
