#!/usr/bin/env python3
"""The GPU measurement campaign: data, job sets, scheduler. Called by ``run.sh``.

Subcommands (all write under ``--out``; see scripts/gpu/README.md):

* ``env``   versions, nvidia-smi, which packages import; exits 3 if a required one is missing.
* ``data``  small synthetic training sets (PNG + .txt captions) and a sample-prompts file.
* ``run --sets grid,fixtures,...``  run job sets: several jobs at once on the one GPU while the
  sum of their expected peaks fits the memory budget (``--budget-gib``), or one at a time
  (``--sequential``, for throughput). Each finished job appends a JSON row to
  ``OUT/rows.jsonl`` and its raw log to ``OUT/logs/<name>.log``.

Job sets: ``grid`` (VRAM calibration), ``grid-extra`` (fp8 base, TE in memory, SD3.5 large),
``bench`` (throughput, run with --sequential), ``fixtures`` (parser fixtures: success, resume,
NaN, missing model/module, SD3), ``oom`` (the OOM fixture; needs the GPU to itself).

Paths on the GPU machine are short and fixed (``LK_BASE``, default /tmp/lk: ``m`` models,
``d`` data, ``r`` runs) so that logs can be made path-free with ``sanitize_logs.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure

REPO = Path(__file__).resolve().parents[2]
BASE = Path(os.environ.get("LK_BASE", "/tmp/lk"))
MODELS = BASE / "m"
DATA = BASE / "d"
RUNS = BASE / "r"
SD_SCRIPTS = Path(os.environ.get("LK_SD_SCRIPTS", str(REPO / ".vendor" / "sd-scripts")))
SD_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"

SDXL_CKPT = MODELS / "sdxl" / "sdxl_synth.safetensors"
SD3_DIR = MODELS / "sd3"
SD3_CKPT = {
    "sd3.5-medium": SD3_DIR / "sd3.5_medium_synth.safetensors",
    "sd3.5-large": SD3_DIR / "sd3.5_large_synth.safetensors",
}

GPU_TOTAL_GIB = 139.0

# --------------------------------------------------------------------------- data


def make_data(out: Path) -> dict[str, Any]:
    """8 and 4 drawn 1024x1024 PNGs with .txt captions, plus sample prompts."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1234)
    shapes = ["circle", "square", "triangle", "star"]
    colors = [
        ("red", (220, 40, 40)),
        ("blue", (40, 80, 220)),
        ("green", (40, 170, 70)),
        ("yellow", (230, 200, 40)),
        ("purple", (140, 60, 180)),
        ("orange", (240, 140, 30)),
    ]
    sets = {"img8": 8, "img4": 4}
    for folder, n in sets.items():
        d = out / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            # smooth background gradient + noise, then a few flat shapes (a "drawing")
            yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float32) / 1024.0
            base = rng.uniform(60, 200, size=3)
            arr = np.stack([base[c] + 50 * np.sin(3 * xx + c) * np.cos(2 * yy + i) for c in range(3)], -1)
            arr += rng.normal(0, 12, size=arr.shape)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
            dr = ImageDraw.Draw(img)
            tags = []
            for _ in range(3):
                cname, rgb = colors[int(rng.integers(len(colors)))]
                shape = shapes[int(rng.integers(len(shapes)))]
                cx, cy = rng.integers(150, 874, size=2)
                r = int(rng.integers(60, 200))
                box = [int(cx - r), int(cy - r), int(cx + r), int(cy + r)]
                if shape == "circle":
                    dr.ellipse(box, fill=rgb, outline=(0, 0, 0), width=6)
                elif shape == "square":
                    dr.rectangle(box, fill=rgb, outline=(0, 0, 0), width=6)
                else:
                    pts = [(int(cx), int(cy - r)), (int(cx - r), int(cy + r)), (int(cx + r), int(cy + r))]
                    dr.polygon(pts, fill=rgb, outline=(0, 0, 0))
                tags.append(f"{cname} {shape}")
            img.save(d / f"img_{i:02d}.png")
            caption = "zqxstyle, flat drawing, " + ", ".join(dict.fromkeys(tags)) + ", simple background"
            (d / f"img_{i:02d}.txt").write_text(caption + "\n")
    (out / "prompts.txt").write_text(
        "zqxstyle, flat drawing, red circle, simple background --w 512 --h 512 --s 4 --d 1 --l 7\n"
        "zqxstyle, blue square --n blurry --w 512 --h 512 --s 4 --d 2\n"
    )
    return {"sets": sets, "dir": str(out)}


