"""End-to-end checks of lorakit itself on the GPU machine: every training goes through
`python -m lorakit train` / `lorakit bench` exactly as a user runs it, with the synthetic
models built by `run.sh synth-*`. Run by `run.sh OUT e2e-checks` and `run.sh OUT e2e-speed`.

  python scripts/gpu/e2e.py OUT checks   # 1 SDXL comic-style, 2 SD3.5 medium, 4 style-locon (LoCon),
                                         # then 3 SD3.5 large peaks (GC on / off / fp8 base)
  python scripts/gpu/e2e.py OUT speed    # 5 AdamW8bit vs AdamW (lorakit bench), and the
                                         # orchestration overhead: lorakit train vs the same argv direct

Each job's peak GPU memory is NVML per-process memory summed over its process tree
(measure.py), so jobs packed on the one GPU are measured as if alone. Results: OUT/e2e.jsonl,
one JSON row per job, plus the run folders' events.jsonl/report files under OUT/logs/.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import measure  # noqa: E402

BASE = Path(os.environ.get("LK_BASE", "/tmp/lk"))
SDXL = BASE / "m" / "sdxl"
SD3 = BASE / "m" / "sd3"
E2E = BASE / "e2e"
SD_SCRIPTS = Path(os.environ.get("LK_SD_SCRIPTS", REPO / ".vendor" / "sd-scripts"))
PY = sys.executable


def lorakit_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LORAKIT_SD_SCRIPTS=str(SD_SCRIPTS),
        LORAKIT_PYTHON=os.environ.get("LK_E2E_TRAINER_PYTHON", PY),  # a stand-in for dry tests
        LORAKIT_HOME=str(E2E / "home"),
        PYTHONUNBUFFERED="1",
        COLUMNS="160",
    )
    return env


def sdxl_sets() -> list[str]:
    return [f"model.checkpoint={SDXL / 'sdxl_synth.safetensors'}", f"model.tokenizer_cache_dir={SDXL / 'tokenizers'}"]


def sd3_sets(size: str) -> list[str]:
    return [
        f"model.checkpoint={SD3 / f'sd3.5_{size}_synth.safetensors'}",
        f"model.clip_l={SD3 / 'clip_l.safetensors'}",
        f"model.clip_g={SD3 / 'clip_g.safetensors'}",
        f"model.t5xxl={SD3 / 't5xxl_fp16.safetensors'}",
        f"model.tokenizer_cache_dir={SD3 / 'tokenizers'}",
    ]


def train_argv(preset: str, data: Path, sets: list[str], runs: Path, *extra: str) -> list[str]:
    argv = [PY, "-m", "lorakit", "train", "--preset", preset, "--data", str(data), "--quiet"]
    for s in [*sets, f"output.folder={runs}", *extra]:
        argv += ["--set", s]
    return argv


def only_run(runs: Path) -> Path | None:
    found = sorted(p for p in runs.glob("*") if p.is_dir())
    return found[-1] if found else None


def verify_lora(family: str, module: str, ckpt: Path, lora: Path, log: Path) -> dict[str, Any]:
    """Load the LoRA with sd-scripts' own network loader (networks.lora / lora_sd3 / lora_flux) or
    LyCORIS's, onto the base model's modules; every key of the file must load."""
    code = r"""
import json, sys
from safetensors.torch import load_file
family, module, ckpt, lora = sys.argv[1:5]
sd = load_file(lora)
if family == "sdxl":
    from library import sdxl_model_util
    te1, te2, vae, unet, _, _ = sdxl_model_util.load_models_from_sdxl_checkpoint(
        sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0, ckpt, "cpu")
    if module == "lycoris.kohya":
        from lycoris import kohya as L
    else:
        from networks import lora as L
    net, w = L.create_network_from_weights(1.0, lora, vae, [te1, te2], unet, weights_sd=sd, for_inference=True)
elif family.startswith("flux"):
    import torch
    from library import flux_utils
    from networks import lora_flux as L
    _, flux = flux_utils.load_flow_model(ckpt, torch.bfloat16, "cpu")
    net, w = L.create_network_from_weights(1.0, lora, None, [], flux, weights_sd=sd, for_inference=True)
else:
    from library import sd3_utils
    from networks import lora_sd3 as L
    mmdit = sd3_utils.load_mmdit(load_file(ckpt), None, "cpu")
    net, w = L.create_network_from_weights(1.0, lora, None, [], mmdit, weights_sd=sd, for_inference=True)
# the loaders build one module per name in the file that matches a layer of the base model
created = {m.lora_name for m in list(net.unet_loras) + list(net.text_encoder_loras)}
in_file = {k.split(".")[0] for k in sd}
print(json.dumps({"file_tensors": len(sd), "file_modules": len(in_file), "created_modules": len(created),
                  "not_matched": len(in_file - created), "ok": bool(in_file) and in_file <= created,
                  "example_key": sorted(sd)[0]}))
