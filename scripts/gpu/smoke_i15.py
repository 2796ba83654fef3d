"""Issue 15 smoke: two of the kohya_ss GUI's own SDXL presets, imported with `lorakit import`, train
4 steps on the synthetic SDXL model through the real sd-scripts. It checks what CPU tests cannot: that
sd-scripts accepts the keys added for the GUI presets (--lr_scheduler_type/--lr_scheduler_args,
--max_token_length 225, bucket_no_upscale in the dataset TOML, --lr_warmup_steps as a ratio (with
constant_with_warmup: sd-scripts takes no warmup with a custom scheduler class, constant or adafactor),
--adaptive_noise_scale, --min/--max_timestep, multires noise, --caption_dropout_rate) and trains.

Overrides: attention sdpa (no xformers wheel on the GPU machine), batch 1, AdamW8bit instead of the
presets' Prodigy (one package less), 4 steps. Expected on an H200: ~2 × 90 s (startup dominates).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import smoke as S  # type: ignore[import-not-found]

FIXTURES = S.TREE / "tests" / "fixtures" / "kohya_gui"
RUNS = S.WORK / "runs-i15"


def _import_and_train(tag: str, preset: str, sets: list[str], expect: list[str]) -> None:
    out = S.WORK / f"i15-{tag}.yaml"
    imp = S.lk(f"i15-import-{tag}", "import", str(FIXTURES / preset), "-o", str(out), "--lenient", "--force")
    if imp.returncode != 0 or not out.exists():
        S.row(f"i15 import {tag}", False, rc=imp.returncode, traceback=not S.no_traceback(imp))
        return
    runs = RUNS / tag
    common = ["--set", "training.max_steps=4", "--set", "training.attention=sdpa", "--set", "training.batch_size=1"]
    tr = S.lk(
        f"i15-train-{tag}",
        "train", "--config", str(out), "--data", str(S.DATA), *S.sdxl_sets(), *common, *sets,
        "--set", f"output.folder={runs}", "--quiet",
        timeout=420,
    )  # fmt: skip
    commands = sorted(runs.glob("*/command.txt"))
    command = commands[-1].read_text(encoding="utf-8") if commands else ""
    toml = (commands[-1].parent / "dataset.toml").read_text(encoding="utf-8") if commands else ""
    missing = [flag for flag in expect if flag not in command + toml]
    loras = sorted(runs.glob("*/*.safetensors"))
    S.row(
        f"i15 GUI preset {tag}: import + train 4 steps",
        tr.returncode == 0 and S.no_traceback(tr) and not missing and bool(loras),
        rc=tr.returncode,
        missing_flags=missing,
        lora=str(loras[-1]) if loras else None,
    )


def step_warmup_refused() -> None:
    """sd-scripts refuses a warmup with a custom scheduler class at start; lorakit must refuse it before."""
    out = S.WORK / "i15-warmup.yaml"
    S.lk("i15-import-warmup", "import", str(FIXTURES / "SDXL - LoRA kudou-reira prodigy v4.0.json"), "-o", str(out),
         "--lenient", "--force")  # fmt: skip
    tr = S.lk(
        "i15-train-warmup",
        "train", "--config", str(out), "--data", str(S.DATA), *S.sdxl_sets(),
        "--set", "optimizer.warmup_ratio=0.25", "--set", f"output.folder={RUNS / 'warmup'}", "--quiet",
        timeout=60,
    )  # fmt: skip
    said = tr.stdout + tr.stderr
    S.row(
        "i15 warmup with a custom scheduler class: refused before launch (exit 2, names optimizer.warmup_ratio)",
        tr.returncode == 2 and "optimizer.warmup_ratio" in said and S.no_traceback(tr),
        rc=tr.returncode,
    )


def step_prodigy_v4() -> None:
    _import_and_train(
        "kudou-reira-prodigy-v4",
        "SDXL - LoRA kudou-reira prodigy v4.0.json",
        [
            "--set",
            "optimizer.name=adamw8bit",
            "--set",
            "optimizer.lr=1e-4",
            "--set",
            "~optimizer.args",
        ],
        [
            "--lr_scheduler_type=CosineAnnealingLR",
            "T_max=30",
            "--max_token_length=225",
            "bucket_no_upscale = true",
            "--noise_offset=0.0357",
        ],
    )


def step_ai_now_adamw() -> None:
    _import_and_train(
        "ai-now-adamw",
        "SDXL - LoRA AI_Now ADamW v1.0.json",
        [
            "--set",
            "training.multires_noise_iterations=6",
            "--set",
            "training.multires_noise_discount=0.3",
            "--set",
            "training.caption_dropout_rate=0.05",
            "--set",
            "optimizer.scheduler=constant_with_warmup",
            "--set",
            "optimizer.warmup_ratio=0.25",
        ],
        [
            "--adaptive_noise_scale=0.00375",
            "--min_timestep=100",
            "--max_timestep=900",
            "--multires_noise_iterations=6",
            "--caption_dropout_rate=0.05",
            "--lr_warmup_steps=0.25",
        ],
    )


STEPS: list[tuple[str, Callable[[], None]]] = [
    ("i15 warmup refused before launch", step_warmup_refused),
    ("i15 GUI preset kudou-reira prodigy v4.0", step_prodigy_v4),
]
if os.environ.get("LK_SMOKE_I15_BOTH"):  # the second preset: ~100 s more of device time
    STEPS.append(("i15 GUI preset AI_Now ADamW v1.0", step_ai_now_adamw))