def dataset_toml(path: Path, image_dir: Path, batch: int, repeats: int, resolution: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[general]\n"
        'caption_extension = ".txt"\n'
        "shuffle_caption = false\n"
        "keep_tokens = 0\n"
        "\n[[datasets]]\n"
        f"resolution = {resolution}\n"
        f"batch_size = {batch}\n"
        "enable_bucket = true\n"
        "min_bucket_reso = 64\n"
        "max_bucket_reso = 2048\n"
        "bucket_reso_steps = 64\n"
        "\n  [[datasets.subsets]]\n"
        f'  image_dir = "{image_dir}"\n'
        f"  num_repeats = {repeats}\n"
    )


# --------------------------------------------------------------------------- job configs

DEFAULTS: dict[str, Any] = {
    "family": "sdxl",
    "resolution": 1024,
    "batch": 1,
    "gc": False,
    "rank": 16,
    "alpha": 16,
    "network": "lora",
    "optimizer": "AdamW8bit",
    "lr": 1e-4,
    "precision": "bf16",
    "no_half_vae": True,
    "cache_latents": True,
    "cache_te": True,
    "unet_only": True,
    "fp8_base": False,
    "sdpa": True,
    "steps": 4,
    "workers": 0,
    "images": "img8",
    "repeats": 8,
}


def cfg(**kw: Any) -> dict[str, Any]:
    c = dict(DEFAULTS)
    c.update(kw)
    return c


def est_gib(c: dict[str, Any]) -> float:
    """Scheduling guess of a job's peak (GiB); generous on purpose."""
    bs = c["batch"]
    if c["family"] == "sdxl":
        train = (8.5 + 1.5 * bs) if c["gc"] else (7.5 + 10.6 * bs)
        train += 1.0 if c["rank"] >= 64 else 0.0
        if not c["cache_te"]:
            train += 3.0
        return max(12.0, train * 1.12)
    if c["family"] == "sd3.5-medium":
        train = (10.0 + 1.0 * bs) if c["gc"] else (12.0 + 7.0 * bs)
        return max(24.0, train * 1.15)
    # sd3.5-large
    train = (17.0 + 2.5 * bs) if c["gc"] else (34.0 + 14.0 * bs)
    return max(30.0, train * 1.15)


def sd_argv(
    c: dict[str, Any], run: Path, name: str, extra: list[str] | None = None, write_toml: bool = True
) -> list[str]:
    """accelerate launch + sd-scripts argv for one config (the way lorakit launches)."""
    prec = c["precision"]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes=1",
        "--num_machines=1",
        f"--mixed_precision={prec}",
        "--dynamo_backend=no",
        "--num_cpu_threads_per_process=2",
    ]
    toml = run / "dataset.toml"
    if write_toml:
        dataset_toml(toml, DATA / c["images"], c["batch"], c["repeats"], c["resolution"])
    common = [
        f"--tokenizer_cache_dir={MODELS / ('sdxl' if c['family'] == 'sdxl' else 'sd3') / 'tokenizers'}",
        f"--dataset_config={toml}",
        f"--output_dir={run}",
        f"--output_name={name}",
        f"--network_dim={c['rank']}",
        f"--network_alpha={c['alpha']}",
        f"--optimizer_type={c['optimizer']}",
        f"--learning_rate={c['lr']}",
        "--lr_scheduler=constant",
        f"--mixed_precision={prec}",
        f"--save_precision={prec}",
        "--save_model_as=safetensors",
        f"--max_data_loader_n_workers={c['workers']}",
        "--seed=42",
    ]
    if "epochs" in c:
        common.append(f"--max_train_epochs={c['epochs']}")
    else:
        common.append(f"--max_train_steps={c['steps']}")
    if c["sdpa"]:
        common.append("--sdpa")
    if c["cache_latents"]:
        common.append("--cache_latents")
    if c["cache_te"]:
        common.append("--cache_text_encoder_outputs")
    if c["unet_only"]:
        common.append("--network_train_unet_only")
    if c["gc"]:
        common.append("--gradient_checkpointing")
    if c["fp8_base"]:
        common.append("--fp8_base")
    if c["family"] == "sdxl":
        script = SD_SCRIPTS / "sdxl_train_network.py"
        model = [
            f"--pretrained_model_name_or_path={c.get('ckpt', SDXL_CKPT)}",
            f"--network_module={c.get('network_module', 'networks.lora')}",
        ]
        if c["no_half_vae"]:
            model.append("--no_half_vae")
    else:
        script = SD_SCRIPTS / "sd3_train_network.py"
        model = [
            f"--pretrained_model_name_or_path={SD3_CKPT[c['family']]}",
            f"--clip_l={SD3_DIR / 'clip_l.safetensors'}",
            f"--clip_g={SD3_DIR / 'clip_g.safetensors'}",
            f"--t5xxl={SD3_DIR / 't5xxl_fp16.safetensors'}",
            f"--network_module={c.get('network_module', 'networks.lora_sd3')}",
        ]
    return [*launch, str(script), *model, *common, *(extra or [])]


