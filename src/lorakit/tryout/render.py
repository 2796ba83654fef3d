"""`lorakit try RUN`, the impure part: read the run, check what ComfyUI can see, queue one
prompt per (prompt, strength), follow each through ``/history``, fetch its image with ``/view``
and write the grid into the run folder (and its report).

ComfyUI facts (docs/research/comfyui.md, recorded answers in tests/fixtures/comfyui/):
``GET /models/checkpoints`` and ``/models/loras`` list files relative to the folder roots and are
re-read when a folder changes (no restart); ``POST /prompt`` answers 400 with ``error`` and
``node_errors`` when the graph does not validate (a file not in a list: ``value_not_in_list``);
``/history/<id>`` is ``{}`` until the prompt finished, then holds ``outputs`` and ``status``
(``status_str`` "error" with an ``execution_error`` message when a node raised).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lorakit.errors import ConfigError, EnvironmentProblem, LorakitError
from lorakit.gpu.comfyui import Client, ComfyHTTPError
from lorakit.tryout.workflow import (
    DEFAULT_SEED,
    DEFAULT_STRENGTHS,
    GRAPHS,
    SAVE_NODE,
    Prompt,
    Render,
    loaders_used,
    plan_renders,
    prompts_for,
    strength_label,
)

TRY_DIR = "comfyui"  # the images, in the run folder
TRY_PNG = "comfyui-try.png"  # the grid
TRY_JSON = "comfyui-try.json"  # what was rendered, with which names, seed and settings


class TryFailed(LorakitError):
    """ComfyUI took the prompt and could not render it (a node error)."""

    exit_code = 1


@dataclass(frozen=True)
class TryRequest:
    run_dir: Path
    url: str | None = None  # default: the run's comfyui.url
    allow_remote: bool | None = None
    strengths: Sequence[float] = DEFAULT_STRENGTHS
    seed: int = DEFAULT_SEED
    steps: int | None = None  # default: the run's sampling.steps
    base: str | None = None  # ComfyUI's name for the base model, when it differs from the run's file
    lora: str | None = None  # ComfyUI's name for the LoRA
    timeout_s: float = 900.0
    poll_s: float = 0.5


@dataclass
class TryResult:
    run_dir: Path
    url: str
    grid: Path
    images: list[Path]
    names: dict[str, str]  # model.<key> / "lora" → the name ComfyUI lists
    prompts: list[Prompt]
    strengths: list[float]
    seed: int
    steps: int
    seconds: float
    prompt_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "url": self.url,
            "grid": str(self.grid),
            "images": [str(p) for p in self.images],
            "comfyui_names": self.names,
            "prompts": [{"text": p.text, "negative": p.negative} for p in self.prompts],
            "strengths": self.strengths,
            "seed": self.seed,
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "prompt_ids": self.prompt_ids,
        }


def load_run_spec(run_dir: Path) -> Any:
    """The run's TrainSpec (from its spec.yaml, paths made absolute as `resume` does)."""
    import yaml

    from lorakit.config.schema import TrainSpec
    from lorakit.run.folder import SPEC_FILE, read_state
    from lorakit.run.resume import absolute_spec

    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError([f"{run_dir} has no {SPEC_FILE}; it is not a lorakit run folder"])
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base = Path(str(read_state(run_dir).get("cwd") or Path.cwd()))
    return TrainSpec.model_validate(absolute_spec(data, base))


def run_lora(run_dir: Path, state: dict[str, Any]) -> Path:
    """The run's final LoRA file (state.json ``lora``), or why there is none."""
    lora = state.get("lora")
    if lora and Path(lora).is_file():
        return Path(lora)
    status = state.get("status", "unknown")
    raise ConfigError(
        [f"{run_dir} has no finished LoRA to try (status: {status})"],
        fix="train to the end first (lorakit train / lorakit resume), then run lorakit try on it",
    )


def _match(listed: Sequence[str], wanted: str) -> list[str]:
    """The listed names that are ``wanted`` itself or end with ``/wanted`` (sub-folders)."""
    w = wanted.replace("\\", "/")
    return [n for n in listed if n.replace("\\", "/") == w or PurePosixPath(n.replace("\\", "/")).name == w]


def _folders_hint(folders: Sequence[str], folder: str) -> str:
    if folders:
        return folders[0]
    return f"ComfyUI/models/{folder}"


