"""lorakit's one client of a running ComfyUI: free its GPU before training, and the HTTP calls
`lorakit try` makes (``lorakit.tryout``). Over ~400 lines because it is the one place that knows
ComfyUI's protocol (HTTP client, which device/GPU it runs on, free and its wait): split, it would be copied.

ComfyUI's ``POST /free`` with ``{"unload_models": true, "free_memory": true}`` only sets a flag and
answers 200 at once; its prompt worker unloads the models afterwards. Reading GPU memory right
after the answer shows nothing won, so this client reads free memory before asking, then polls
(NVML, or ComfyUI's own ``GET /system_stats`` where NVML cannot tell its GPU) until free memory
stops rising, nothing moves for a while, or a timeout — and says which.

Which GPU: ``/system_stats`` lists exactly one device, the one ComfyUI's torch uses. On ``--cpu``
it is ``{"type": "cpu", "index": null, "vram_*": <system RAM>}``: nothing to free on a GPU. Its
``index`` is CUDA's number *inside ComfyUI's process* (``--cuda-device N`` sets
CUDA_VISIBLE_DEVICES, so it says 0 on physical GPU N), so it never identifies a card. The card is
found by ComfyUI's process on an NVML GPU (the PID listening on the URL's port), else by the card
name + total memory, else ``--cuda-device N`` in its ``argv``; when that leaves doubt, the result
says so. Facts: docs/research/comfyui.md (ComfyUI a125cd84).

ComfyUI loads its models again by itself on its next prompt: nothing is restarted or restored.

Only loopback URLs (127.0.0.0/8, ::1, localhost, or a name that resolves only to those) are
contacted unless ``allow_remote`` is given (config ``comfyui.allow_remote``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from lorakit.errors import ConfigError, EnvironmentProblem

if TYPE_CHECKING:
    from lorakit.gpu.nvml import GpuInfo

DEFAULT_URL = "http://127.0.0.1:8188"
GIB = 1024**3
MIB = 1024**2
START_HINT = "start ComfyUI (python main.py --listen 127.0.0.1 --port 8188) or point comfyui.url / --url at it"

Outcome = Literal[
    "freed", "nothing-freed", "timeout", "unreachable", "http-error", "no-reading", "not-on-gpu", "other-gpu"
]
MemorySource = Literal["auto", "nvml", "system_stats"]


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)


def check_url(url: str, allow_remote: bool = False) -> str:
    """The base URL without a trailing slash; a non-loopback one needs ``allow_remote``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            [f"comfyui.url {url!r} is not an http(s) URL"],
            fix=f"set comfyui.url to something like {DEFAULT_URL}",
        )
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise ConfigError(
            [f"comfyui.url {url} is not on this machine (not a loopback address)"],
            fix="lorakit only talks to a local ComfyUI; set comfyui.allow_remote: true to allow this one",
        )
    return url.rstrip("/")


# ---------------------------------------------------------------------------------------------
# HTTP


class ComfyUnreachable(EnvironmentProblem):
    """Nothing answered at the URL (connection refused, timeout, name not found)."""

    def __init__(self, base: str, reason: str) -> None:
        super().__init__(f"no ComfyUI answered at {base} ({reason})", fix=START_HINT)
        self.reason = reason


class ComfyHTTPError(EnvironmentProblem):
    """ComfyUI answered with an HTTP error status; ``body`` is its answer (JSON when it sent JSON)."""

    def __init__(self, base: str, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"ComfyUI at {base} answered {method} {path} with HTTP {status}")
        self.status = status
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _request(url: str, data: dict[str, Any] | None, timeout: float) -> tuple[int, bytes]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status), resp.read()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc)