def _job(
    name: str,
    c: dict[str, Any],
    *,
    extra: list[str] | None = None,
    expect: str = "ok",
    exclusive: bool = False,
    columns: str | None = "240",
    after: str | None = None,
    fallback: dict[str, Any] | None = None,
    kind: str = "grid",
    timeout: float = 300.0,
    est: float | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "config": c,
        "extra": extra or [],
        "expect": expect,
        "exclusive": exclusive,
        "columns": columns,
        "after": after,
        "fallback": fallback,
        "kind": kind,
        "timeout": timeout,
        "est_gib": est if est is not None else est_gib(c),
    }


def jobs_grid() -> list[dict[str, Any]]:
    out = []
    for gc in (False, True):
        for bs in (8, 4, 2, 1):
            for rank in (128, 16):
                out.append(_job(f"grid_sdxl_b{bs}_{'gc' if gc else 'nogc'}_r{rank}", cfg(batch=bs, gc=gc, rank=rank)))
    for bs in (4, 1):
        for gc in (False, True):
            out.append(
                _job(
                    f"grid_sd3m_b{bs}_{'gc' if gc else 'nogc'}_r16",
                    cfg(family="sd3.5-medium", batch=bs, gc=gc, rank=16),
                )
            )
    return out


def jobs_grid_extra() -> list[dict[str, Any]]:
    return [
        _job("grid_sdxl_b1_gc_r16_fp8", cfg(batch=1, gc=True, rank=16, fp8_base=True)),
        _job("grid_sdxl_b1_gc_r16_tegpu", cfg(batch=1, gc=True, rank=16, cache_te=False)),
        _job("grid_sdxl_b1_nogc_r16_fp8", cfg(batch=1, gc=False, rank=16, fp8_base=True)),
        _job("grid_sd3l_b1_gc_r16", cfg(family="sd3.5-large", batch=1, gc=True, rank=16)),
        _job("grid_sd3l_b1_nogc_r16", cfg(family="sd3.5-large", batch=1, gc=False, rank=16)),
    ]


def jobs_bench(steps: int | None = None) -> list[dict[str, Any]]:
    steps = steps or int(os.environ.get("LK_BENCH_STEPS", "14"))
    comic = cfg(batch=1, gc=False, rank=128, precision="fp16", no_half_vae=True, steps=steps)
    out = [_job("bench_comic_fp16_b1_nogc", comic, kind="bench")]
    for bs in (2, 4, 8, 16):
        out.append(_job(f"bench_bf16_b{bs}_gc", cfg(batch=bs, gc=True, rank=128, steps=steps), kind="bench"))
    for bs in (2, 4):
        out.append(_job(f"bench_bf16_b{bs}_nogc", cfg(batch=bs, gc=False, rank=128, steps=steps), kind="bench"))
    return out