def find_model_names(client: Client, family: str, files: dict[str, Path], base_override: str | None) -> dict[str, str]:
    """The name ComfyUI lists for each base-model file, or an error saying which file to put where."""
    model_files = {k: str(v) for k, v in files.items()}
    names: dict[str, str] = {}
    for ld in loaders_used(family, model_files):
        listed = client.models(ld.folder)
        for key in ld.model_keys:
            path = files[key]
            want = base_override if (key == "checkpoint" and base_override) else path.name
            found = _match(listed, want)
            if not found:
                folders = client.model_folders(ld.folder)
                where = _folders_hint(folders, ld.folder)
                raise EnvironmentProblem(
                    f"ComfyUI at {client.base} cannot see the base model's {key} file {want}: it is not in "
                    f"its {ld.folder} folder ({', '.join(folders) or 'models/' + ld.folder})",
                    fix=f"put {path} (or a link to it) into {where}/, e.g. ln -s {path} {where}/ — ComfyUI "
                    f"lists new files without a restart; or pass --base NAME if it is there under another name",
                )
            names[key] = found[0]
    return names


def find_lora_name(client: Client, lora: Path, copies: Sequence[str], override: str | None) -> str:
    """The name ComfyUI lists for the run's LoRA (its copy in a LoRA folder), or an error."""
    listed = client.models("loras")
    if override:
        if override in listed:
            return override
        raise EnvironmentProblem(
            f"ComfyUI at {client.base} does not list a LoRA named {override}",
            fix="pass a name from ComfyUI's LoRA list (GET /models/loras), or leave --lora out",
        )
    folders = client.model_folders("loras")
    for copy in copies:  # a copy under one of ComfyUI's folders: its exact relative name
        for root in folders:
            try:
                rel = Path(copy).resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                continue
            if any(n.replace("\\", "/") == rel for n in listed):
                return next(n for n in listed if n.replace("\\", "/") == rel)
    for name in [*(Path(c).name for c in copies), lora.name]:
        found = _match(listed, name)
        if len(found) >= 1:
            return found[0]
    where = _folders_hint(folders, "loras")
    told = f"; lorakit copied it to {', '.join(copies)}, which is not one of ComfyUI's LoRA folders" if copies else ""
    raise EnvironmentProblem(
        f"ComfyUI at {client.base} does not list the LoRA {lora.name} yet (its LoRA folders: "
        f"{', '.join(folders) or 'models/loras'}){told}",
        fix=f"copy it there: cp {lora} {where}/ (or set output.lora_folders: [{where}] so lorakit copies each "
        "finished LoRA); ComfyUI lists new files without a restart",
    )


def node_error_text(answer: Any) -> str:
    """One line from a ``POST /prompt`` 400 answer: the error and each node's errors."""
    if not isinstance(answer, dict):
        return "no details"
    err = answer.get("error") or {}
    parts = [str(err.get("message") or err.get("type") or "invalid prompt")]
    if err.get("details"):
        parts[0] += f": {err['details']}"
    for nid, node in (answer.get("node_errors") or {}).items():
        for e in node.get("errors") or []:
            parts.append(f"node {nid} ({node.get('class_type', '?')}): {e.get('message')}: {e.get('details')}")
    return "; ".join(parts)


def execution_error_text(entry: dict[str, Any]) -> str:
    for event, data in (entry.get("status") or {}).get("messages") or []:
        if event == "execution_error" and isinstance(data, dict):
            return (
                f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type', 'error')}: "
                f"{str(data.get('exception_message', '')).strip()}"
            )
    return "the prompt ended with an error and no message"


def _queue(client: Client, render: Render, client_id: str) -> str:
    try:
        return client.queue_prompt(render.graph, client_id)
    except ComfyHTTPError as exc:
        if exc.status != 400:
            raise
        raise TryFailed(
            f"ComfyUI at {client.base} refused the workflow: {node_error_text(exc.json())}",
            fix="check that the node classes exist in this ComfyUI (it is older than lorakit expects?) and that "
            "the files are readable by the user ComfyUI runs as",
        ) from None


def _follow(client: Client, prompt_id: str, deadline: float, poll_s: float) -> dict[str, Any]:
    while True:
        entry = client.history(prompt_id)
        if entry is not None:
            status = entry.get("status") or {}
            if status.get("status_str") == "error":
                raise TryFailed(
                    f"ComfyUI could not render prompt {prompt_id}: {execution_error_text(entry)}",
                    fix="a LoRA that cannot be read (file permissions of the user ComfyUI runs as) or a base model "
                    "of another family fail here; ComfyUI's console has the full traceback",
                )
            return entry
        if time.monotonic() > deadline:
            raise TryFailed(
                f"ComfyUI has not finished prompt {prompt_id} in time",
                fix="it may be busy with other prompts (GET /queue); pass a longer --timeout or fewer --steps",
            )
        time.sleep(poll_s)


