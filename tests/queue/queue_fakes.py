"""A fake trainer install for queue tests: an sd-scripts tree whose training scripts are a small
fake trainer, and a fake `accelerate` package whose `accelerate.commands.launch` runs the script
the way `accelerate launch` does. `lorakit train` then runs for real, end to end, in a child.

The fake trainer is steered per job by its --output_name through a JSON plan file
(QFAKE_PLAN): {"<output_name>": {"sleep": s, "exit": code, "lines": [...], "lora": true,
"tb": [[step, loss], ...]}}; "tb" writes those per-step scalars (loss/current, loss/average,
lr/unet) under --logging_dir as sd-scripts + accelerate do (tests/tbwrite.py says how). It
appends what it received (accelerate args, trainer argv, CUDA_VISIBLE_DEVICES, start/end
times) as one JSON line to QFAKE_RECORD.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from lorakit.kohya.install import TRAIN_SCRIPTS

FAKE_LAUNCH = """
import json, os, runpy, sys
args = sys.argv[1:]
i = next(i for i, a in enumerate(args) if a.endswith(".py"))
os.environ["QFAKE_ACCEL"] = json.dumps(args[:i])
gpu_ids = [a.split("=", 1)[1] for a in args[:i] if a.startswith("--gpu_ids=")]
if gpu_ids:
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[0]
sys.argv = [args[i], *args[i + 1 :]]
runpy.run_path(args[i], run_name="__main__")
"""

FAKE_TRAINER = r"""
import json, os, struct, sys, time
from pathlib import Path

def flag(name):
    for a in sys.argv[1:]:
        if a.startswith("--" + name + "="):
            return a.split("=", 1)[1]
    return None

name = flag("output_name") or "lora"
out = Path(flag("output_dir") or ".")
plan = json.loads(Path(os.environ["QFAKE_PLAN"]).read_text()).get(name, {})
start = time.time()
for line in plan.get("lines", []):
    print(line, flush=True)
if plan.get("tb") and flag("logging_dir"):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    # train_util.prepare_accelerator: <logging_dir>/<time stamp>; accelerate: <that>/<tracker name>
    writer = EventFileWriter(os.path.join(flag("logging_dir"), time.strftime("%Y%m%d%H%M%S"), "network_train"))
    seen = []
    for step, loss in plan["tb"]:
        seen.append(loss)
        for tag, value in (("loss/current", loss), ("loss/average", sum(seen) / len(seen)), ("lr/unet", 1e-4)):
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
        writer.flush()
    writer.close()
end = start + float(plan.get("sleep", 0))
while time.time() < end:
    time.sleep(0.05)
code = int(plan.get("exit", 0))
if code == 0 and plan.get("lora", True):
    dim = int(flag("network_dim") or 4)
    meta = {"ss_network_module": flag("network_module") or "networks.lora", "ss_network_dim": str(dim),
            "ss_network_alpha": str(float(flag("network_alpha") or 1)), "ss_output_name": name}
    header = {"__metadata__": meta}
    off = 0
    for layer in ("lora_unet_input_blocks_4_1_proj_in", "lora_unet_output_blocks_0_1_proj_out"):
        for key, shape in ((".lora_down.weight", [dim, 64]), (".lora_up.weight", [64, dim]), (".alpha", [])):
            size = 2 * (shape[0] * shape[1] if shape else 1)
            header[layer + key] = {"dtype": "F16", "shape": shape, "data_offsets": [off, off + size]}
            off += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.mkdir(parents=True, exist_ok=True)
    (out / (name + ".safetensors")).write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)
with open(os.environ["QFAKE_RECORD"], "a") as fh:
    fh.write(json.dumps({"name": name, "accelerate": json.loads(os.environ.get("QFAKE_ACCEL", "[]")),
                         "argv": sys.argv[1:], "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                         "device_order": os.environ.get("CUDA_DEVICE_ORDER"),
                         "queue_job": os.environ.get("LORAKIT_QUEUE_JOB"),
                         "start": start, "end": time.time()}) + "\n")
sys.exit(code)
"""


class FakeInstall:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sd_scripts = root / "sd-scripts"
        self.site = root / "site"
        self.plan_file = root / "plan.json"
        self.record_file = root / "record.jsonl"
        self.checkpoint = root / "base.safetensors"
        for name in TRAIN_SCRIPTS:
            (self.sd_scripts / name).parent.mkdir(parents=True, exist_ok=True)
            (self.sd_scripts / name).write_text(FAKE_TRAINER, encoding="utf-8")
        (self.sd_scripts / "library").mkdir()
        launch = self.site / "accelerate" / "commands" / "launch.py"
        launch.parent.mkdir(parents=True)
        (self.site / "accelerate" / "__init__.py").write_text("", encoding="utf-8")
        (launch.parent / "__init__.py").write_text("", encoding="utf-8")
        launch.write_text(FAKE_LAUNCH, encoding="utf-8")
        self.checkpoint.write_bytes(b"not really a model")
        self.plan({})

    def plan(self, behaviour: dict[str, dict[str, Any]]) -> None:
        self.plan_file.write_text(json.dumps(behaviour), encoding="utf-8")

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LORAKIT_", "CUDA_"))}
        env.update(
            HOME=str(home),
            XDG_DATA_HOME=str(home / "data"),
            LORAKIT_HOME=str(home / "lorakit"),
            LORAKIT_SD_SCRIPTS=str(self.sd_scripts),
            LORAKIT_PYTHON=sys.executable,
            LORAKIT_ALLOW_NO_GPU="1",  # the stand-in trainer needs no GPU
            PYTHONPATH=str(self.site),
            QFAKE_PLAN=str(self.plan_file),
            QFAKE_RECORD=str(self.record_file),
            COLUMNS="200",
        )
        return env

    def records(self) -> dict[str, dict[str, Any]]:
        if not self.record_file.exists():
            return {}
        rows = [json.loads(line) for line in self.record_file.read_text().splitlines() if line.strip()]
        return {r["name"]: r for r in rows}
