"""Ask a running ComfyUI to give the GPU back before training.

ComfyUI's ``POST /free`` with ``{"unload_models": true, "free_memory": true}`` only sets a flag and
answers 200 at once; its prompt worker unloads the models afterwards. Reading GPU memory right
after the answer shows nothing won, so this client reads free memory before asking, then polls
(NVML, or ComfyUI's own ``GET /system_stats`` where NVML is not available) until free memory stops
rising, nothing moves for a while, or a timeout — and says which.

ComfyUI loads its models again by itself on its next prompt: nothing is restarted or restored.

Only loopback URLs (127.0.0.0/8, ::1, localhost, or a name that resolves only to those) are
contacted unless ``allow_remote`` is given (config ``comfyui.allow_remote``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from lorakit.errors import ConfigError, EnvironmentProblem

DEFAULT_URL = "http://127.0.0.1:8188"
GIB = 1024**3
MIB = 1024**2

Outcome = Literal["freed", "nothing-freed", "timeout", "unreachable", "http-error", "no-reading"]
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
            fix="lorakit only asks a local ComfyUI to unload; set comfyui.allow_remote: true to allow this one",
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class FreeResult:
    url: str
    outcome: Outcome
    before_bytes: int | None = None
    after_bytes: int | None = None
    waited_s: float = 0.0
    source: str = ""  # "NVML" | "ComfyUI /system_stats" | ""
    detail: str = ""

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
        reload_note = "ComfyUI loads its models again by itself on its next prompt; nothing was restarted."
        if self.outcome == "unreachable":
            return f"no ComfyUI answered at {self.url} ({self.detail}); nothing to free"
        if self.outcome == "http-error":
            return (
                f"ComfyUI at {self.url} refused POST /free ({self.detail}); a ComfyUI older than mid-2024 has no "
                "/free endpoint: update it or close it before training"
            )
        if self.outcome == "no-reading":
            return f"asked ComfyUI at {self.url} to unload its models; GPU memory could not be read ({self.detail})"
        assert self.before_bytes is not None and self.after_bytes is not None
        span = f"free memory {self.before_bytes / GIB:.1f} → {self.after_bytes / GIB:.1f} GiB, read from {self.source}"
        won = (self.won_bytes or 0) / GIB
        if self.outcome == "nothing-freed":
            return (
                f"asked ComfyUI at {self.url} to unload its models: nothing was freed within {self.waited_s:.1f} s "
                f"({span}); it probably had no model loaded"
            )
        if self.outcome == "timeout":
            return (
                f"asked ComfyUI at {self.url} to unload its models: {won:.1f} GiB freed so far, still rising after "
                f"{self.waited_s:.1f} s ({span}). {reload_note}"
            )
        return (
            f"ComfyUI at {self.url} unloaded its models: {won:.1f} GiB freed in {self.waited_s:.1f} s ({span}). "
            + reload_note
        )

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "outcome": self.outcome,
            "before_gib": None if self.before_bytes is None else round(self.before_bytes / GIB, 2),
            "after_gib": None if self.after_bytes is None else round(self.after_bytes / GIB, 2),
            "won_gib": None if self.won_bytes is None else round(self.won_bytes / GIB, 2),
            "waited_s": round(self.waited_s, 2),
            "source": self.source,
            "message": self.message,
        }


def _request(url: str, data: dict[str, Any] | None, timeout: float) -> tuple[int, bytes]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status), resp.read()


def system_stats(base: str, timeout: float = 2.0) -> dict[str, Any]:
    _, body = _request(base + "/system_stats", None, timeout)
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("system_stats is not a JSON object")
    return data


def _stats_reader(base: str, gpu_index: int) -> Callable[[], int]:
    def read() -> int:
        devices = system_stats(base).get("devices") or []
        dev = next((d for d in devices if d.get("index") == gpu_index), devices[0] if devices else None)
        if dev is None or "vram_free" not in dev:
            raise ValueError("ComfyUI's /system_stats lists no GPU")
        return int(dev["vram_free"])

    return read


def _nvml_reader(gpu_index: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """(read free bytes, close); raises EnvironmentProblem now if there is no NVML."""
    from lorakit.gpu import nvml

    reader = nvml.DeviceReader(gpu_index)
    return (lambda: reader.memory().free_bytes), reader.close


def free(
    url: str = DEFAULT_URL,
    *,
    allow_remote: bool = False,
    gpu_index: int = 0,
    memory: MemorySource = "auto",
    timeout_s: float = 30.0,
    poll_s: float = 0.25,
    settle_s: float = 2.0,
    first_rise_s: float = 5.0,
    min_rise_bytes: int = 64 * MIB,
    connect_timeout_s: float = 2.0,
) -> FreeResult:
    """Ask the ComfyUI at ``url`` to unload its models and free memory; wait until it did.

    Stops when free memory has not risen by ``min_rise_bytes`` for ``settle_s`` after rising, when
    it has not risen at all within ``first_rise_s`` (nothing was loaded), or at ``timeout_s``.
    """
    base = check_url(url, allow_remote)
    read: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None  # noqa: E731
    source = ""
    if memory in ("auto", "nvml"):
        try:
            read, close = _nvml_reader(gpu_index)
            source = "NVML"
        except EnvironmentProblem:
            if memory == "nvml":
                raise
    if read is None:
        read, source = _stats_reader(base, gpu_index), "ComfyUI /system_stats"
    try:
        return _free(base, read, source, timeout_s, poll_s, settle_s, first_rise_s, min_rise_bytes, connect_timeout_s)
    finally:
        close()


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
    except (urllib.error.URLError, OSError, ValueError) as exc:
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
        with suppress(urllib.error.URLError, OSError, ValueError):  # a missed reading is not the end
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


def _unreachable(exc: Exception) -> bool:
    return not isinstance(exc, urllib.error.HTTPError) and isinstance(exc, (urllib.error.URLError, OSError))


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc)


unload = free  # the name the queue's hook also looks for