def _image_of(entry: dict[str, Any]) -> dict[str, Any]:
    images = ((entry.get("outputs") or {}).get(SAVE_NODE) or {}).get("images") or []
    if not images:
        raise TryFailed("ComfyUI finished the prompt without saving an image", fix="see ComfyUI's console")
    first = images[0]
    return first if isinstance(first, dict) else {}


def try_run(req: TryRequest, echo: Callable[[str], None] = lambda _: None) -> TryResult:
    """Render the run's sample prompts × strengths in ComfyUI; the grid goes into the run folder."""
    from lorakit.run.folder import atomic_write_bytes, atomic_write_json, read_state
    from lorakit.tryout.grid import write_grid

    t0 = time.monotonic()
    run_dir = req.run_dir
    state = read_state(run_dir)
    spec = load_run_spec(run_dir)
    lora = run_lora(run_dir, state)
    family = spec.model.family
    if family not in GRAPHS:
        raise ConfigError([f"lorakit try has no ComfyUI workflow for {family} yet"], fix="try it by hand in ComfyUI")
    files = {k: Path(v) for k in ("checkpoint", "clip_l", "clip_g", "t5xxl") if (v := getattr(spec.model, k, None))}
    if "checkpoint" not in files:
        raise ConfigError([f"{run_dir}'s spec names no model.checkpoint"])
    allow_remote = spec.comfyui.allow_remote if req.allow_remote is None else req.allow_remote
    client = Client(req.url or spec.comfyui.url, allow_remote=allow_remote)
    stats = client.system_stats()  # ComfyUI not running → ComfyUnreachable (exit 3) with the fix
    version = str((stats.get("system") or {}).get("comfyui_version", "?"))
    echo(f"ComfyUI {version} at {client.base}")
    names = find_model_names(client, family, files, req.base)
    names["lora"] = find_lora_name(client, lora, [str(c) for c in state.get("copies") or []], req.lora)
    echo(f"base model {names['checkpoint']}, LoRA {names['lora']}")

    prompts = prompts_for(spec.sampling.prompts, spec.dataset.trigger, spec.dataset.class_word)
    width, height = spec.training.size
    steps = req.steps or spec.sampling.steps
    stamp = time.strftime("%Y%m%d-%H%M%S")
    renders = plan_renders(
        family, {k: v for k, v in names.items() if k != "lora"}, names["lora"], prompts, list(req.strengths),
        width=width, height=height, seed=req.seed, steps=steps, prefix=f"lorakit/{run_dir.name}-{stamp}",
    )  # fmt: skip
    client_id = f"lorakit-{uuid.uuid4()}"
    ids = [_queue(client, r, client_id) for r in renders]  # all queued: ComfyUI keeps the models loaded
    echo(f"queued {len(ids)} prompts ({len(prompts)} prompts × {len(req.strengths)} strengths, seed {req.seed})")
    out_dir = run_dir / TRY_DIR
    deadline = time.monotonic() + req.timeout_s
    images: list[Path] = []
    for r, pid in zip(renders, ids, strict=True):
        entry = _follow(client, pid, deadline, req.poll_s)
        img = _image_of(entry)
        data = client.view(str(img.get("filename", "")), str(img.get("subfolder", "")), str(img.get("type", "output")))
        dest = out_dir / f"p{r.prompt_index}-s{strength_label(r.strength)}.png"
        atomic_write_bytes(dest, data)
        images.append(dest)
        echo(f"  prompt {r.prompt_index + 1}, strength {strength_label(r.strength)}: {dest.name}")
    grid = write_grid(images, prompts, list(req.strengths), run_dir / TRY_PNG, title=f"{names['lora']} in ComfyUI")
    result = TryResult(
        run_dir, client.base, grid, images, names, prompts, list(req.strengths), req.seed, steps,
        time.monotonic() - t0, ids,
    )  # fmt: skip
    record = result.to_json() | {"comfyui_version": version, "workflow": renders[-1].graph}
    atomic_write_json(run_dir / TRY_JSON, record)
    _refresh_report(run_dir)
    return result


def _refresh_report(run_dir: Path) -> None:
    """The run's report.html shows the grid (a run without events has no report to refresh)."""
    from lorakit.events import EVENTS_FILE

    if (run_dir / EVENTS_FILE).is_file():
        from lorakit.report.build import build_report

        build_report(run_dir)