def jobs_fixtures() -> list[dict[str, Any]]:
    # SDXL two short epochs with per-epoch checkpoint, state and samples
    fx = cfg(batch=1, gc=True, rank=16, images="img4", repeats=1, epochs=2)
    sample = [
        f"--sample_prompts={DATA / 'prompts.txt'}",
        "--sample_every_n_epochs=1",
        "--sample_sampler=euler_a",
        "--save_every_n_epochs=1",
        "--save_state",
    ]
    nan_a = cfg(batch=1, gc=True, rank=16, images="img4", repeats=2, steps=8, optimizer="AdamW", lr=1e4)
    nan_b = cfg(batch=1, gc=True, rank=16, images="img4", repeats=2, steps=8, optimizer="SGD", lr=1e30)
    resume_cfg = dict(fx, epochs=3)
    return [
        _job("sdxl_success", fx, extra=sample, kind="fixture"),
        _job("sdxl_success_80col", fx, extra=sample, kind="fixture", columns=None),
        _job(
            "sdxl_nan",
            nan_a,
            kind="fixture",
            expect="nan",
            fallback=_job("sdxl_nan_sgd", nan_b, kind="fixture", expect="nan"),
        ),
        _job(
            "missing_model",
            cfg(batch=1, gc=True, images="img4", repeats=1, ckpt=MODELS / "sdxl" / "does_not_exist.safetensors"),
            kind="fixture",
            expect="error",
            est=4.0,
        ),
        _job(
            "missing_module",
            cfg(batch=1, gc=True, images="img4", repeats=1, network_module="lycoris.kohya"),
            extra=["--network_args", "algo=locon", "conv_dim=16", "conv_alpha=1"],
            kind="fixture",
            expect="error",
        ),
        _job(
            "sd3_success",
            cfg(family="sd3.5-medium", batch=1, gc=True, rank=16, images="img4", repeats=1, epochs=2),
            extra=["--save_every_n_epochs=1"],
            kind="fixture",
        ),
        _job(
            "sdxl_resume",
            resume_cfg,
            kind="fixture",
            after="sdxl_success",
            extra=["--save_every_n_epochs=1", f"--resume={RUNS / 'sdxl_success' / 'sdxl_success-000001-state'}"],
        ),
    ]


def jobs_oom() -> list[dict[str, Any]]:
    c = cfg(batch=32, gc=False, rank=16, repeats=4, steps=2)
    return [_job("sdxl_oom", c, kind="fixture", expect="oom", exclusive=True, est=GPU_TOTAL_GIB)]


JOB_SETS = {
    "grid": jobs_grid,
    "grid-extra": jobs_grid_extra,
    "bench": jobs_bench,
    "fixtures": jobs_fixtures,
    "oom": jobs_oom,
}


def model_ready(c: dict[str, Any]) -> bool:
    if "ckpt" in c:  # deliberately missing model
        return True
    if c["family"] == "sdxl":
        return (MODELS / "sdxl" / "synth.json").is_file() and SDXL_CKPT.is_file()
    meta = SD3_DIR / "synth.json"
    if not meta.is_file():
        return False
    try:
        return c["family"] in json.loads(meta.read_text())
    except ValueError:
        return False


# --------------------------------------------------------------------------- scheduler


