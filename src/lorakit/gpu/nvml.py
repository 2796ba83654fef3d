"""GPU facts from NVML: the only module in lorakit that talks to NVML.

``pynvml`` (the ``nvidia-ml-py`` package) is imported when a function here is called, never at
import time. No driver, no NVML library or no GPU becomes an ``EnvironmentProblem`` (exit 3) that
says what is missing and what to do, never a traceback.

GPU numbers: ``index`` is the number CUDA programs (sd-scripts, accelerate) see. When
``CUDA_VISIBLE_DEVICES`` lists GPUs (by number or by UUID), index N is the N-th of that list,
mapped here to NVML's own numbering; otherwise CUDA and NVML agree when
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (sd-scripts users on one GPU need not care).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from lorakit.errors import EnvironmentProblem

GIB = 1024**3

NO_GPU_FIX = (
    "install the NVIDIA driver (nvidia-smi must work), or answer for a given card without a GPU: "
    "lorakit vram-check ... --vram 24GB"
)


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None where the driver does not report it (e.g. Windows WDDM)
    name: str  # process name, "" if unknown

    @property
    def used_gib(self) -> float | None:
        return None if self.used_bytes is None else self.used_bytes / GIB


@dataclass(frozen=True)
class GpuInfo:
    index: int  # CUDA-visible index (see module doc)
    nvml_index: int
    name: str
    uuid: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    driver: str
    cuda_driver: str  # highest CUDA version the driver supports, e.g. "12.8"
    processes: tuple[GpuProcess, ...] = ()

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def used_gib(self) -> float:
        return self.used_bytes / GIB

    @property
    def free_gib(self) -> float:
        return self.free_bytes / GIB

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "total_gib": round(self.total_gib, 2),
            "used_gib": round(self.used_gib, 2),
            "free_gib": round(self.free_gib, 2),
            "driver": self.driver,
            "cuda_driver": self.cuda_driver,
            "processes": [
                {"pid": p.pid, "name": p.name, "used_gib": None if p.used_gib is None else round(p.used_gib, 2)}
                for p in self.processes
            ],
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise EnvironmentProblem(
            "the nvidia-ml-py package (module pynvml) is not installed, so lorakit cannot read the GPU",
            fix="pip install nvidia-ml-py  (or answer for a given card: lorakit vram-check ... --vram 24GB)",
        ) from None
    return pynvml


@contextmanager
def session() -> Iterator[Any]:
    """nvmlInit … nvmlShutdown; a missing library/driver becomes an EnvironmentProblem."""
    nv = _import_pynvml()
    try:
        nv.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound etc., or a broken binding
        raise EnvironmentProblem(f"no NVIDIA GPU driver answered ({_nvml_reason(nv, exc)})", fix=NO_GPU_FIX) from None
    try:
        yield nv
    except EnvironmentProblem:
        raise
    except Exception as exc:  # any NVML failure (an NVMLError, a binding without a function, ...)
        raise nvml_failure(nv, exc) from None
    finally:
        with suppress(Exception):
            nv.nvmlShutdown()


def nvml_failure(nv: Any, exc: Exception) -> EnvironmentProblem:
    """One clear message for an NVML call that failed in any way (never a traceback)."""
    nvml_error = getattr(nv, "NVMLError", None)
    if isinstance(nvml_error, type) and isinstance(exc, nvml_error):
        why = _nvml_reason(nv, exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    return EnvironmentProblem(
        f"reading the GPU through NVML failed ({why})",
        fix="check that nvidia-smi works and that nvidia-ml-py is up to date (pip install -U nvidia-ml-py); "
        "without a GPU reading, answer for a given card: lorakit vram-check ... --vram 24GB",
    )


def _nvml_reason(nv: Any, exc: Exception) -> str:
    named = {
        "NVMLError_LibraryNotFound": "the NVML library (libnvidia-ml) was not found",
        "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded",
        "NVMLError_NoPermission": "no permission to read the GPU",
        "NVMLError_LibRmVersionMismatch": "driver/library version mismatch (a reboot usually fixes it)",
    }
    return named.get(type(exc).__name__, f"NVML: {type(exc).__name__}: {exc}")


def _visible_to_nvml(nv: Any, count: int) -> list[int]:
    """NVML indexes in CUDA's order, honouring CUDA_VISIBLE_DEVICES."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None or env.strip() == "":
        return list(range(count)) if env is None else []
    uuids: dict[str, int] = {}
    for i in range(count):
        try:
            uuids[_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)))] = i
        except nv.NVMLError:
            continue
    out: list[int] = []
    for item in (p.strip() for p in env.split(",")):
        if item.isdigit() and int(item) < count:
            out.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            match = next((i for u, i in uuids.items() if u.startswith(item)), None)
            if match is None:
                break
            out.append(match)
        else:
            break  # CUDA stops at the first invalid entry
    return out


