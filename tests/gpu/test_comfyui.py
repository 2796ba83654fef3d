"""The ComfyUI client against the stand-in ComfyUI (tests/comfyui_standin.py: a real HTTP server on
127.0.0.1 answering like the recorded real one): ``POST /free`` sets a flag and answers 200 at
once; a worker thread unloads the models later; ``GET /system_stats`` reports its one device."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorakit.errors import ConfigError
from lorakit.gpu import comfyui
from tests.comfyui_standin import StandIn, handler_for, serve

GIB = 1024**3


@pytest.fixture
def comfy_server(tmp_path: Path) -> Iterator[tuple[str, StandIn]]:
    state = StandIn(tmp_path / "comfyui", loaded_gib=9.5, unload_delay_s=0.4)
    with serve(state) as url:
        yield url, state


def test_free_waits_for_the_unload_that_comes_after_the_200(comfy_server: tuple[str, StandIn]) -> None:
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


def test_reading_right_after_the_answer_shows_nothing_won(comfy_server: tuple[str, StandIn]) -> None:
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


def test_nothing_loaded_stops_after_the_first_rise_window(comfy_server: tuple[str, StandIn]) -> None:
    url, state = comfy_server
    state.loaded = 0
    result = comfyui.free(url, memory="system_stats", poll_s=0.05, settle_s=0.3, first_rise_s=0.8, timeout_s=10)
    assert result.outcome == "nothing-freed"
    assert result.won_bytes == 0
    assert 0.8 <= result.waited_s < 3
    assert "nothing was freed" in result.message


def test_timeout_while_still_rising(comfy_server: tuple[str, StandIn]) -> None:
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


def test_old_comfyui_without_free_endpoint(tmp_path: Path) -> None:
    """A ComfyUI from before 2024-01 has no /free: its catch-all static route answers any POST
    with 405 (recorded: post_unknown_path.json)."""
    state = StandIn(tmp_path / "c", loaded_gib=1, unload_delay_s=0)

    class Old(handler_for(state)):  # type: ignore[misc]
        def do_POST(self) -> None:
            self._send(405, b"405: Method Not Allowed", "text/plain; charset=utf-8")

    with serve(state, Old) as url:
        result = comfyui.free(url, memory="system_stats")
    assert result.outcome == "http-error"
    assert "HTTP 405" in result.message
    assert "since 2024-01" in result.message
    assert "mid-2024" not in result.message


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
def test_auto_falls_back_to_system_stats_without_nvml(comfy_server: tuple[str, StandIn]) -> None:
    url, _ = comfy_server
    result = comfyui.free(url, poll_s=0.05, settle_s=0.3, first_rise_s=3.0, timeout_s=10)
    assert result.source == "ComfyUI /system_stats"
    assert result.outcome == "freed"


# -- issue 18: the device ComfyUI runs on ----------------------------------------------------


def test_a_cpu_comfyui_is_not_taken_for_a_gpu(tmp_path: Path) -> None:
    """Real /system_stats of `main.py --cpu` (system_stats_cpu.json): type cpu, index null,
    vram_* = system RAM. Nothing is asked and nothing polled: RAM is not GPU memory."""
    state = StandIn(tmp_path / "c", device="cpu")
    with serve(state) as url:
        for memory in ("auto", "system_stats"):
            result = comfyui.free(url, memory=memory, first_rise_s=0.2)  # type: ignore[arg-type]
            assert result.outcome == "not-on-gpu"
            assert result.reachable
            assert result.before_bytes is None and result.won_bytes is None
            assert "runs on the cpu, not on an NVIDIA GPU" in result.message
            assert result.to_json()["won_gib"] is None
    assert state.free_posts == []


def test_the_recorded_cpu_answer_is_read_as_cpu() -> None:
    from tests.comfyui_standin import fixture

    dev = comfyui.device_of(fixture("system_stats_cpu")["body_json"])
    assert dev.type == "cpu" and not dev.on_gpu and dev.card == ""


def _gpu(index: int, name: str, total_gib: float, pids: tuple[int, ...] = ()) -> object:
    from lorakit.gpu.nvml import GpuInfo, GpuProcess

    return GpuInfo(
        index=index, nvml_index=index, name=name, uuid=f"GPU-{index}", total_bytes=int(total_gib * GIB),
        used_bytes=0, free_bytes=int(total_gib * GIB), driver="", cuda_driver="",
        processes=tuple(GpuProcess(p, 1, "python") for p in pids),
    )  # fmt: skip


def _dev(card: str, total_gib: float, argv: tuple[str, ...] = ("main.py",)) -> comfyui.ComfyDevice:
    return comfyui.ComfyDevice("cuda", card, int(total_gib * GIB), argv)


def test_comfyui_s_process_on_a_gpu_identifies_it() -> None:
    """`--cuda-device 1` makes ComfyUI report index 0 while it runs on GPU 1: the PID decides."""
    gpus = [_gpu(0, "NVIDIA H200", 140), _gpu(1, "NVIDIA H200", 140, pids=(4242,))]
    place = comfyui.locate(_dev("NVIDIA H200", 139.8, ("main.py", "--cuda-device", "1")), gpus, {4242})  # type: ignore[arg-type]
    assert place.cuda_index == 1
    assert "process 4242" in place.how


def test_name_and_memory_identify_a_unique_card() -> None:
    gpus = [_gpu(0, "NVIDIA GeForce RTX 3060", 12), _gpu(1, "NVIDIA GeForce RTX 4090", 24)]
    place = comfyui.locate(_dev("NVIDIA GeForce RTX 4090", 23.6), gpus, set())  # type: ignore[arg-type]
    assert place.cuda_index == 1
    assert "the only NVIDIA GeForce RTX 4090" in place.how


def test_identical_cards_without_a_pid_use_cuda_device_or_say_unsure() -> None:
    gpus = [_gpu(0, "NVIDIA H200", 140), _gpu(1, "NVIDIA H200", 140)]
    sure = comfyui.locate(_dev("NVIDIA H200", 140, ("main.py", "--cuda-device=1")), gpus, set())  # type: ignore[arg-type]
    assert sure.cuda_index == 1 and "--cuda-device 1" in sure.how
    unsure = comfyui.locate(_dev("NVIDIA H200", 140), gpus, set())  # type: ignore[arg-type]
    assert unsure.cuda_index is None
    assert "2 GPUs here are a NVIDIA H200" in unsure.how


def test_no_matching_card_is_unsure() -> None:
    place = comfyui.locate(_dev("NVIDIA A100-SXM4-80GB", 80), [_gpu(0, "NVIDIA H200", 140)], set())  # type: ignore[arg-type]
    assert place.cuda_index is None
    assert "no GPU here is a NVIDIA A100-SXM4-80GB" in place.how


def test_card_name_is_parsed_from_the_device_name() -> None:
    stats = {"devices": [{"name": "cuda:0 NVIDIA H200 : cudaMallocAsync", "type": "cuda", "index": 0,
                          "vram_total": 5}], "system": {"argv": ["main.py", "--cuda-device", "3"]}}  # fmt: skip
    dev = comfyui.device_of(stats)
    assert dev.card == "NVIDIA H200" and dev.on_gpu and dev.cuda_device_arg() == 3
    native = comfyui.device_of({"devices": [{"name": "cuda:0 NVIDIA GeForce RTX 4090 : native", "type": "cuda"}]})
    assert native.card == "NVIDIA GeForce RTX 4090"


def test_the_port_s_listening_process_is_found(tmp_path: Path) -> None:
    state = StandIn(tmp_path / "c")
    with serve(state) as url:
        port = int(url.rsplit(":", 1)[1])
        import os

        assert os.getpid() in comfyui.listening_pids(port)


def test_won_gib_is_never_minus_zero() -> None:
    r = comfyui.FreeResult("http://127.0.0.1:8188", "nothing-freed", 10 * GIB, 10 * GIB - 1024, 5.0, "NVML")
    assert r.to_json()["won_gib"] == 0.0
    assert str(r.to_json()["won_gib"]) == "0.0"
    t = comfyui.FreeResult("http://127.0.0.1:8188", "timeout", 10 * GIB, 10 * GIB - 1024, 5.0, "NVML")
    assert "-0.0" not in t.message and "0.0 GiB freed so far" in t.message


def test_the_client_raises_typed_errors(tmp_path: Path) -> None:
    state = StandIn(tmp_path / "c")
    with serve(state) as url:
        client = comfyui.Client(url)
        with pytest.raises(comfyui.ComfyHTTPError) as info:
            client.call("POST", "/no/such/path", {})
        assert info.value.status == 405  # recorded: post_unknown_path.json
        with pytest.raises(comfyui.ComfyHTTPError) as info:
            client.get_json("/models/no_such_folder")
        assert info.value.status == 404
    with pytest.raises(comfyui.ComfyUnreachable) as down:
        comfyui.Client(url, timeout_s=1).system_stats()
    assert "no ComfyUI answered" in down.value.message
    assert "python main.py" in (down.value.fix or "")