"""
    env = dict(os.environ, PYTHONPATH=f"{SD_SCRIPTS}:{os.environ.get('PYTHONPATH', '')}")
    t0 = time.time()
    proc = subprocess.run(
        [PY, "-c", code, family, module, str(ckpt), str(lora)],
        capture_output=True, text=True, cwd=SD_SCRIPTS, env=env, timeout=240,
    )  # fmt: skip
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"ok": False, "error": (proc.stderr or proc.stdout)[-800:]}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def events_summary(run: Path) -> dict[str, Any]:
    ev_path = run / "events.jsonl"
    if not ev_path.is_file():
        return {"events": 0}
    rows = [json.loads(line) for line in ev_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    types: dict[str, int] = {}
    for r in rows:
        types[r["type"]] = types.get(r["type"], 0) + 1
    fin = next((r for r in reversed(rows) if r["type"] == "finished"), {})
    last = next((r for r in reversed(rows) if r["type"] == "progress"), {})
    return {"event_types": types, "finished": fin, "last_progress": last}


def run_jobs(
    jobs: list[dict[str, Any]], out: Path, *, max_parallel: int, poller: measure.Poller
) -> list[dict[str, Any]]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending, running, rows = list(jobs), [], []
    while pending or running:
        for spec, job in list(running):
            if job.poll() is not None:
                running.remove((spec, job))
                job.wait()
                row = job.row()
                row["kind"] = spec["kind"]
                rows.append(finish(spec, row, out))
                print(
                    f"[e2e] done {spec['name']}: rc={row['rc']} peak={row['peak_gib']} GiB wall={row['wall_s']}",
                    flush=True,
                )
            elif time.time() - job.t0 > spec.get("timeout", 420):
                job.kill("timeout")
        if pending and len(running) < max_parallel:
            spec = pending.pop(0)
            runs = Path(spec["runs"])
            shutil.rmtree(runs, ignore_errors=True)
            runs.mkdir(parents=True)
            job = measure.Job(spec["name"], spec["argv"], logs / f"{spec['name']}.log", cwd=str(spec.get("cwd", E2E)), env=lorakit_env(),
                              meta={"config": {"batch": spec.get("batch", 1)}})  # fmt: skip
            poller.add(job)
            job.start()
            running.append((spec, job))
            print(f"[e2e] start {spec['name']}: {shlex.join(spec['argv'][2:])[:300]}", flush=True)
            time.sleep(3)
        time.sleep(0.5)
    return rows


def finish(spec: dict[str, Any], row: dict[str, Any], out: Path) -> dict[str, Any]:
    run = only_run(Path(spec["runs"]))
    row["run_dir"] = str(run) if run else None
    if run is not None:
        row.update(events_summary(run))
        keep = out / "logs" / spec["name"]
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("events.jsonl", "state.json", "command.txt", "dataset.toml", "bench.json", "report.html"):
            if (run / name).is_file():
                shutil.copy2(run / name, keep / name)
        loras = sorted(p for p in run.glob("*.safetensors") if "-0000" not in p.name)
        row["lora"] = loras[0].name if loras else None
        row["lora_bytes"] = loras[0].stat().st_size if loras else None
        if spec.get("verify") and loras:
            fam, module, ckpt = spec["verify"]
            row["loader_check"] = verify_lora(fam, module, Path(ckpt), loras[0], keep / "loader_check.log")
        if spec.get("report"):
            rep = subprocess.run([PY, "-m", "lorakit", "report", str(run)], capture_output=True, text=True,
                                 env=lorakit_env(), cwd=E2E, timeout=120)  # fmt: skip
            row["report_rc"] = rep.returncode
            row["report_files"] = sorted(p.name for p in run.glob("report.*")) + sorted(
                p.name for p in run.glob("samples*.png")
            )
            for p in run.glob("report.png"):
                shutil.copy2(p, keep / p.name)
    with open(out / "e2e.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row


def prepared_dataset(out: Path) -> Path:
    dest = E2E / "comic-prepared"
    if not (dest / "dataset.toml").is_file():
        argv = [PY, "-m", "lorakit", "dataset", "prepare", str(REPO / "examples" / "comic-sample"), "--trigger", "lkcomic",
                "--class", "style", "--repeats", "1", "--out", str(dest)]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, env=lorakit_env(), cwd=E2E, timeout=120)
        (out / "prepare.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
        print(f"[e2e] dataset prepare rc={proc.returncode}", flush=True)
    return dest


def check_jobs(data: Path) -> list[dict[str, Any]]:
    sdxl_ckpt = str(SDXL / "sdxl_synth.safetensors")
    loras = E2E / "comfyui-loras"
    first = [
        dict(name="e2e1_sdxl_comic_style", kind="check", runs=str(E2E / "r1"), report=True,
             verify=("sdxl", "networks.lora", sdxl_ckpt),
             argv=train_argv("comic-style", data, sdxl_sets(), E2E / "r1", "training.epochs=2",
                             "sampling.prompts=[lkcomic style, a robot]", "sampling.every_n_epochs=1", "sampling.steps=8",
                             "saving.save_state=true", f"output.lora_folders=[{loras}]")),
        dict(name="e2e2_sd35_medium", kind="check", runs=str(E2E / "r2"), report=True,
             verify=("sd3", "networks.lora_sd3", str(SD3 / "sd3.5_medium_synth.safetensors")),
             argv=train_argv("sd35-medium", data, sd3_sets("medium"), E2E / "r2", "training.max_steps=10")),
        dict(name="e2e4_style_locon", kind="check", runs=str(E2E / "r4"), report=True, timeout=480,
             verify=("sdxl", "lycoris.kohya", sdxl_ckpt),
             argv=train_argv("style-locon", data, sdxl_sets(), E2E / "r4", "training.max_steps=6")),
    ]  # fmt: skip
    return first


def checks(out: Path, poller: measure.Poller) -> list[dict[str, Any]]:
    data = prepared_dataset(out)
    rows = run_jobs(check_jobs(data), out, max_parallel=3, poller=poller)
    flag = BASE / "building-sd3.5-large"  # run.sh bg-sd3l builds the model in the background
    while flag.exists():
        time.sleep(1)
    large = [
        dict(name=f"e2e3_sd35_large_{tag}", kind="peak", runs=str(E2E / f"r3{tag}"),
             argv=train_argv("sd35-large", data, sd3_sets("large"), E2E / f"r3{tag}", "training.max_steps=4", *extra))
        for tag, extra in (("gc", ()), ("nogc", ("training.gradient_checkpointing=false",)),
                           ("gc_fp8", ("training.fp8_base=true",)))
    ]  # fmt: skip
    rows += run_jobs(large, out, max_parallel=3, poller=poller)
    return rows


def bench_jobs(data: Path) -> list[dict[str, Any]]:
    common = [*sdxl_sets(), "training.precision=bf16", "training.no_half_vae=false", "training.batch_size=4",
              "training.gradient_checkpointing=true"]  # fmt: skip
    jobs = []
    for opt in ("adamw8bit", "adamw"):
        argv = [PY, "-m", "lorakit", "bench", "--preset", "comic-style", "--data", str(data), "--steps", "14", "--quiet",
                "--json"]  # fmt: skip
        for s in [*common, f"optimizer.name={opt}", f"output.folder={E2E / ('r5' + opt)}"]:
            argv += ["--set", s]
        jobs.append(dict(name=f"e2e5_bench_{opt}", kind="bench", runs=str(E2E / f"r5{opt}"), argv=argv, batch=4))
    return jobs


def speed(out: Path, poller: measure.Poller) -> list[dict[str, Any]]:
    data = prepared_dataset(out)
    rows = run_jobs(bench_jobs(data), out, max_parallel=1, poller=poller)
    return rows + overhead(out, poller, data)


def combined(out: Path, poller: measure.Poller) -> list[dict[str, Any]]:
    """One short call: checks 1, 2, 4 and the AdamW8bit/AdamW pair packed on the GPU (memory is
    per process, so peaks hold; their s/step is NOT comparable), then the overhead pair alone."""
    data = prepared_dataset(out)
    rows = run_jobs(check_jobs(data) + bench_jobs(data), out, max_parallel=4, poller=poller)
    return rows + overhead(out, poller, data)


def overhead(out: Path, poller: measure.Poller, data: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    # orchestration overhead: the same config through lorakit train, then its argv launched directly
    ov = dict(name="e2e6_overhead_lorakit", kind="overhead", runs=str(E2E / "r6"),
              argv=train_argv("comic-style", data, sdxl_sets(), E2E / "r6", "training.max_steps=14",
                              "saving.every_n_epochs=null"))  # fmt: skip
    rows += run_jobs([ov], out, max_parallel=1, poller=poller)
    run = only_run(E2E / "r6")
    if run is not None:
        argv = shlex.split((run / "command.txt").read_text(encoding="utf-8").split("&&", 1)[1])
        env_words = [w for w in argv if "=" in w and not w.startswith("-") and argv.index(w) < 4]
        argv = argv[len(env_words) :]
        direct_dir = E2E / "r6direct" / "direct"
        shutil.rmtree(E2E / "r6direct", ignore_errors=True)
        direct_dir.mkdir(parents=True)
        argv = [a.replace(str(run), str(direct_dir)) if a.startswith("--output_dir") else a for a in argv]
        job = dict(name="e2e6_overhead_direct", kind="overhead", runs=str(E2E / "r6direct"), argv=argv, cwd=SD_SCRIPTS)
        env_extra = dict(w.split("=", 1) for w in env_words)
        os.environ.update(env_extra)
        rows += run_jobs([job], out, max_parallel=1, poller=poller)
    return rows


def main() -> int:
    out = Path(sys.argv[1])
    what = sys.argv[2:] or ["checks"]
    E2E.mkdir(parents=True, exist_ok=True)
    poller = measure.Poller(0.15)
    poller.start()
    try:
        for w in what:
            {"checks": checks, "speed": speed, "combined": combined}[w](out, poller)
    finally:
        poller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