def _process_name(nv: Any, pid: int) -> str:
    try:
        return os.path.basename(_text(nv.nvmlSystemGetProcessName(pid)))
    except Exception:
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            return ""


def _info(nv: Any, index: int, nvml_index: int, driver: str, cuda: str, processes: bool = True) -> GpuInfo:
    h = nv.nvmlDeviceGetHandleByIndex(nvml_index)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    procs: list[GpuProcess] = []
    try:
        for p in nv.nvmlDeviceGetComputeRunningProcesses(h) if processes else ():
            used = getattr(p, "usedGpuMemory", None)
            procs.append(GpuProcess(int(p.pid), int(used) if isinstance(used, int) else None, _process_name(nv, p.pid)))
    except Exception:  # processes are an optional fact (not reported on some drivers)
        procs = []
    try:
        uuid = _text(nv.nvmlDeviceGetUUID(h))
    except nv.NVMLError:
        uuid = ""
    return GpuInfo(
        index=index,
        nvml_index=nvml_index,
        name=_text(nv.nvmlDeviceGetName(h)),
        uuid=uuid,
        total_bytes=int(mem.total),
        used_bytes=int(mem.used),
        free_bytes=int(mem.free),
        driver=driver,
        cuda_driver=cuda,
        processes=tuple(procs),
    )


def _versions(nv: Any) -> tuple[str, str]:
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
    except nv.NVMLError:
        driver = ""
    try:
        v = int(nv.nvmlSystemGetCudaDriverVersion())
        cuda = f"{v // 1000}.{(v % 1000) // 10}"
    except (nv.NVMLError, TypeError, ValueError):
        cuda = ""
    return driver, cuda


def list_gpus(processes: bool = True) -> list[GpuInfo]:
    """Every GPU CUDA programs can see, with memory and (unless told not to) compute processes."""
    with session() as nv:
        count = int(nv.nvmlDeviceGetCount())
        order = _visible_to_nvml(nv, count)
        if not order:
            hidden = " (CUDA_VISIBLE_DEVICES hides them all)" if count else ""
            raise EnvironmentProblem(f"the NVIDIA driver reports no usable GPU{hidden}", fix=NO_GPU_FIX)
        driver, cuda = _versions(nv)
        return [_info(nv, i, n, driver, cuda, processes) for i, n in enumerate(order)]


def gpu(index: int = 0, processes: bool = True) -> GpuInfo:
    """One GPU by its CUDA index; a wrong index names the ones that exist."""
    gpus = list_gpus(processes)
    if not 0 <= index < len(gpus):
        names = ", ".join(f"{g.index}: {g.name}" for g in gpus)
        raise EnvironmentProblem(f"there is no GPU {index}; this machine has {names}", fix="pass one of those to --gpu")
    return gpus[index]


def free_bytes(index: int = 0) -> int:
    """Free memory of one GPU now (for polling)."""
    return gpu(index, processes=False).free_bytes


@dataclass(frozen=True)
class MemoryReading:
    total_bytes: int
    used_bytes: int
    free_bytes: int


class DeviceReader:
    """One GPU kept open for cheap repeated readings (polling at 1–4 Hz): one nvmlInit and one
    handle for its lifetime instead of one per reading. Use as a context manager, or ``close()``.
    Raises EnvironmentProblem like ``gpu()`` when there is no driver or no such GPU."""

    def __init__(self, index: int = 0) -> None:
        info = gpu(index, processes=False)  # maps the CUDA index; raises with a clear message
        self.index = index
        self.name = info.name
        self._nv = _import_pynvml()
        self._open = False
        try:
            self._nv.nvmlInit()
            self._open = True
            self._handle = self._nv.nvmlDeviceGetHandleByIndex(info.nvml_index)
        except Exception as exc:
            self.close()
            raise nvml_failure(self._nv, exc) from None

    def memory(self) -> MemoryReading:
        """Memory now; any NVML failure is an EnvironmentProblem (callers that poll catch it)."""
        try:
            mem = self._nv.nvmlDeviceGetMemoryInfo(self._handle)
            return MemoryReading(int(mem.total), int(mem.used), int(mem.free))
        except Exception as exc:
            raise nvml_failure(self._nv, exc) from None

    def utilization(self) -> int | None:
        """GPU busy percentage over the driver's last sample period, None if not reported."""
        try:
            return int(self._nv.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        except Exception:
            return None

    def close(self) -> None:
        if self._open:
            self._open = False
            with suppress(Exception):
                self._nv.nvmlShutdown()

    def __enter__(self) -> DeviceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