class Client:
    """GET/POST against one ComfyUI (checked URL); every failure is a typed error."""

    def __init__(self, url: str = DEFAULT_URL, *, allow_remote: bool = False, timeout_s: float = 10.0) -> None:
        self.base = check_url(url, allow_remote)
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, data: dict[str, Any] | None = None) -> bytes:
        url = self.base + path
        try:
            return _request(url, data if method == "POST" else None, self.timeout_s)[1]
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            raise ComfyHTTPError(self.base, method, path.split("?")[0], exc.code, body) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ComfyUnreachable(self.base, _reason(exc)) from None

    def get_json(self, path: str) -> Any:
        body = self.call("GET", path)
        try:
            return json.loads(body)
        except ValueError:
            raise EnvironmentProblem(
                f"{self.base}{path} did not answer JSON: is this a ComfyUI?", fix=START_HINT
            ) from None

    def post_json(self, path: str, data: dict[str, Any]) -> Any:
        body = self.call("POST", path, data)
        return json.loads(body) if body.strip() else None

    # the calls lorakit makes (shapes: tests/fixtures/comfyui/)
    def system_stats(self) -> dict[str, Any]:
        data = self.get_json("/system_stats")
        if not isinstance(data, dict):
            raise EnvironmentProblem(f"{self.base}/system_stats is not a JSON object: is this a ComfyUI?")
        return data

    def models(self, folder: str) -> list[str]:
        """``GET /models/<folder>``: file paths relative to the folder's roots ("sub/x.safetensors")."""
        data = self.get_json(f"/models/{folder}")
        return [str(x) for x in data] if isinstance(data, list) else []

    def model_folders(self, folder: str) -> list[str]:
        """Where ComfyUI looks for ``folder`` (``GET /experiment/models``); [] when it does not say."""
        try:
            data = self.get_json("/experiment/models")
        except (ComfyHTTPError, EnvironmentProblem):
            return []
        for entry in data if isinstance(data, list) else []:
            if isinstance(entry, dict) and entry.get("name") == folder:
                return [str(p) for p in entry.get("folders") or []]
        return []

    def queue_prompt(self, graph: dict[str, Any], client_id: str) -> str:
        """``POST /prompt``; its ``prompt_id``. A 400 (validation) stays a ComfyHTTPError."""
        answer = self.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        if not isinstance(answer, dict) or "prompt_id" not in answer:
            raise EnvironmentProblem(f"ComfyUI at {self.base} answered POST /prompt without a prompt_id: {answer!r}")
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's ``/history`` entry, None while it is queued or running."""
        data = self.get_json(f"/history/{prompt_id}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        return self.call("GET", "/view?" + urlencode({"filename": filename, "subfolder": subfolder, "type": kind}))


def system_stats(base: str, timeout: float = 2.0) -> dict[str, Any]:
    _, body = _request(base + "/system_stats", None, timeout)
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("system_stats is not a JSON object")
    return data


# ---------------------------------------------------------------------------------------------
# which device ComfyUI runs on


@dataclass(frozen=True)
class ComfyDevice:
    """``/system_stats`` ``devices[0]``: the one device ComfyUI's torch uses."""

    type: str  # "cuda" | "cpu" | "mps" | "xpu" | ... ("" when not said)
    card: str  # the card name ("NVIDIA H200"), "" off CUDA
    vram_total: int
    argv: tuple[str, ...] = ()

    @property
    def on_gpu(self) -> bool:
        return self.type == "cuda"

    def cuda_device_arg(self) -> int | None:
        """N from ``--cuda-device N`` in ComfyUI's command line (the physical CUDA number)."""
        args = list(self.argv)
        for i, a in enumerate(args):
            value = args[i + 1] if a == "--cuda-device" and i + 1 < len(args) else None
            if a.startswith("--cuda-device="):
                value = a.split("=", 1)[1]
            if value is not None and value.strip().isdigit():
                return int(value)
        return None


_CARD_RE = re.compile(r"^cuda:\d+\s+(.*?)(?:\s+:\s+\S*)?$")


def device_of(stats: dict[str, Any]) -> ComfyDevice:
    devices = stats.get("devices") or []
    dev = devices[0] if devices and isinstance(devices[0], dict) else {}
    name = str(dev.get("name") or "")
    match = _CARD_RE.match(name)
    argv = (stats.get("system") or {}).get("argv") or []
    return ComfyDevice(
        type=str(dev.get("type") or ""),
        card=match.group(1).strip() if match else "",
        vram_total=int(dev.get("vram_total") or 0),
        argv=tuple(str(a) for a in argv),
    )


@dataclass(frozen=True)
class Placement:
    """The GPU ComfyUI runs on, as lorakit numbers GPUs (CUDA order), and how it was found."""

    cuda_index: int | None  # None: could not tell
    how: str  # what identified it, or why not


def locate(device: ComfyDevice, gpus: Sequence[GpuInfo], pids: set[int]) -> Placement:
    """Pure: the GPU of ``gpus`` that ComfyUI (``device``, its process ids ``pids``) runs on."""
    if pids:
        holding = [g for g in gpus if any(p.pid in pids for p in g.processes)]
        if len(holding) == 1:
            g = holding[0]
            pid = next(p.pid for p in g.processes if p.pid in pids)
            return Placement(g.index, f"GPU {g.index} ({g.name}): ComfyUI's process {pid} is on it")
    if not device.card:
        return Placement(None, "ComfyUI's /system_stats names no card")
    same = [g for g in gpus if g.name == device.card and abs(g.total_bytes - device.vram_total) <= 0.03 * g.total_bytes]
    if len(same) == 1:
        g = same[0]
        return Placement(g.index, f"GPU {g.index} ({g.name}): the only {g.name} with {g.total_gib:.0f} GiB here")
    arg = device.cuda_device_arg()
    if same and arg is not None:
        g_arg = next((g for g in same if g.index == arg), None)
        if g_arg is not None:
            return Placement(
                g_arg.index, f"GPU {g_arg.index} ({g_arg.name}): from --cuda-device {arg} in ComfyUI's command line"
            )
    if not same:
        return Placement(None, f"no GPU here is a {device.card} with {device.vram_total / GIB:.0f} GiB")
    return Placement(
        None,
        f"{len(same)} GPUs here are a {device.card} with {same[0].total_gib:.0f} GiB and ComfyUI's process is not "
        "visible to this user",
    )


def listening_pids(port: int) -> set[int]:
    """Processes with a TCP socket listening on ``port`` (Linux /proc; only those this user may
    inspect). Empty elsewhere."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return set()
    wanted = {f"socket:[{i}]" for i in inodes}
    found: set[int] = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()) if os.path.isdir("/proc") else ():
        fd_dir = f"/proc/{pid}/fd"
        with suppress(OSError):
            for fd in os.listdir(fd_dir):
                with suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in wanted:
                        found.add(int(pid))
                        break
    return found


def _port(base: str) -> int:
    parts = urlsplit(base)
    return parts.port or (443 if parts.scheme == "https" else 80)


# ---------------------------------------------------------------------------------------------
# free


def _gib(n: int | None) -> float | None:
    return None if n is None else round(n / GIB, 2) + 0.0  # + 0.0: never "-0.0"


def _fmt(n: float) -> str:
    text = f"{n:.1f}"
    return "0.0" if text == "-0.0" else text


@dataclass(frozen=True)
class FreeResult:
    url: str
    outcome: Outcome
    before_bytes: int | None = None
    after_bytes: int | None = None
    waited_s: float = 0.0
    source: str = ""  # "NVML" | "ComfyUI /system_stats" | ""
    detail: str = ""
    where: str = ""  # the GPU ComfyUI runs on and how it was found (or why not)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reachable(self) -> bool:
        return self.outcome not in ("unreachable",)

    @property
    def won_bytes(self) -> int | None:
        if self.before_bytes is None or self.after_bytes is None:
            return None
        return self.after_bytes - self.before_bytes

    @property
    def message(self) -> str:
        return self._message() + "".join(f" ({n})" for n in self.notes)

    def _message(self) -> str:
        reload_note = "ComfyUI loads its models again by itself on its next prompt; nothing was restarted."
        if self.outcome == "unreachable":
            return f"no ComfyUI answered at {self.url} ({self.detail}); nothing to free"
        if self.outcome == "http-error" and self.detail.startswith("GET /system_stats"):
            return (
                f"ComfyUI at {self.url} has no /system_stats ({self.detail}): it is older than 2023-06; "
                "update it or close it before training"
            )
        if self.outcome == "http-error":
            return (
                f"ComfyUI at {self.url} refused POST /free ({self.detail}); ComfyUI has had /free since 2024-01 "
                "(an older one answers HTTP 405): update it or close it before training"
            )
        if self.outcome == "not-on-gpu":
            return (
                f"ComfyUI at {self.url} runs on the {self.detail or 'CPU'}, not on an NVIDIA GPU: "
                "it holds no GPU memory, nothing to free"
            )
        if self.outcome == "other-gpu":
            return f"ComfyUI at {self.url} runs on {self.where}; {self.detail}: left as it is"
        if self.outcome == "no-reading":
            return f"asked ComfyUI at {self.url} to unload its models; GPU memory could not be read ({self.detail})"
        assert self.before_bytes is not None and self.after_bytes is not None
        span = (
            f"free memory {_fmt(self.before_bytes / GIB)} → {_fmt(self.after_bytes / GIB)} GiB, "
            f"read from {self.source}{f' on {self.where}' if self.where else ''}"
        )
        won = _fmt((self.won_bytes or 0) / GIB)
        if self.outcome == "nothing-freed":
            return (
                f"asked ComfyUI at {self.url} to unload its models: nothing was freed within {self.waited_s:.1f} s "
                f"({span}); it probably had no model loaded"
            )
        if self.outcome == "timeout":
            return (
                f"asked ComfyUI at {self.url} to unload its models: {won} GiB freed so far, still rising after "
                f"{self.waited_s:.1f} s ({span}). {reload_note}"
            )
        return (
            f"ComfyUI at {self.url} unloaded its models: {won} GiB freed in {self.waited_s:.1f} s ({span}). "
            + reload_note
        )

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "outcome": self.outcome,
            "before_gib": _gib(self.before_bytes),
            "after_gib": _gib(self.after_bytes),
            "won_gib": _gib(self.won_bytes),
            "waited_s": round(self.waited_s, 2),
            "source": self.source,
            "where": self.where,
            "message": self.message,
        }


def _stats_reader(base: str) -> Callable[[], int]:
    """Free memory of ComfyUI's own device from /system_stats (only while it is a CUDA one)."""

    def read() -> int:
        devices = system_stats(base).get("devices") or []
        dev = devices[0] if devices and isinstance(devices[0], dict) else None
        if dev is None or dev.get("type") != "cuda" or "vram_free" not in dev:
            raise ValueError("ComfyUI's /system_stats lists no CUDA device")
        return int(dev["vram_free"])

    return read


def _nvml_reader(gpu_index: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """(read free bytes, close); raises EnvironmentProblem now if there is no NVML."""
    from lorakit.gpu import nvml

    reader = nvml.DeviceReader(gpu_index)
    return (lambda: reader.memory().free_bytes), reader.close


def _nvml_gpus() -> list[GpuInfo]:
    from lorakit.gpu import nvml

    return nvml.list_gpus(processes=True)


def free(
    url: str = DEFAULT_URL,
    *,
    allow_remote: bool = False,
    gpu_index: int | Sequence[int] | None = 0,
    memory: MemorySource = "auto",
    timeout_s: float = 30.0,
    poll_s: float = 0.25,
    settle_s: float = 2.0,
    first_rise_s: float = 5.0,
    min_rise_bytes: int = 64 * MIB,
    connect_timeout_s: float = 2.0,
) -> FreeResult:
    """Ask the ComfyUI at ``url`` to unload its models and free memory; wait until it did.

    ``gpu_index`` is the GPU (or GPUs) lorakit is about to use (CUDA numbering); a ComfyUI found
    on another GPU is left alone. None: free it wherever it runs. Stops when free memory has not risen by
    ``min_rise_bytes`` for ``settle_s`` after rising, when it has not risen at all within
    ``first_rise_s`` (nothing was loaded), or at ``timeout_s``.
    """
    base = check_url(url, allow_remote)
    try:
        stats = system_stats(base, connect_timeout_s)
    except urllib.error.HTTPError as exc:
        return FreeResult(base, "http-error", detail=f"GET /system_stats: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        return FreeResult(base, "unreachable", detail=_reason(exc))
    except ValueError as exc:
        return FreeResult(base, "no-reading", detail=f"/system_stats: {exc}")
    device = device_of(stats)
    if not device.on_gpu:
        return FreeResult(base, "not-on-gpu", detail=device.type or "an unnamed device")

    wanted = None if gpu_index is None else ([gpu_index] if isinstance(gpu_index, int) else list(gpu_index))
    read: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None  # noqa: E731
    source, where, notes = "", "", []
    if memory in ("auto", "nvml"):
        try:
            gpus = _nvml_gpus()
        except EnvironmentProblem:
            if memory == "nvml":
                raise
            gpus = []
        if gpus:
            place = locate(
                device, gpus, listening_pids(_port(base)) if is_loopback_host(urlsplit(base).hostname or "") else set()
            )
            if place.cuda_index is None:
                notes.append(f"could not tell which GPU ComfyUI uses: {place.how}; read ComfyUI's own figure")
            elif wanted is not None and place.cuda_index not in wanted:
                used = ", ".join(str(i) for i in wanted)
                return FreeResult(base, "other-gpu", where=place.how, detail=f"training uses GPU {used}")
            else:
                read, close = _nvml_reader(place.cuda_index)
                source, where = "NVML", place.how
        elif memory == "nvml":
            raise EnvironmentProblem("NVML lists no GPU", fix="check nvidia-smi")
    if read is None:
        read, source = _stats_reader(base), "ComfyUI /system_stats"
    try:
        result = _free(base, read, source, timeout_s, poll_s, settle_s, first_rise_s, min_rise_bytes, connect_timeout_s)
    finally:
        close()
    return FreeResult(
        result.url, result.outcome, result.before_bytes, result.after_bytes, result.waited_s, result.source,
        result.detail, where, tuple(notes),
    )  # fmt: skip


def _free(
    base: str,
    read: Callable[[], int],
    source: str,
    timeout_s: float,
    poll_s: float,
    settle_s: float,
    first_rise_s: float,
    min_rise_bytes: int,
    connect_timeout_s: float,
) -> FreeResult:
    why_no_reading = ""

    try:
        before: int | None = read()
    except (urllib.error.URLError, OSError, ValueError, EnvironmentProblem) as exc:
        if source != "NVML" and _unreachable(exc):
            return FreeResult(base, "unreachable", detail=_reason(exc))
        before, why_no_reading = None, f"{source}: {_reason(exc)}"

    try:
        _request(base + "/free", {"unload_models": True, "free_memory": True}, connect_timeout_s)
    except urllib.error.HTTPError as exc:
        return FreeResult(base, "http-error", detail=f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        return FreeResult(base, "unreachable", detail=_reason(exc))
    if before is None:
        return FreeResult(base, "no-reading", detail=why_no_reading)

    start = time.monotonic()
    best = current = before
    last_rise: float | None = None
    outcome: Outcome = "timeout"
    while True:
        time.sleep(poll_s)
        now = time.monotonic() - start
        with suppress(urllib.error.URLError, OSError, ValueError, EnvironmentProblem):  # a missed reading
            current = read()
        if current >= best + min_rise_bytes:
            best, last_rise = current, now
        elif current > best:
            best = current
        if last_rise is None and now >= first_rise_s:
            outcome = "nothing-freed"
            break
        if last_rise is not None and now - last_rise >= settle_s:
            outcome = "freed"
            break
        if now >= timeout_s:
            outcome = "timeout" if last_rise is not None else "nothing-freed"
            break
    return FreeResult(base, outcome, before, current, time.monotonic() - start, source)


def _unreachable(exc: BaseException) -> bool:
    return not isinstance(exc, urllib.error.HTTPError) and isinstance(exc, (urllib.error.URLError, OSError))


unload = free  # the name the queue's hook also looks for