def child_env(columns: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("COLUMNS", None)
    if columns:
        env["COLUMNS"] = columns
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def run_sets(args: argparse.Namespace) -> int:
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    pending: list[dict[str, Any]] = []
    for s in args.sets.split(","):
        if s:
            pending.extend(JOB_SETS[s]())
    if args.only:
        keep = set(args.only.split(","))
        pending = [j for j in pending if j["name"] in keep]
    env_path = out / "env.json"
    if env_path.is_file() and json.loads(env_path.read_text()).get("bitsandbytes_adamw8bit") != "ok":
        print("[campaign] bitsandbytes AdamW8bit unusable here: AdamW8bit jobs use AdamW instead", flush=True)
        for j in pending:
            if j["config"]["optimizer"] == "AdamW8bit":
                j["config"]["optimizer"] = "AdamW"
    t_start = time.time()
    poller = measure.Poller(args.interval)
    poller.start()
    running: list[tuple[dict[str, Any], measure.Job]] = []
    done: dict[str, str] = {}
    skipped: list[str] = []
    last_start = 0.0
    builders_alive = (
        (lambda: any(Path(p).exists() for p in args.wait_for.split(","))) if args.wait_for else (lambda: False)
    )

    def finish(spec: dict[str, Any], job: measure.Job) -> None:
        job.wait()
        row = job.row()
        row["kind"] = spec["kind"]
        row["expect"] = spec["expect"]
        row["est_gib"] = round(spec["est_gib"], 1)
        row["columns"] = spec["columns"]
        got = {"oom": "oom", "ok_nan": "nan"}.get(row["status"], row["status"])
        if spec["expect"] == "nan":
            got = "nan" if row["nan_loss"] else got
        row["as_expected"] = got == spec["expect"] or (spec["expect"] == "error" and row["status"] != "ok")
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        done[spec["name"]] = row["status"]
        print(
            f"[campaign] {time.time() - t_start:6.0f}s done {spec['name']}: {row['status']} "
            f"peak={row['peak_gib']} GiB s/step={row['s_per_step']} t1={row['time_to_first_step_s']}",
            flush=True,
        )
        if not row["as_expected"] and spec.get("fallback"):
            pending.insert(0, spec["fallback"])
        # free disk: grid and bench outputs are not needed after the row is written
        if spec["kind"] in ("grid", "bench"):
            shutil.rmtree(RUNS / spec["name"], ignore_errors=True)

    try:
        while pending or running:
            now = time.time() - t_start
            for spec, job in list(running):
                if job.poll() is not None:
                    running.remove((spec, job))
                    finish(spec, job)
                elif now > args.hard_deadline or (time.time() - job.t0) > spec["timeout"]:
                    job.kill("timeout" if now <= args.hard_deadline else "deadline")
            if now > args.deadline and pending:
                skipped.extend(j["name"] for j in pending)
                pending.clear()
            started = False
            if pending and time.time() - last_start >= args.stagger:
                used = sum(s["est_gib"] for s, _ in running)
                rss = sum(j.cur_rss for _, j in running)
                exclusive_running = any(s["exclusive"] for s, _ in running)
                for spec in list(pending):
                    waiting_for = spec["after"] and spec["after"] not in done
                    if waiting_for and (
                        spec["after"] in {j["name"] for j in pending}
                        or any(s["name"] == spec["after"] for s, _ in running)
                    ):
                        continue
                    if not model_ready(spec["config"]):
                        if builders_alive():
                            continue
                        pending.remove(spec)
                        skipped.append(spec["name"] + " (no model)")
                        continue
                    if exclusive_running:
                        break
                    if spec["exclusive"] and running:
                        continue
                    if args.sequential and running:
                        break
                    if running and (
                        used + spec["est_gib"] > args.budget_gib
                        or len(running) >= args.max_jobs
                        or rss + args.rss_per_job_gib * measure.GIB > args.rss_cap_gib * measure.GIB
                    ):
                        continue
                    pending.remove(spec)
                    run_dir = RUNS / spec["name"]
                    shutil.rmtree(run_dir, ignore_errors=True)
                    run_dir.mkdir(parents=True)
                    argv = sd_argv(spec["config"], run_dir, spec["name"], spec["extra"])
                    if os.environ.get("LK_FAKE_CMD"):  # dry-test of the scheduler without a GPU
                        argv = shlex.split(os.environ["LK_FAKE_CMD"])
                    row_cfg = {k: v for k, v in spec["config"].items() if k != "ckpt"}
                    if "ckpt" in spec["config"]:
                        row_cfg["model_missing"] = True
                    job = measure.Job(
                        spec["name"],
                        argv,
                        logs / f"{spec['name']}.log",
                        cwd=str(SD_SCRIPTS),
                        env=child_env(spec["columns"]),
                        meta={"config": row_cfg},
                    )
                    poller.add(job)
                    job.start()
                    running.append((spec, job))
                    last_start = time.time()
                    print(
                        f"[campaign] {time.time() - t_start:6.0f}s start {spec['name']} est={spec['est_gib']:.0f} "
                        f"GiB (running {len(running)}, est sum {used + spec['est_gib']:.0f})",
                        flush=True,
                    )
                    started = True
                    break
            if not started:
                time.sleep(0.5)
    finally:
        for spec, job in running:  # only on an exception: record what was measured so far
            job.kill("deadline")
            try:
                finish(spec, job)
            except Exception as e:
                print(f"[campaign] could not record {spec['name']}: {e}", flush=True)
        poller.stop()
        poller.join(2)
    summary = {
        "sets": args.sets,
        "done": done,
        "skipped": skipped,
        "seconds": round(time.time() - t_start, 1),
        "device_peak_gib": round(poller.device_peak / measure.GIB, 2),
        "nvml": poller.nvml.ok,
        "nvml_error": poller.nvml.error,
    }
    (out / f"run_{args.sets.replace(',', '+')}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    return 0


# --------------------------------------------------------------------------- env


REQUIRED = [
    "torch",
    "transformers",
    "diffusers",
    "accelerate",
    "huggingface_hub",
    "tokenizers",
    "safetensors",
    "toml",
    "voluptuous",
    "imagesize",
    "einops",
    "ftfy",
    "cv2",
    "PIL",
    "numpy",
    "pynvml",
]
OPTIONAL = ["bitsandbytes", "lycoris", "prodigyopt", "schedulefree", "lion_pytorch", "xformers", "open_clip"]


def env_info(args: argparse.Namespace) -> int:
    import importlib
    import platform

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "sd_scripts_commit": SD_COMMIT,
        "repo_root": str(REPO),
        "sys_prefix": sys.prefix,
        "base": str(BASE),
        "date": time.strftime("%Y-%m-%d"),
        "packages": {},
        "missing": [],
    }
    for name in REQUIRED + OPTIONAL:
        try:
            mod = importlib.import_module(name)
            info["packages"][name] = {
                "version": getattr(mod, "__version__", "?"),
                "file": str(getattr(mod, "__file__", "")),
            }
        except Exception as e:
            info["packages"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            if name in REQUIRED or (name == "bitsandbytes" and args.need_bnb):
                info["missing"].append(name)
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": p.name,
                "total_gib": round(p.total_memory / measure.GIB, 2),
                "sm_count": p.multi_processor_count,
                "capability": f"{p.major}.{p.minor}",
            }
            info["cudnn"] = torch.backends.cudnn.version()
    except Exception as e:
        info["torch_error"] = str(e)
    if "bitsandbytes" in info["packages"] and "error" not in info["packages"]["bitsandbytes"]:
        try:
            import bitsandbytes as bnb
            import torch

            p = torch.nn.Parameter(torch.randn(64, 64, device="cuda"))
            opt = bnb.optim.AdamW8bit([p], lr=1e-3)
            p.sum().backward()
            opt.step()
            info["bitsandbytes_adamw8bit"] = "ok"
        except Exception as e:
            info["bitsandbytes_adamw8bit"] = f"{type(e).__name__}: {e}"[:300]
    for cmd, key in (
        (["nvidia-smi"], "nvidia_smi"),
        (
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm,power.limit",
                "--format=csv",
            ],
            "nvidia_smi_query",
        ),
    ):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except Exception as e:
            info[key] = f"{type(e).__name__}: {e}"
    try:
        with open("/proc/meminfo") as f:
            info["meminfo_head"] = "".join(f.readlines()[:3])
        info["nproc"] = os.cpu_count()
    except OSError:
        pass
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(info, indent=2))
    print(
        json.dumps({k: info.get(k) for k in ("python", "torch_cuda", "gpu", "missing", "bitsandbytes_adamw8bit")}),
        flush=True,
    )
    if info["missing"]:
        print(
            "[campaign] MISSING PACKAGES: "
            + ", ".join(info["missing"])
            + " -- the wheels were not installed on this machine (fresh machine? send .whl / .gpuassets "
            "with carry, see scripts/gpu/README.md)",
            flush=True,
        )
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", required=True)
    e.add_argument("--need-bnb", action="store_true")
    d = sub.add_parser("data")
    d.add_argument("--dir", default=str(DATA))
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--sets", required=True, help="comma list of: " + ", ".join(JOB_SETS))
    r.add_argument("--only", default="", help="comma list of job names to keep")
    r.add_argument("--sequential", action="store_true")
    r.add_argument("--budget-gib", type=float, default=128.0)
    r.add_argument("--max-jobs", type=int, default=6)
    r.add_argument("--stagger", type=float, default=6.0, help="seconds between starts")
    r.add_argument("--rss-cap-gib", type=float, default=100.0)
    r.add_argument("--rss-per-job-gib", type=float, default=22.0)
    r.add_argument("--deadline", type=float, default=400.0, help="no new job after this many seconds")
    r.add_argument("--hard-deadline", type=float, default=520.0, help="kill what still runs")
    r.add_argument("--interval", type=float, default=0.15)
    r.add_argument("--wait-for", default="", help="comma list of pid files of model builders still running")
    ls = sub.add_parser("list")
    ls.add_argument("--sets", default=",".join(JOB_SETS))
    a = ap.parse_args(argv)
    if a.cmd == "env":
        return env_info(a)
    if a.cmd == "data":
        print(json.dumps(make_data(Path(a.dir))))
        return 0
    if a.cmd == "list":
        for s in a.sets.split(","):
            for j in JOB_SETS[s]():
                print(
                    f"{s:11s} {j['name']:32s} est={j['est_gib']:6.1f}  "
                    + " ".join(
                        a
                        for a in sd_argv(j["config"], RUNS / j["name"], j["name"], j["extra"], write_toml=False)[7:]
                        if not a.startswith(("--tokenizer", "--dataset", "--output", "--pretrained", "--clip", "--t5"))
                    )
                )
        return 0
    return run_sets(a)


if __name__ == "__main__":
    raise SystemExit(main())
