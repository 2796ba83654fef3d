"""A failed (or suspicious) run → one diagnosis: what happened, the fix, the exit code.

The log parser (``lorakit.kohya.logparse``) spots the evidence as lines arrive and emits
``error`` events with a ``kind``; :func:`with_fix` fills in the fix before the runner writes
them. When the trainer is gone, :func:`diagnose` weighs the error events, the exception lines
of any traceback, the child's exit status and whether a LoRA came out, and returns the one
:class:`Diagnosis` the CLI prints (or None for a clean run).

Exit codes follow DESIGN.md: 1 training failed (oom, nan, crash), 2 bad input (dataset, a
model path in the config), 3 environment (missing package, tokenizer/model not reachable),
130 interrupted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from lorakit import families
from lorakit.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_TRAINING_FAILED,
)
from lorakit.events import ErrorEvent

# import name → pip distribution, where they differ (what people hit with sd-scripts)
PIP_NAMES: dict[str, str] = {
    "cv2": "opencv-python",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "lycoris": "lycoris-lora",
    "prodigyopt": "prodigyopt",
    "Prodigy": "prodigyopt",
    "lion_pytorch": "lion-pytorch",
    "dadaptation": "dadaptation",
    "schedulefree": "schedulefree",
    "sklearn": "scikit-learn",
    "google.protobuf": "protobuf",
    "google": "protobuf",
    "skimage": "scikit-image",
    "imagesize": "imagesize",
    "voluptuous": "voluptuous",
    "toml": "toml",
    "ftfy": "ftfy",
    "einops": "einops",
    "bitsandbytes": "bitsandbytes",
    "xformers": "xformers",
    "accelerate": "accelerate==1.6.0",
    "transformers": "transformers==4.54.1",
    "diffusers": "diffusers==0.32.1",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface-hub",
}
# modules that are sd-scripts itself, not a pip package
SD_SCRIPTS_MODULES = ("library", "networks")


@dataclass(frozen=True)
class Context:
    """What a fix may refer to: the trainer's Python and the spec's relevant settings."""

    trainer_python: str | None = None
    sd_scripts: str | None = None
    precision: str | None = None
    lr: float | None = None
    no_half_vae: bool | None = None
    family: str | None = None
    gradient_checkpointing: bool | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # oom | nan | missing_model | missing_package | dataset | crash | interrupted
    message: str
    fix: str | None
    exit_code: int
    evidence: str | None = None

    @property
    def status(self) -> str:
        return "interrupted" if self.kind == "interrupted" else "failed"


def pip_name(module: str) -> str:
    top = module.split(".")[0]
    return PIP_NAMES.get(module) or PIP_NAMES.get(top) or top.replace("_", "-")


def _module_of(ev: ErrorEvent) -> str | None:
    for rx in (r"No module named '([\w.]+)'", r"No ([\w-]+) / ", r"lacks the package '([\w.-]+)'"):
        m = re.search(rx, (ev.evidence or "") + "\n" + ev.message)
        if m:
            return m.group(1)
    return None


def fix_for(ev: ErrorEvent, ctx: Context) -> str:
    """The fix text for one error event."""
    if ev.kind == "oom":
        hints = []
        if ctx.gradient_checkpointing is False:
            hints.append("--set training.gradient_checkpointing=true")
        if ctx.batch_size is not None and ctx.batch_size > 1:
            hints.append(f"--set training.batch_size={max(1, ctx.batch_size // 2)}")
        hints.append("a lower network.dim, training.cache_text_encoder_outputs=true or training.fp8_base=true")
        return (
            "run `lorakit vram-check` with the same arguments to see what fits this GPU, then retry with e.g. "
            + ", ".join(hints)
            + " (or `lorakit train --auto-fit`); close other programs using the GPU (ComfyUI, games)"
        )
    if ev.kind == "nan":
        hints = []
        if ctx.precision == "fp16":
            hints.append("--set training.precision=bf16 (fp16 overflows easily; needs an RTX 30xx or newer)")
        fam = families.FAMILIES.get(ctx.family or "")
        if fam is not None and fam.fp16_vae_nan and not ctx.no_half_vae:
            hints.append(f"--set training.no_half_vae=true (the {fam.line} VAE produces NaN in fp16)")
        lr_hint = f"--set optimizer.lr={ctx.lr / 3:.2g}" if ctx.lr else "a lower optimizer.lr"
        hints.append(f"{lr_hint} (a too-high learning rate diverges)")
        return "; ".join(hints)
    if ev.kind == "missing_package":
        module = _module_of(ev) or "the missing package"
        top = module.split(".")[0]
        if top in SD_SCRIPTS_MODULES:
            where = f" ({ctx.sd_scripts})" if ctx.sd_scripts else ""
            return (
                f"'{top}' is sd-scripts' own package: install sd-scripts{where} into its environment with "
                "`pip install -e .` in that folder, or run `lorakit setup`"
            )
        python = ctx.trainer_python or "python"
        return (
            f"install it into the trainer's environment: {shlex.quote(python)} -m pip install {pip_name(module)} "
            "(or re-run `lorakit setup`); `lorakit doctor` lists what that environment has"
        )
    if ev.kind == "missing_model":
        text = (ev.evidence or "") + ev.message
        if "tokenizer" in text.lower() or "huggingface" in text.lower() or "hugging face" in text.lower():
            return (
                "the trainer needs the tokenizers from the Hugging Face hub: connect once, or point "
                "model.tokenizer_cache_dir at a folder that holds them"
            )
        first, *others = families.model_file_keys()
        return f"check model.{first} (and model.{' / '.join(others)}) — an absolute path is safest"
    if ev.kind == "dataset":
        return (
            "check dataset.folder: it must hold the images (flat) or kohya-style `N_name` sub-folders; "
            "`lorakit dataset inspect FOLDER` shows what lorakit sees"
        )
    return "read the end of train.log in the run folder (`lorakit runs tail RUN`) for the trainer's own message"


def with_fix(ev: ErrorEvent, ctx: Context) -> ErrorEvent:
    return ev if ev.fix else replace(ev, fix=fix_for(ev, ctx))


def exit_code_for(kind: str, evidence: str | None = None) -> int:
    if kind == "interrupted":
        return EXIT_INTERRUPTED
    if kind == "missing_package":
        return EXIT_ENVIRONMENT
    if kind == "missing_model":
        text = (evidence or "").lower()
        return EXIT_ENVIRONMENT if ("tokenizer" in text or "hugging" in text) else EXIT_BAD_INPUT
    if kind == "dataset":
        return EXIT_BAD_INPUT
    return EXIT_TRAINING_FAILED


# which kind wins when several showed up (a NaN run that then crashed is a NaN run)
_PRIORITY = ("missing_package", "missing_model", "dataset", "oom", "nan", "crash")


def diagnose(
    *,
    returncode: int | None,
    errors: Sequence[ErrorEvent],
    exceptions: Iterable[str] = (),
    tail: Sequence[str] = (),
    interrupted: bool = False,
    lora_missing: bool = False,
    ctx: Context | None = None,
) -> Diagnosis | None:
    """The one diagnosis of a finished trainer process, or None when it succeeded.

    ``exceptions`` are the exception lines of tracebacks seen (first is the root cause),
    ``tail`` the last lines of output, ``lora_missing`` says the trainer exited 0 without
    writing the final LoRA."""
    ctx = ctx or Context()
    if interrupted:
        return Diagnosis(
            "interrupted",
            "the run was interrupted; checkpoints written so far are kept in the run folder",
            "continue it with `lorakit resume RUN` (needs saving.save_state=true) or start again",
            EXIT_INTERRUPTED,
        )
    by_kind = {e.kind: e for e in reversed(errors)}  # first of each kind wins
    for kind in _PRIORITY:
        ev = by_kind.get(kind)
        if ev is not None:
            ev = with_fix(ev, ctx)
            return Diagnosis(kind, ev.message, ev.fix, exit_code_for(kind, ev.evidence), ev.evidence)
    if returncode == 0 and not lora_missing:
        return None
    exc = [e for e in exceptions if not _is_launcher_echo(e)]
    evidence: str | None
    if exc:
        evidence = exc[0]
        message = f"the trainer crashed: {evidence}"
    elif returncode not in (0, None):
        evidence = _last_meaningful(tail)
        message = f"the trainer exited with status {returncode}" + (f": {evidence}" if evidence else "")
        if returncode is not None and returncode < 0:
            message = f"the trainer was killed by signal {-returncode}" + (
                " (the system may have run out of RAM: check `dmesg` for the OOM killer)" if returncode == -9 else ""
            )
    else:
        evidence = _last_meaningful(tail)
        message = "the trainer exited without writing the final LoRA file"
    ev = ErrorEvent(kind="crash", message=message, evidence=evidence)
    return Diagnosis("crash", message, fix_for(ev, ctx), EXIT_TRAINING_FAILED, evidence)


def _is_launcher_echo(line: str) -> bool:
    """accelerate's own CalledProcessError repeats the child's failure without its cause."""
    return line.startswith(("subprocess.CalledProcessError", "CalledProcessError"))


def _last_meaningful(tail: Sequence[str]) -> str | None:
    for line in reversed(tail):
        s = line.strip()
        if s and not s.startswith(("steps:", "File ", "^", "~")) and not _is_launcher_echo(s):
            return s[:500]
    return None
