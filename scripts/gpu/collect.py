#!/usr/bin/env python3
"""Turn the GPU calls' outputs (rows.jsonl + env.json) into lorakit's data files.

    python scripts/gpu/collect.py RESULT_DIR [RESULT_DIR ...] \\
        --vram src/lorakit/gpu/data/vram_calibration.json \\
        --throughput src/lorakit/gpu/data/throughput.json [--markdown tables.md]

Each RESULT_DIR is one call's $OUT as fetched (``rows.jsonl``; the first one with
``env.json`` gives the versions). ``grid_*`` rows go to the VRAM table, ``bench_*`` rows to the
throughput table (and, being alone on the GPU, to the VRAM table too); other successful or OOM
runs go to ``extra_rows`` of the VRAM table. No machine paths are written.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

CONFIG_KEYS = [
    "family",
    "resolution",
    "batch",
    "gc",
    "rank",
    "alpha",
    "network",
    "network_module",
    "optimizer",
    "precision",
    "no_half_vae",
    "cache_latents",
    "cache_te",
    "unet_only",
    "fp8_base",
    "sdpa",
    "lr",
]


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    c = dict(row["config"])
    c.setdefault("network_module", "networks.lora" if c["family"] == "sdxl" else "networks.lora_sd3")
    return {k: c.get(k) for k in CONFIG_KEYS}


def load(dirs: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    env: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for i, d in enumerate(dirs, 1):
        if not env and (d / "env.json").is_file():
            env = json.loads((d / "env.json").read_text())
        for line in (d / "rows.jsonl").read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                r["call"] = i
                rows.append(r)
    return env, rows


def metadata(env: dict[str, Any]) -> dict[str, Any]:
    pk = env.get("packages", {})
    smi = env.get("nvidia_smi_query", "").strip().splitlines()
    mib, driver = None, None
    if len(smi) >= 2:
        parts = [p.strip() for p in smi[1].split(",")]
        mib = int(parts[1].split()[0])
        driver = parts[3]
    return {
        "gpu": env.get("gpu", {}).get("name"),
        "gpu_total_gib": env.get("gpu", {}).get("total_gib"),
        "gpu_memory_mib": mib,
        "driver": driver,
        "sd_scripts_commit": env.get("sd_scripts_commit"),
        "date": env.get("date"),
        "torch": pk.get("torch", {}).get("version"),
        "cuda": env.get("torch_cuda"),
        "python": env.get("python"),
        "packages": {
            k: pk.get(k, {}).get("version")
            for k in ("transformers", "diffusers", "accelerate", "bitsandbytes", "tokenizers", "huggingface_hub")
        },
        "weights": "synthetic random weights with the exact architectures (python -m lorakit.synth.build)",
    }


def vram_table(env: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out_rows, extra = [], []
    for r in rows:
        alone = r.get("max_concurrent_jobs", 1) == 1
        base = {
            "name": r["name"],
            **config_of(r),
            "peak_gib": r["peak_gib"],
            "peak_setup_gib": r.get("peak_setup_gib"),
            "peak_train_gib": r.get("peak_train_gib"),
            "host_rss_peak_gib": r.get("peak_host_rss_gib"),
            "s_per_step": r["s_per_step"] if alone and r["status"] == "ok" else None,
            "concurrent_jobs": r.get("max_concurrent_jobs"),
            "steps": r.get("total_steps"),
            "source": "grid"
            if r["name"].startswith("grid_")
            else ("bench" if r["name"].startswith("bench_") else "fixture"),
            "call": r["call"],
        }
        if r["name"].startswith(("grid_", "bench_")) and r["status"] == "ok":
            out_rows.append(base)
        elif r["status"] in ("ok", "oom") and r.get("peak_gib"):
            base["status"] = r["status"]
            notes = {
                "sdxl_success": "2 epochs, 4 images, + --sample_prompts (2 prompts, 512x512, 4 euler_a steps) "
                "each epoch, --save_state",
                "sdxl_success_80col": "same as sdxl_success",
                "sdxl_resume": "--resume from sdxl_success's epoch-1 state, 3 epochs",
                "sd3_success": "SD3.5 medium, 2 epochs, 4 images",
                "sdxl_oom": "bs 32 without GC: CUDA OOM at the first step (tried to allocate 640 MiB more)",
                "sdxl_nan": "AdamW lr 1e4: loss nan from step 3",
            }
            base["note"] = notes.get(r["name"], "")
            extra.append(base)
    return {
        **metadata(env),
        "measurement": {
            "peak_gib": "max over the run of NVML per-process usedGpuMemory summed over the process tree "
            "(accelerate launcher + trainer), polled every 0.15 s; includes the CUDA context. "
            "GiB = 2^30 bytes.",
            "peak_setup_gib": "the same before the first training step (model load, latent and text-encoder "
            "caching, network and optimizer set-up)",
            "peak_train_gib": "the same from the first training step on",
            "concurrency": "grid rows ran several at once on the one GPU; memory is per process and was "
            "identical (within 0.03 GiB) to the same configs run alone (bench rows). s_per_step "
            "is given only for rows that ran alone.",
            "dataset": "8 drawn 1024x1024 PNGs, one bucket, repeats 8; max_train_steps 4 (grid) / 14 (bench)",
            "common_flags": "--sdpa --cache_latents --cache_text_encoder_outputs (unless cache_te false) "
            "--network_train_unet_only --no_half_vae (SDXL) --max_data_loader_n_workers=0 "
            "--lr_scheduler=constant --network_alpha=16; accelerate launch --num_processes=1 "
            "--num_cpu_threads_per_process=2 --dynamo_backend=no",
        },
        "rows": out_rows,
        "extra_rows": extra,
    }


def throughput_table(env: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    bench = [r for r in rows if r["name"].startswith("bench_") and r["status"] == "ok"]
    out_rows = []
    for r in bench:
        out_rows.append(
            {
                "name": r["name"],
                **config_of(r),
                "call": r["call"],
                "steps": r["total_steps"],
                "s_per_step": r["s_per_step"],
                "images_per_s": r["images_per_s"],
                "peak_gib": r["peak_gib"],
                "time_to_first_step_s": r["time_to_first_step_s"],
                "startup_s": r["startup_s"],
                "first_step_s": r["first_step_s"],
                "steady_points": r["steady_points"],
            }
        )
    summary = []
    for name in dict.fromkeys(r["name"] for r in out_rows):
        rs = [r for r in out_rows if r["name"] == name]
        sps = [r["s_per_step"] for r in rs]
        summary.append(
            {
                "name": name,
                **{k: rs[0][k] for k in ("family", "resolution", "batch", "gc", "rank", "optimizer", "precision")},
                "runs": len(rs),
                "s_per_step_median": round(statistics.median(sps), 3),
                "s_per_step_min": min(sps),
                "s_per_step_max": max(sps),
                "images_per_s_median": round(rs[0]["batch"] / statistics.median(sps), 2),
                "peak_gib": max(r["peak_gib"] for r in rs),
                "time_to_first_step_s_median": round(statistics.median(r["time_to_first_step_s"] for r in rs), 1),
            }
        )
    return {
        **metadata(env),
        "measurement": {
            "s_per_step": "least-squares slope of the wall time at which tqdm's 'steps: N/M' first showed "
            "step N, over steps 2..M (step 1 is warm-up); each run alone on the GPU",
            "time_to_first_step_s": "from process start (accelerate launch) to step 1 shown: imports, "
            "loading the 6.9 GB checkpoint, caching latents and text-encoder outputs, "
            "building the LoRA, the first step",
            "noise": "the same config measured in two calls on one machine differed by up to 20 % in s/step; "
            "peak memory was identical",
            "dataset": "8 drawn 1024x1024 PNGs, repeats 8, 14 steps",
        },
        "rows": out_rows,
        "summary": summary,
    }


def markdown(vram: dict[str, Any], tp: dict[str, Any]) -> str:
    lines = [
        "| family | batch | GC | rank | precision | other | peak GiB | setup GiB | train GiB "
        "| s/step (alone) | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in vram["rows"]:
        other = ", ".join(x for x, on in (("fp8_base", r["fp8_base"]), ("TE in VRAM", not r["cache_te"])) if on)
        lines.append(
            f"| {r['family']} | {r['batch']} | {'on' if r['gc'] else 'off'} | {r['rank']} | "
            f"{r['precision']} | {other} | {r['peak_gib']} | {r['peak_setup_gib']} | {r['peak_train_gib']} | "
            f"{r['s_per_step'] if r['s_per_step'] is not None else ''} | {r['source']} |"
        )
    lines += [
        "",
        "| config | runs | s/step median (min–max) | images/s | peak GiB | time to first step s |",
        "|---|---|---|---|---|---|",
    ]
    for s in tp["summary"]:
        lines.append(
            f"| {s['name']} | {s['runs']} | {s['s_per_step_median']} ({s['s_per_step_min']}–"
            f"{s['s_per_step_max']}) | {s['images_per_s_median']} | {s['peak_gib']} | "
            f"{s['time_to_first_step_s_median']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--vram", type=Path, required=True)
    ap.add_argument("--throughput", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, default=None)
    a = ap.parse_args(argv)
    env, rows = load(a.dirs)
    vram = vram_table(env, rows)
    tp = throughput_table(env, rows)
    for path, data in ((a.vram, vram), (a.throughput, tp)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    md = markdown(vram, tp)
    if a.markdown:
        a.markdown.write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
