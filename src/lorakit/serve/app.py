"""The Starlette application of ``lorakit serve``: pages, the JSON API and the live streams.
Over ~400 lines because it is the route table: each route is a few lines over a core function.

Every route calls a lorakit function through :mod:`lorakit.serve._core` (the CLI's own
functions); a training, a resume and the queue runner are child ``python -m lorakit ...``
processes (:mod:`lorakit.serve.children`), stopped with the SIGINT Ctrl-C sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lorakit.errors import LorakitError
from lorakit.serve import _core
from lorakit.serve.children import Children
from lorakit.serve.index import RunIndex
from lorakit.serve.runcache import RunCaches
from lorakit.serve.security import CrashMiddleware, Guard, SecurityMiddleware

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
FILE_SUFFIXES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".html": "text/html; charset=utf-8",  # report.html only, sandboxed (REPORT_CSP)
}
REPORT_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
MAX_POINTS = 2000
STATUS_BY_EXIT = {2: 400, 3: 503, 1: 500, 130: 409}


@dataclass
class ServeConfig:
    runs: Path  # absolute
    roots: list[Path]  # folders the browser may name (resolved)
    guard: Guard = field(default_factory=lambda: Guard(csrf=secrets.token_urlsafe(24)))
    home: Path | None = None  # lorakit's data folder (queue, logs); None: the default
    cwd: Path = field(default_factory=Path.cwd)


class Problem(Exception):
    """An HTTP error with lorakit's error shape."""

    def __init__(self, status: int, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fix = status, message, fix


def int_param(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return max(0, int(text))
    except ValueError:
        raise Problem(400, f"{text!r} is not a whole number") from None


def error_json(exc: LorakitError) -> dict[str, Any]:
    problems = list(getattr(exc, "problems", None) or [exc.message])
    return {"error": exc.message, "fix": exc.fix, "problems": problems, "fields": field_problems(problems)}


def field_problems(problems: list[str]) -> list[dict[str, str]]:
    """Each problem under the form field whose dotted key it names (None: the form's top)."""
    out = []
    for p in problems:
        m = re.search(r"\b((?:model|network|optimizer|training|saving|sampling|dataset|output|comfyui)\.[a-z_.]+)", p)
        out.append({"path": m.group(1).rstrip(".") if m else "", "message": p})
    return out


# ---------------------------------------------------------------------------------------------
# run folder figures


def run_dir_of(cfg: ServeConfig, index: RunIndex, run_id: str) -> Path:
    """A run folder from a browser-given id: exact folder name under --runs only."""
    if not RUN_ID.match(run_id) or run_id not in index.names():
        raise Problem(404, f"no run {run_id!r} in {cfg.runs}")
    path = (cfg.runs / run_id).resolve()
    if path.parent != cfg.runs.resolve() or not _core.is_run_dir(path):
        raise Problem(404, f"no run {run_id!r} in {cfg.runs}")
    return path


def read_lines(path: Path, offset: int = 0) -> tuple[list[bytes], int]:
    """Complete lines of ``path`` from byte ``offset``; the offset after the last one."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], offset
    return data[: cut + 1].splitlines(), offset + cut + 1


def downsample(points: list[list[float]], limit: int = MAX_POINTS) -> list[list[float]]:
    if len(points) <= limit:
        return points
    every = len(points) / limit
    return [points[int(i * every)] for i in range(limit - 1)] + [points[-1]]


def snapshot(run_dir: Path, caches: RunCaches | None = None) -> dict[str, Any]:
    """`runs show --json` of the run, plus its loss series and the events offset the live
    stream continues from."""
    events, offset, points, scalars = (caches or RunCaches(1)).read(run_dir)
    info = _core.summarize(run_dir, events, scalars)
    tb = scalars.series()
    if tb:  # the trainer's per-step loss (TensorBoard logs), as `runs show` and `report` use
        points = [[p.step, p.value] for p in tb]
    # else sd-scripts' running average from its progress bar (the loss note says so)
    info["loss_source"] = "tensorboard" if tb else "progress"
    state = info["state"]
    live = _core.live_status(run_dir, state)
    info["live"] = {
        "status": info["status"],
        "step": live.get("step", state.get("step")),
        "total": live.get("total") or state.get("total") or state.get("total_steps"),
        "avr_loss": live.get("avr_loss", state.get("avr_loss")),
        "eta_s": state.get("eta_s"),
        "steady_s_per_step": state.get("steady_s_per_step"),
    }
    info["loss_series"] = downsample(points)
    info["events_offset"] = offset
    info["lora"] = state.get("lora") if state.get("status") == "done" else None
    info["resumable"] = bool(state.get("save_state")) and info["status"] in ("interrupted", "failed", "lost")
    info["report_files"] = [n for n in ("report.html", "report.png", "samples.png") if (run_dir / n).is_file()]
    info["sample_files"] = [
        str(Path(p).resolve().relative_to(run_dir)) for p in info["samples"] if _inside(Path(p), run_dir)
    ]
    return info


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def inside_roots(cfg: ServeConfig, text: str, what: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = cfg.cwd / path
    path = path.resolve()
    if not any(path.is_relative_to(r) for r in cfg.roots):
        raise Problem(400, f"{what} {text} is outside the folders this server may read (--root)")
    return path


# ---------------------------------------------------------------------------------------------
# the training form → the CLI's request


def plan_request(cfg: ServeConfig, body: dict[str, Any], *, strict: bool = True) -> _core.PlanRequest:
    """The form as `lorakit train --preset P --config C --data D --set k=v ...` would give it."""
    for key in ("preset", "config", "data"):
        if not isinstance(body.get(key) or "", str):
            raise Problem(400, f"{key} must be a string")
    if not isinstance(body.get("overrides") or [], list):
        raise Problem(400, "overrides must be a list of key=value strings")
    preset = (body.get("preset") or "").strip() or None
    config = inside_roots(cfg, body["config"], "config") if body.get("config") else None
    data = inside_roots(cfg, body["data"], "dataset folder") if body.get("data") else None
    overrides = [str(o).strip() for o in body.get("overrides") or [] if str(o).strip()]
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() in ("model.checkpoint", "model.vae", "model.clip_l", "model.clip_g", "model.t5xxl"):
            inside_roots(cfg, value.strip(), key.strip())
    if not any(o.startswith("output.folder=") for o in overrides):
        overrides.append(f"output.folder={cfg.runs}")
    return _core.PlanRequest(preset, config, tuple(overrides), data, strict_paths=strict)


def validate(cfg: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
    """`train --dry-run --json` of the form (nothing written): its plan, or its problems."""
    req = plan_request(cfg, body, strict=True)
    trainer = _core.find_trainer(None) or _core.PLACEHOLDER
    loaded, warnings = _core.resolve_spec(req)
    run_dir = _core.run_dir_path(Path(loaded.spec.output.folder), loaded.spec.output.name).absolute()
    planned = _core.plan_resolved(loaded, warnings, trainer, run_dir)
    return {"ok": True, "plan": _core.plan_json(planned), "warnings": warnings}


def vram_check(cfg: ServeConfig, body: dict[str, Any]) -> dict[str, Any]:
    """The VRAM check `train` runs before launch (`precheck`), or for a card size (`--vram`)."""
    from lorakit.gpu.estimate import shape_from_spec

    req = plan_request(cfg, body, strict=False)
    loaded, _ = _core.resolve_spec(req)
    spec = loaded.spec
    dataset = _core.scan_dataset(spec.dataset) if (spec.dataset.folder or spec.dataset.concepts) else None
    fastest = bool(body.get("fastest"))
    if body.get("vram"):
        budget = _core.Budget.from_vram(_core.parse_vram(str(body["vram"])))
        report = _core.check_fit(shape_from_spec(spec), budget, _core.run_facts(spec, dataset), want_fastest=fastest)
    else:
        report = _core.precheck(spec, dataset, int_param(str(body.get("gpu") or 0), 0), fastest=fastest)
    return dict(report.to_json())


# ---------------------------------------------------------------------------------------------
# the app


def create_app(cfg: ServeConfig) -> Starlette:
    index = RunIndex(cfg.runs)
    caches = RunCaches()
    children = Children(cfg.home)
    env = Environment(loader=PackageLoader("lorakit.serve", "templates"), autoescape=select_autoescape())
    env.filters["tojson_safe"] = lambda v: (
        json.dumps(v, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    )
    env.filters["clock"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"

    def page(name: str, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(csrf=cfg.guard.csrf, runs_dir=str(cfg.runs), **ctx)
        return HTMLResponse(html, headers={"content-security-policy": CSP})

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise Problem(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise Problem(400, "the body must be a JSON object")
        return data

    # -- pages -------------------------------------------------------------------------------
    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def runs_page(request: Request) -> Response:
        rows = await run_in_threadpool(index.rows, status=request.query_params.get("status"))
        return page("runs.html", rows=rows[:100], count=len(rows), active="runs")

    async def run_page(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        info = await run_in_threadpool(snapshot, run_dir, caches)
        return page("run.html", info=info, active="runs")

    async def new_page(request: Request) -> Response:
        presets = [asdict(_core.preset_info(n)) for n in _core.preset_names()]
        for p in presets:
            p["path"] = str(p.get("path", ""))
        return page("new.html", presets=presets, active="new", cwd=str(cfg.cwd))

    async def queue_page(request: Request) -> Response:
        return page("queue.html", queue=await run_in_threadpool(queue_json), active="queue")

    async def gpus_page(request: Request) -> Response:
        return page("gpus.html", gpus=await run_in_threadpool(gpus_json), active="gpus")

    async def dataset_page(request: Request) -> Response:
        path = request.query_params.get("path")
        report: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if path:
            try:
                report = await run_in_threadpool(inspect, path)
            except LorakitError as exc:
                error = error_json(exc)
            except Problem as exc:
                error = {"error": exc.message, "fix": exc.fix}
        return page("dataset.html", path=path or "", report=report, error=error, active="dataset")

    # -- runs API ----------------------------------------------------------------------------
    async def api_runs(request: Request) -> Response:
        qp = request.query_params
        rows = await run_in_threadpool(index.rows, status=qp.get("status"), q=qp.get("q"))
        offset, limit = int_param(qp.get("offset"), 0), min(int_param(qp.get("limit"), 100), 500)
        return JSONResponse({"runs": rows[offset : offset + limit], "count": len(rows)})

    async def api_run(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        return JSONResponse(await run_in_threadpool(snapshot, run_dir, caches))

    async def api_log(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        n = min(int_param(request.query_params.get("lines"), 200), 5000)
        path = run_dir / "train.log"
        data = path.read_bytes()[-400_000:] if path.is_file() else b""
        return JSONResponse({"lines": _core.log_lines(data)[-n:]})

    async def api_file(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        path = (run_dir / request.path_params["name"]).resolve()
        kind = FILE_SUFFIXES.get(path.suffix.lower())
        if path.suffix.lower() == ".html" and path.name != "report.html":
            kind = None
        if kind is None or not path.is_relative_to(run_dir) or not path.is_file():
            raise Problem(404, "no such image or report in this run")
        headers = {"x-content-type-options": "nosniff"}
        if path.suffix.lower() == ".html":
            headers["content-security-policy"] = REPORT_CSP
        return FileResponse(path, media_type=kind, headers=headers)

    async def api_report(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        await body_of(request)
        files = await run_in_threadpool(_core.build_report, run_dir)
        out = {
            name: None if path is None else str(Path(path).relative_to(run_dir))
            for name, path in (("report_html", files.html), ("report_png", files.png), ("samples_png", files.samples))
        }
        return JSONResponse(out)

    async def api_events(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        start = request.headers.get("last-event-id") or request.query_params.get("from") or "0"
        try:
            offset = max(0, int(start))
        except ValueError:
            offset = 0
        return StreamingResponse(
            stream_events(request, run_dir, offset),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def api_start(request: Request) -> Response:
        body = await body_of(request)
        out = await run_in_threadpool(children.start_training, cfg, body)
        index.refresh(force=True)
        return JSONResponse(out, status_code=202)

    async def api_stop(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        await body_of(request)
        who = await run_in_threadpool(_core.stop_run, run_dir)
        return JSONResponse({"stopping": run_dir.name, "signalled": who}, status_code=202)

    async def api_resume(request: Request) -> Response:
        run_dir = run_dir_of(cfg, index, request.path_params["run"])
        await body_of(request)
        out = await run_in_threadpool(children.resume, cfg, run_dir)
        return JSONResponse(out, status_code=202)

    # -- GPUs, queue, presets, validation, datasets ------------------------------------------
    def gpus_json() -> dict[str, Any]:
        from lorakit.config.schema import ComfyUISection
        from lorakit.errors import EnvironmentProblem
        from lorakit.gpu import comfyui
        from lorakit.gpu.nvml import list_gpus
        from lorakit.run.lock import held_gpus

        url = ComfyUISection().url
        out: dict[str, Any] = {"gpus": [], "note": None, "comfyui": {"url": url}}
        try:
            out["comfyui"]["stats"] = comfyui.system_stats(comfyui.check_url(url), timeout=0.5)
            out["comfyui"]["state"] = "running"
        except LorakitError as exc:
            out["comfyui"]["state"] = f"not reachable ({exc.message})"
        except OSError as exc:
            out["comfyui"]["state"] = f"not reachable ({exc})"
        try:
            gpus = list_gpus()
        except EnvironmentProblem as exc:
            out["note"] = exc.message
            return out
        holders = held_gpus([g.index for g in gpus], cfg.home)
        for g in gpus:
            row = g.to_json()
            h = holders.get(g.index)
            row["holder"] = None if h is None else {"pid": h.pid, "run": h.run, "text": h.describe()}
            for p in row["processes"]:
                p["who"] = "lorakit run" if h is not None and p["pid"] == h.pid else (
                    "ComfyUI" if "comfy" in p["name"].lower() or p["name"].endswith("main.py") else "other"
                )  # fmt: skip
            out["gpus"].append(row)
        return out

    def queue_json() -> dict[str, Any]:
        store = _core.QueueStore(cfg.home)
        jobs = [asdict(j) for j in store.load().jobs]
        pid = children.queue_runner_pid(store)
        return {"jobs": jobs, "runner": {"running": pid is not None, "pid": pid}}

    def inspect(path: str) -> dict[str, Any]:
        from lorakit.dataset.inspect import inspect_dataset

        return dict(inspect_dataset(inside_roots(cfg, path, "dataset folder"), jobs=1).as_dict())

    async def api_gpus(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(gpus_json))

    async def api_comfy_free(request: Request) -> Response:
        from lorakit.config.schema import ComfyUISection
        from lorakit.gpu import comfyui

        body = await body_of(request)
        gpu = int_param(str(body.get("gpu") or 0), 0)
        result = await run_in_threadpool(comfyui.free, ComfyUISection().url, gpu_index=gpu)
        return JSONResponse(result.to_json())

    async def api_queue(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(queue_json))

    async def api_queue_add(request: Request) -> Response:
        body = await body_of(request)
        req = plan_request(cfg, body)
        job, warnings = await run_in_threadpool(
            _core.add_job, _core.QueueStore(cfg.home), req, cwd=cfg.cwd, sd_scripts=None
        )
        return JSONResponse({"job": asdict(job), "warnings": warnings}, status_code=201)

    async def api_queue_remove(request: Request) -> Response:
        job_id = request.path_params["job"]
        if not job_id.isdigit():
            raise Problem(404, f"no job {job_id!r}")
        gone = await run_in_threadpool(_core.remove_jobs, _core.QueueStore(cfg.home), [job_id])
        return JSONResponse({"removed": [j.id for j in gone]})

    async def api_queue_move(request: Request) -> Response:
        job_id = request.path_params["job"]
        body = await body_of(request)
        if not job_id.isdigit() or not isinstance(body.get("to"), int):
            raise Problem(400, 'give the job id and {"to": position} (1 = first)')
        order = await run_in_threadpool(_core.move_job, _core.QueueStore(cfg.home), job_id, body["to"])
        return JSONResponse({"order": order})

    async def api_runner(request: Request) -> Response:
        body = await body_of(request)
        action = request.path_params["action"]
        store = _core.QueueStore(cfg.home)
        if action == "start":
            return JSONResponse(await run_in_threadpool(children.start_queue_runner, cfg, body), status_code=202)
        if action == "stop":
            return JSONResponse(await run_in_threadpool(children.stop_queue_runner, store), status_code=202)
        raise Problem(404, "unknown action")

    async def api_presets(request: Request) -> Response:
        infos = [asdict(_core.preset_info(n)) for n in _core.preset_names()]
        return JSONResponse({"presets": json.loads(json.dumps(infos, default=str))})

    async def api_validate(request: Request) -> Response:
        body = await body_of(request)
        return JSONResponse(await run_in_threadpool(validate, cfg, body))

    async def api_vram(request: Request) -> Response:
        body = await body_of(request)
        return JSONResponse(await run_in_threadpool(vram_check, cfg, body))

    async def api_dataset(request: Request) -> Response:
        path = request.query_params.get("path") or ""
        return JSONResponse(await run_in_threadpool(inspect, path))

    # -- errors ------------------------------------------------------------------------------
    async def on_lorakit(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LorakitError)
        status = STATUS_BY_EXIT.get(exc.exit_code, 400)
        if "not running" in exc.message or "still running" in exc.message or "nothing to resume" in exc.message:
            status = 409
        return JSONResponse(error_json(exc), status_code=status)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        body = {"error": exc.message, "fix": exc.fix, "problems": [exc.message], "fields": []}
        if request.url.path.startswith("/api/"):
            return JSONResponse(body, status_code=exc.status)
        return page("error.html", error=body, status=exc.status, active="")

    routes = [
        Route("/", home),
        Route("/favicon.ico", favicon),
        Route("/runs", runs_page),
        Route("/runs/{run}", run_page),
        Route("/new", new_page),
        Route("/queue", queue_page),
        Route("/gpus", gpus_page),
        Route("/dataset", dataset_page),
        Route("/api/runs", api_runs, methods=["GET"]),
        Route("/api/runs", api_start, methods=["POST"]),
        Route("/api/runs/{run}", api_run),
        Route("/api/runs/{run}/events", api_events),
        Route("/api/runs/{run}/log", api_log),
        Route("/api/runs/{run}/files/{name:path}", api_file),
        Route("/api/runs/{run}/stop", api_stop, methods=["POST"]),
        Route("/api/runs/{run}/resume", api_resume, methods=["POST"]),
        Route("/api/runs/{run}/report", api_report, methods=["POST"]),
        Route("/api/gpus", api_gpus),
        Route("/api/comfyui/free", api_comfy_free, methods=["POST"]),
        Route("/api/queue", api_queue, methods=["GET"]),
        Route("/api/queue", api_queue_add, methods=["POST"]),
        Route("/api/queue/{job}", api_queue_remove, methods=["DELETE"]),
        Route("/api/queue/runner/{action}", api_runner, methods=["POST"]),
        Route("/api/queue/{job}/move", api_queue_move, methods=["POST"]),
        Route("/api/presets", api_presets),
        Route("/api/validate", api_validate, methods=["POST"]),
        Route("/api/vram-check", api_vram, methods=["POST"]),
        Route("/api/dataset", api_dataset),
        Mount("/static", StaticFiles(packages=[("lorakit.serve", "static")]), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        task = asyncio.create_task(_reaper(children))
        await run_in_threadpool(index.refresh, True)
        # the TensorBoard reader's import (~0.3 s) now, not on the first run page
        await run_in_threadpool(_core.read_run_scalars, cfg.runs / ".none")
        yield
        task.cancel()

    app = Starlette(
        routes=routes,
        exception_handlers={LorakitError: on_lorakit, Problem: on_problem},
        lifespan=lifespan,
    )
    app.add_middleware(SecurityMiddleware, guard=cfg.guard)
    app.add_middleware(CrashMiddleware)  # outermost: added last
    app.state.index = index
    app.state.children = children
    return app


async def _reaper(children: Children) -> None:
    while True:
        children.reap()
        await asyncio.sleep(1.0)


async def stream_events(request: Request, run_dir: Path, offset: int) -> Any:
    """SSE: each new complete line of events.jsonl (``id:`` = byte offset after it), a
    ``runstate`` message when state.json changes, ``end`` once the run is over."""
    events = run_dir / "events.jsonl"
    state_file = run_dir / "state.json"
    yield "retry: 1000\n\n"
    last_state: tuple[int, int] | None = None
    last_beat = time.monotonic()
    scalars = _core.open_scalars(run_dir)
    last_scalars = 0.0
    sent_step = -1
    ended_polls = 0
    while True:
        if await request.is_disconnected():
            return
        try:
            size = os.stat(events).st_size
        except OSError:
            size = 0
        if size < offset:
            yield "event: reset\ndata: {}\n\n"
            offset = 0
        if size > offset:
            lines, new_offset = read_lines(events, offset)
            pos = offset
            for raw in lines:
                pos += len(raw) + 1
                try:
                    kind = str(json.loads(raw).get("type", "event"))
                except (ValueError, AttributeError):
                    continue
                yield f"id: {pos}\nevent: {kind}\ndata: {raw.decode('utf-8', errors='replace')}\n\n"
            offset = new_offset
        try:
            st = os.stat(state_file)
            sig = (st.st_mtime_ns, st.st_size)
        except OSError:
            sig = None
        if sig is not None and sig != last_state:
            last_state = sig
            state = _core.read_state(run_dir)
            status = _core.run_status(state)
            live = {
                "status": status,
                "eta_s": state.get("eta_s"),
                "steady_s_per_step": state.get("steady_s_per_step"),
                "lora": state.get("lora") if state.get("status") == "done" else None,
            }
            yield f"event: runstate\ndata: {json.dumps(live)}\n\n"
            ended_polls = ended_polls + 1 if status not in ("running",) else 0
        elif last_state is not None and _core.run_status(_core.read_state(run_dir)) != "running":
            ended_polls += 1
        if time.monotonic() - last_scalars >= 2.0:  # the runner's own cadence for the TensorBoard logs
            last_scalars = time.monotonic()
            if scalars.poll():
                new = [[p.step, p.value] for p in scalars.series() if p.step > sent_step]
                if new:
                    if sent_step < 0:
                        new = downsample(new)
                    sent_step = int(new[-1][0])
                    yield f"event: loss\ndata: {json.dumps(new)}\n\n"
        if ended_polls >= 3:
            yield "event: end\ndata: {}\n\n"
            return
        if time.monotonic() - last_beat > 15:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.2)
