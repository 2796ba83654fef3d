"""A stand-in for `python -m accelerate.commands.launch sdxl_train_network.py ...` in tests.

It takes the trainer's argv as lorakit builds it (only --output_dir/--output_name/--network_*
matter) and is steered by environment variables:

- FAKE_REPLAY=path: write that recorded sd-scripts log to stdout byte for byte (its \\r
  updates included), FAKE_CHUNK bytes at a time with FAKE_DELAY seconds between chunks;
- FAKE_LORA=1: write a small but valid safetensors LoRA (<output_dir>/<output_name>.safetensors)
  with the ss_* metadata taken from argv (FAKE_LORA_DIM overrides the dim written);
- FAKE_CHECKPOINT=1: write <output_dir>/<output_name>-000001.safetensors first;
- FAKE_STATE=epoch:step: write <output_dir>/<output_name>-<epoch:06d>-state/train_state.json first;
- FAKE_SAMPLE=1: write <output_dir>/sample/<output_name>_000001_00_20261123.png (as sd-scripts names them);
- FAKE_FILL=bytes: before the LoRA, write that much into <output_dir>/<output_name>-fill.bin
  (stopping quietly at a full disk); FAKE_FILL_STEP=bytes: add that much on each line of FAKE_SLEEP;
- FAKE_HANG=seconds: before FAKE_SLEEP, print "hanging" and then nothing for that long (a stall);
- FAKE_SLEEP=seconds: then sleep (a long training), printing a line each 0.1 s;
- FAKE_IGNORE_INT=1: ignore SIGINT (so only a kill stops it);
- FAKE_GRANDCHILD=path: start a grandchild (same process group) that writes its pid there and sleeps;
- FAKE_RAISE=message: raise RuntimeError(message) at the end (a real Python traceback);
- FAKE_ARGV=path: append this process's argv (JSON, one line) to that file;
- FAKE_EXIT=code: exit with that code (default 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path


def flag(argv: list[str], name: str) -> str | None:
    for a in argv:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def write_lora(path: Path, dim: int, alpha: str, module: str, unet_only: bool) -> None:
    """sd-scripts-style LoRA keys (fp16 zeros), ss_* metadata, raw safetensors layout."""
    tensors: dict[str, tuple[list[int], int]] = {}
    layers = ["lora_unet_input_blocks_4_1_proj_in", "lora_unet_output_blocks_0_1_proj_out"]
    if not unet_only:
        layers.append("lora_te1_text_model_encoder_layers_0_mlp_fc1")
    for layer in layers:
        tensors[f"{layer}.lora_down.weight"] = ([dim, 64], dim * 64 * 2)
        tensors[f"{layer}.lora_up.weight"] = ([64, dim], 64 * dim * 2)
        tensors[f"{layer}.alpha"] = ([], 2)
    header: dict[str, object] = {
        "__metadata__": {
            "ss_network_module": module,
            "ss_network_dim": str(dim),
            "ss_network_alpha": alpha,
            "ss_output_name": path.stem,
        }
    }
    offset = 0
    for name, (shape, size) in tensors.items():
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * offset)


def main() -> int:
    argv = sys.argv[1:]
    env = os.environ
    if env.get("FAKE_ARGV"):
        with open(env["FAKE_ARGV"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(argv) + "\n")
    if env.get("FAKE_IGNORE_INT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    out_dir = Path(flag(argv, "output_dir") or ".")
    name = flag(argv, "output_name") or "last"
    if env.get("FAKE_GRANDCHILD"):
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os,sys,time,signal;"
                + ("signal.signal(signal.SIGINT, signal.SIG_IGN);" if env.get("FAKE_IGNORE_INT") else "")
                + "p=sys.argv[1];open(p+'.tmp','w').write(str(os.getpid()));os.replace(p+'.tmp',p);time.sleep(600)",
                env["FAKE_GRANDCHILD"],
            ]
        )
        deadline = time.monotonic() + 10
        while not Path(env["FAKE_GRANDCHILD"]).is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
    if env.get("FAKE_CHECKPOINT"):
        write_lora(
            out_dir / f"{name}-000001.safetensors", int(flag(argv, "network_dim") or 4), "1.0", "networks.lora", True
        )
    if env.get("FAKE_STATE"):
        epoch, step = (int(x) for x in env["FAKE_STATE"].split(":"))
        state = out_dir / f"{name}-{epoch:06d}-state"
        state.mkdir(parents=True, exist_ok=True)
        (state / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
    if env.get("FAKE_REPLAY"):
        data = Path(env["FAKE_REPLAY"]).read_bytes()
        chunk = int(env.get("FAKE_CHUNK", "4096"))
        delay = float(env.get("FAKE_DELAY", "0"))
        for i in range(0, len(data), chunk):
            os.write(1, data[i : i + chunk])
            if delay:
                time.sleep(delay)
    if env.get("FAKE_SAMPLE"):
        (out_dir / "sample").mkdir(parents=True, exist_ok=True)
        (out_dir / "sample" / f"{name}_000001_00_20261123.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    fill = out_dir / f"{name}-fill.bin"

    def add_fill(n: int) -> None:
        try:
            with fill.open("ab") as fh:
                for _ in range(0, n, 65536):
                    fh.write(b"\1" * min(65536, n))
                    fh.flush()
        except OSError:
            pass

    if env.get("FAKE_FILL"):
        add_fill(int(env["FAKE_FILL"]))
    if env.get("FAKE_LORA"):
        dim = int(env.get("FAKE_LORA_DIM") or flag(argv, "network_dim") or 4)
        alpha = str(float(flag(argv, "network_alpha") or 1))
        module = flag(argv, "network_module") or "networks.lora"
        write_lora(out_dir / f"{name}.safetensors", dim, alpha, module, "--network_train_unet_only" in argv)
    if env.get("FAKE_HANG"):
        os.write(1, b"hanging\n")
        time.sleep(float(env["FAKE_HANG"]))
    if env.get("FAKE_SLEEP"):
        end = time.monotonic() + float(env["FAKE_SLEEP"])
        while time.monotonic() < end:
            if env.get("FAKE_FILL_STEP"):
                add_fill(int(env["FAKE_FILL_STEP"]))
            with contextlib.suppress(OSError):  # nobody reads any more (lorakit killed): it computes on
                os.write(1, b"working\n")
            time.sleep(0.1)
    if env.get("FAKE_RAISE"):
        raise RuntimeError(env["FAKE_RAISE"])
    return int(env.get("FAKE_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
