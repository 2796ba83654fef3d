"""NVML: every function lorakit calls exists in the installed nvidia-ml-py, and an NVML failure of
any kind is one EnvironmentProblem (exit 3 at the CLI), never a traceback.

The H200 run found ``nvmlDeviceGetComputeProcesses`` (no such function; the real one is
``nvmlDeviceGetComputeRunningProcesses``): no CPU test had called that line. The name check
below reads the source, so it also covers code paths that only run on a GPU."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import lorakit
from lorakit.errors import EnvironmentProblem

SRC = Path(lorakit.__file__).parent


def _nvml_names_called() -> dict[str, list[str]]:
    """{function name: [file:line, ...]} for every ``<anything>.nvml*`` attribute in lorakit's source."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("nvml") and node.attr[4:5].isupper():
                found.setdefault(node.attr, []).append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_every_nvml_function_lorakit_calls_exists_in_nvidia_ml_py() -> None:
    pynvml = pytest.importorskip("pynvml")  # a dependency of lorakit: present in CI
    called = _nvml_names_called()
    # the scan must see the calls that matter, or it proves nothing
    for needed in ("nvmlInit", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses"):
        assert needed in called, f"the source scan no longer sees {needed}"
    missing = {name: where for name, where in called.items() if not hasattr(pynvml, name)}
    assert not missing, f"functions that nvidia-ml-py does not have: {missing}"


def test_only_gpu_nvml_imports_pynvml() -> None:
    users = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if "pynvml" in p.read_text(encoding="utf-8")]
    assert users == ["gpu/nvml.py"]


class _NVMLError(Exception):
    pass


def _fake_binding(**overrides: Any) -> types.ModuleType:
    """A stand-in binding with one GPU whose behaviour each test bends; used only to reach the
    error paths a real driver rarely shows (the names themselves are pinned above)."""

    mod = types.ModuleType("pynvml")
    mem = types.SimpleNamespace(total=80 * 2**30, used=2**30, free=79 * 2**30)
    funcs: dict[str, Any] = {
        "NVMLError": _NVMLError,
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: object(),
        "nvmlDeviceGetMemoryInfo": lambda h: mem,
        "nvmlDeviceGetComputeRunningProcesses": lambda h: [],
        "nvmlDeviceGetUUID": lambda h: "GPU-0",
        "nvmlDeviceGetName": lambda h: "Test GPU",
        "nvmlSystemGetDriverVersion": lambda: "580.00",
        "nvmlSystemGetCudaDriverVersion": lambda: 13000,
    }
    funcs.update(overrides)
    for k, v in funcs.items():
        if v is not None:
            setattr(mod, k, v)
    return mod


@pytest.fixture
def binding(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(**overrides: Any) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", _fake_binding(**overrides))

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def test_healthy_binding_reads_the_gpu(binding: Any) -> None:
    from lorakit.gpu import nvml

    binding()
    info = nvml.gpu(0)
    assert (info.name, round(info.total_gib), info.cuda_driver) == ("Test GPU", 80, "13.0")


@pytest.mark.parametrize(
    "override",
    [
        {"nvmlDeviceGetComputeRunningProcesses": None},  # a binding without the function
        {"nvmlDeviceGetName": lambda h: (_ for _ in ()).throw(_NVMLError("Unknown Error"))},
        {"nvmlDeviceGetCount": lambda: (_ for _ in ()).throw(RuntimeError("driver went away"))},
        {"nvmlInit": lambda: (_ for _ in ()).throw(_NVMLError("Driver Not Loaded"))},
    ],
    ids=["missing-function", "nvml-error", "other-error", "init-fails"],
)
def test_any_nvml_failure_is_one_environment_problem(binding: Any, override: dict[str, Any]) -> None:
    from lorakit.gpu import nvml

    binding(**override)
    if "nvmlDeviceGetComputeRunningProcesses" in override:
        info = nvml.gpu(0)  # processes are optional facts: their absence is not fatal
        assert info.processes == ()
        return
    with pytest.raises(EnvironmentProblem) as err:
        nvml.gpu(0)
    assert "NVML" in str(err.value) or "driver" in str(err.value)


def test_device_reader_failure_is_an_environment_problem(binding: Any) -> None:
    from lorakit.gpu import nvml

    calls = {"n": 0}

    def flaky(h: object) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise _NVMLError("GPU is lost")
        return types.SimpleNamespace(total=1, used=0, free=1)

    binding(nvmlDeviceGetMemoryInfo=flaky)
    reader = nvml.DeviceReader(0)
    with pytest.raises(EnvironmentProblem, match="GPU is lost"):
        reader.memory()
    reader.close()
